"""Small pieces of output gathered into large writes: each write call costs more than its bytes."""

from __future__ import annotations

from collections.abc import Callable

_BATCH = 1 << 20


class BatchedWriter:
    """Hands `write` the pieces it is given, joined into runs of at least 1 MiB.

    `flush()` hands over the rest; pieces not flushed are never written.
    """

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write
        self._pending: list[bytes] = []
        self._pending_size = 0

    def write(self, data: bytes) -> None:
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= _BATCH:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            pending = self._pending
            self._write(b"".join(pending) if len(pending) > 1 else pending[0])
            self._pending = []
            self._pending_size = 0
