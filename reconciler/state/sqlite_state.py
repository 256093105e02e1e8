"""The state store of one host: the parts over one SQLite file."""

from __future__ import annotations

import random
from pathlib import Path

from reconciler.state.backoff import Backoff
from reconciler.state.clock import Clock
from reconciler.state.sql_state import sql_state_store
from reconciler.state.sqlite_database import SqliteDatabase
from reconciler.state.store import StateStore


def open_sqlite_state(
    path: Path,
    clock: Clock,
    *,
    lease_seconds: float = 60.0,
    backoff: Backoff | None = None,
    busy_timeout_seconds: float = 30.0,
    rng: random.Random | None = None,
) -> StateStore:
    """Open (creating and migrating as needed) the state database at `path`.

    `lease_seconds`, `backoff` and `rng` shape the queue's leases and retry delays;
    `busy_timeout_seconds` is how long a write waits for another process's transaction.
    """
    database = SqliteDatabase(path, busy_timeout_seconds=busy_timeout_seconds)
    return sql_state_store(database, clock, lease_seconds=lease_seconds, backoff=backoff, rng=rng)
