"""A clock that moves only when a test moves it."""

from __future__ import annotations

import threading


class FakeClock:
    """`Clock` at a settable time; safe to read from the threads the code under test starts."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def set(self, at: float) -> None:
        with self._lock:
            self._now = at

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
