"""The work directory's size budget, shared by every conversion of the process.

Layers are converted one after another within a conversion, so a conversion needs room for
its largest layer: the downloaded blob, the converter's spill and the converted blob. A
conversion that can never fit fails terminally; one that fits waits for room.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from harbor_api.errors import PermanentError

# Downloaded source + converter spill + converted output, each about the compressed size.
SPACE_PER_LAYER_BYTE = 3


class BudgetTooSmall(PermanentError):
    """The work directory budget cannot hold even one layer of this image."""


def space_needed(largest_layer_bytes: int) -> int:
    return SPACE_PER_LAYER_BYTE * largest_layer_bytes


class DiskBudget:
    def __init__(self, total_bytes: int) -> None:
        self.total_bytes = total_bytes
        self._used = 0
        self._changed = threading.Condition()

    @property
    def used_bytes(self) -> int:
        with self._changed:
            return self._used

    @contextmanager
    def reserve(self, nbytes: int, timeout: float | None = None) -> Iterator[None]:
        """Hold `nbytes` of the budget for the block; wait while other conversions hold it."""
        if nbytes > self.total_bytes:
            raise BudgetTooSmall(
                f"work directory budget {self.total_bytes} bytes is too small: this image needs "
                f"{nbytes} bytes for its largest layer (raise work_dir_budget)"
            )
        with self._changed:
            if not self._changed.wait_for(
                lambda: self._used + nbytes <= self.total_bytes, timeout=timeout
            ):
                raise TimeoutError("no room in the work directory budget")
            self._used += nbytes
        try:
            yield
        finally:
            with self._changed:
                self._used -= nbytes
                self._changed.notify_all()
