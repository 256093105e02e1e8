"""The one source of "now" for the state store and the work queue.

Due times, leases and backoffs are wall-clock Unix seconds, shared between processes (and, with
PostgreSQL, between hosts) through the database, so they come from `time.time()`, never from
`time.monotonic()`. The clock is injected at construction so tests move time instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """The current time in Unix seconds."""


class SystemClock:
    """The host's wall clock."""

    def now(self) -> float:
        return time.time()
