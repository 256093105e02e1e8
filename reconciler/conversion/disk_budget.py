"""The work directory's size budget, shared by every conversion of the process.

A conversion first reserves an estimate for its largest layer (the downloaded blob, the
converter's spill and the converted blob, each about the declared compressed size), waiting
while other conversions hold the room. Declared sizes are whatever the manifest says, and a
small gzip can hold gigabytes, so every byte then written to the work directory (the download,
the converter child's spill and output, a nydus bootstrap) is claimed from the reservation
before it is written, growing it as needed: a layer that would need more than the whole budget
is stopped there, terminally; one that only finds the room held by other conversions is
retried later.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

from harbor_api.errors import AcceldError, PermanentError

# Downloaded source + converter spill + converted output, each about the compressed size.
SPACE_PER_LAYER_BYTE = 3


class BudgetTooSmall(PermanentError):
    """The work directory budget cannot hold even one layer of this image."""


class WorkDirBusy(AcceldError):
    """The layer fits the budget, but other conversions hold the room now; retried later."""


def space_needed(largest_layer_bytes: int) -> int:
    return SPACE_PER_LAYER_BYTE * largest_layer_bytes


class Reservation:
    """The room one conversion holds: `held` bytes of the budget, `used` of them claimed by
    files now in the work directory."""

    def __init__(self, budget: DiskBudget, held: int) -> None:
        self._budget = budget
        self.held = held
        self.used = 0

    @property
    def total_bytes(self) -> int:
        return self._budget.total_bytes

    def claim(self, minimum: int, preferred: int = 0) -> int:
        """Count at least `minimum` bytes about to be written (up to `preferred` when the budget
        has room for them); the count granted. Raises `BudgetTooSmall` when what this
        conversion has written plus `minimum` exceeds the whole budget, `WorkDirBusy` when only
        the room other conversions hold is in the way."""
        return self._budget.grow(self, minimum, max(minimum, preferred))

    def release(self, nbytes: int) -> None:
        """`nbytes` claimed earlier are gone from the work directory."""
        self._budget.shrink(self, nbytes)


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
    def reserve(self, nbytes: int, timeout: float | None = None) -> Iterator[Reservation]:
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
        reservation = Reservation(self, nbytes)
        try:
            yield reservation
        finally:
            with self._changed:
                self._used -= reservation.held
                self._changed.notify_all()

    def grow(self, reservation: Reservation, minimum: int, preferred: int) -> int:
        with self._changed:
            wanted = reservation.used + minimum
            if wanted > self.total_bytes:
                raise BudgetTooSmall(
                    f"work directory budget {self.total_bytes} bytes is too small: converting "
                    f"the layer needs at least {wanted} bytes in the work directory "
                    "(raise work_dir_budget)"
                )
            free = self.total_bytes - self._used
            missing = wanted - reservation.held
            if missing > free:
                raise WorkDirBusy(
                    f"the layer needs {wanted} bytes of the work directory budget "
                    f"({self.total_bytes} bytes); other conversions hold "
                    f"{self._used - reservation.held} of them"
                )
            granted = min(preferred, reservation.held - reservation.used + free)
            grown = max(0, reservation.used + granted - reservation.held)
            reservation.held += grown
            reservation.used += granted
            self._used += grown
            return granted

    def shrink(self, reservation: Reservation, nbytes: int) -> None:
        with self._changed:
            reservation.used = max(0, reservation.used - nbytes)


def unbounded() -> Reservation:
    """A reservation no write can exceed, for conversions outside the daemon's budget."""
    return Reservation(DiskBudget(sys.maxsize), 0)


class ClaimingWriter:
    """A destination stream whose every write is claimed (`claim(nbytes)`) before it is made,
    so the bytes a file takes in the work directory are counted as they are written."""

    def __init__(self, dest: BinaryIO, claim: Callable[[int], object]) -> None:
        self._dest = dest
        self._claim = claim

    def write(self, data: bytes) -> int:
        self._claim(len(data))
        return self._dest.write(data)
