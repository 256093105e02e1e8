"""Compress a sequence of byte segments into one gzip member each, on several threads.

Member boundaries come from the caller (the format), never from the thread count, and each
member is compressed on its own, so the output bytes are the same for any `workers` value.
zlib releases the GIL while deflating, so threads give real parallelism.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from isal import isal_zlib

_BATCH_BYTES = 1 << 20
_BATCH_MEMBERS = 512
_BLOCK_BYTES = 1 << 20
_WINDOW = 32 << 10


def gzip_header(level: int) -> bytes:
    """A gzip member header with MTIME=0 and OS=255 (unknown), as the Go writer emits."""
    xfl = 2 if level == 9 else 4 if level == 1 else 0
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes((xfl, 0xFF))


def gzip_member(data: bytes, level: int) -> bytes:
    body = zlib.compress(data, level, wbits=-15)
    trailer = isal_zlib.crc32(data).to_bytes(4, "little") + (len(data) & 0xFFFFFFFF).to_bytes(
        4, "little"
    )
    return gzip_header(level) + body + trailer


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


def _deflate_block(data: bytes, history: bytes, level: int, last: bool) -> bytes:
    if history:
        deflater = zlib.compressobj(level, zlib.DEFLATED, -15, zdict=history)
    else:
        deflater = zlib.compressobj(level, zlib.DEFLATED, -15)
    return deflater.compress(data) + deflater.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def _blocks(pieces: Iterable[bytes]) -> Iterator[tuple[bytes, bool]]:
    """`pieces` regrouped into `_BLOCK_BYTES` blocks, each with whether it is the last."""
    pending = b""
    held: bytes | None = None
    for piece in pieces:
        pending += piece
        while len(pending) >= _BLOCK_BYTES:
            if held is not None:
                yield held, False
            held, pending = pending[:_BLOCK_BYTES], pending[_BLOCK_BYTES:]
    if held is not None:
        yield held, not pending
    if pending or held is None:
        yield pending, True


def write_member(sink: Sink, pieces: Iterable[bytes], level: int, workers: int = 1) -> None:
    """One gzip member from `pieces`, deflated in fixed 1 MiB blocks on `workers` threads.

    As pigz does, each block is an independent deflate run primed with the 32 KiB before it
    and ended by a sync flush (the last by the final block), so the member is one valid
    deflate stream, barely larger than a serial one, whose bytes do not depend on `workers`.
    """
    crc = 0
    size = 0
    history = b""
    sink.write(gzip_header(level))
    with ThreadPoolExecutor(workers) as executor:
        pending: deque[Future[bytes]] = deque()
        for block, last in _blocks(pieces):
            crc = isal_zlib.crc32(block, crc)
            size += len(block)
            pending.append(executor.submit(_deflate_block, block, history, level, last))
            history = (history + block)[-_WINDOW:]
            while len(pending) > 2 * workers:
                sink.write(pending.popleft().result())
        while pending:
            sink.write(pending.popleft().result())
    sink.write(crc.to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little"))


Span = tuple[int, int]
"""(start, length) of a byte range inside one member's uncompressed data."""


@dataclass(frozen=True)
class _Segment:
    data: bytes
    spans: tuple[Span, ...]


def _compress_batch(batch: list[_Segment], level: int) -> list[tuple[bytes, tuple[str, ...]]]:
    results = []
    for segment in batch:
        view = memoryview(segment.data)
        digests = tuple(
            "sha256:" + hashlib.sha256(view[start : start + length]).hexdigest()
            for start, length in segment.spans
        )
        results.append((gzip_member(segment.data, level), digests))
    return results


class MemberWriter:
    """Appends gzip members to `dest` in submission order; records where each one starts.

    `add(data, spans)` queues one member; the sha256 of each (start, length) span of its data
    is computed on the worker too (chunk digests), and lands in `span_digests`.
    """

    def __init__(self, dest: Sink, level: int, workers: int) -> None:
        self._dest = dest
        self._level = level
        self._workers = workers
        self._executor = ThreadPoolExecutor(workers) if workers > 1 else None
        self._pending: deque[Future[list[tuple[bytes, tuple[str, ...]]]]] = deque()
        self._pending_bytes: deque[int] = deque()
        self._in_flight = 0
        self._batch: list[_Segment] = []
        self._batch_bytes = 0
        self._added = 0
        self.offsets: list[int] = []
        self.span_digests: list[tuple[str, ...]] = []
        self.written = 0

    def add(self, data: bytes, spans: tuple[Span, ...] = ()) -> int:
        index = self._added
        self._added += 1
        self._batch.append(_Segment(data, spans))
        self._batch_bytes += len(data)
        if self._batch_bytes >= _BATCH_BYTES or len(self._batch) >= _BATCH_MEMBERS:
            self._submit()
        return index

    def _submit(self) -> None:
        if not self._batch:
            return
        batch, size = self._batch, self._batch_bytes
        self._batch, self._batch_bytes = [], 0
        if self._executor is None:
            self._write(_compress_batch(batch, self._level))
            return
        self._pending.append(self._executor.submit(_compress_batch, batch, self._level))
        self._pending_bytes.append(size)
        self._in_flight += size
        budget = 8 * _BATCH_BYTES * self._workers
        while self._pending and (
            len(self._pending) > 2 * self._workers or self._in_flight > budget
        ):
            self._collect_oldest()

    def _collect_oldest(self) -> None:
        future = self._pending.popleft()
        self._in_flight -= self._pending_bytes.popleft()
        self._write(future.result())

    def _write(self, results: list[tuple[bytes, tuple[str, ...]]]) -> None:
        for member, digests in results:
            self.offsets.append(self.written)
            self.span_digests.append(digests)
            self.written += len(member)
        # One write per batch: each write also hashes, and small calls cost GIL handoffs.
        self._dest.write(b"".join(member for member, _ in results))

    def flush(self) -> None:
        """Write every queued member."""
        self._submit()
        while self._pending:
            self._collect_oldest()

    def close(self) -> None:
        if self._executor is not None:
            for future in self._pending:
                future.cancel()
            self._executor.shutdown(wait=True)
