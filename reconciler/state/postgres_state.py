"""The state store shared by several hosts: the same parts as SQLite's over one PostgreSQL."""

from __future__ import annotations

import random

from reconciler.state.backoff import Backoff
from reconciler.state.clock import Clock
from reconciler.state.postgres_database import PostgresDatabase, PostgresLocation
from reconciler.state.sql_state import sql_state_store
from reconciler.state.store import StateStore


def open_postgres_state(
    location: PostgresLocation,
    clock: Clock,
    *,
    migrate_schema: bool = True,
    lease_seconds: float = 60.0,
    backoff: Backoff | None = None,
    rng: random.Random | None = None,
) -> StateStore:
    """Connect to the shared state database, migrating its schema first unless told not to
    (then a schema that is not current is an error).

    `lease_seconds` is also how long a dead host's keys wait before another host takes them.
    """
    database = PostgresDatabase(location, migrate_schema=migrate_schema)
    return sql_state_store(database, clock, lease_seconds=lease_seconds, backoff=backoff, rng=rng)
