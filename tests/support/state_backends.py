"""The state store on each backend, opened the same way: what the conformance tests run over."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from reconciler.state.clock import Clock
from reconciler.state.postgres_database import PostgresLocation
from reconciler.state.postgres_state import open_postgres_state
from reconciler.state.sqlite_state import open_sqlite_state
from reconciler.state.store import StateStore

BACKENDS = ("sqlite", "postgresql")
TABLES = ("queue", "layer_cache", "classification", "scan_marks", "leader_leases")


def open_state(backend: str, target: str, clock: Clock, **options: Any) -> StateStore:
    """A store on `backend` at `target` (a file path for SQLite, a DSN for PostgreSQL).

    Plain strings, so a test can open the same state in a child process.
    """
    if backend == "sqlite":
        return open_sqlite_state(Path(target), clock, **options)
    return open_postgres_state(PostgresLocation(target), clock, **options)


@dataclass
class StateBackend:
    """One fresh state database on one backend; every store opened is closed after the test."""

    name: str
    target: str
    opened: list[StateStore] = field(default_factory=list)

    def open(self, clock: Clock, **options: Any) -> StateStore:
        store = open_state(self.name, self.target, clock, **options)
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self.opened:
            store.close()
        self.opened.clear()

    def empty(self) -> None:
        """Delete every row, keeping the schema and the open stores (a stateful test's next
        example starts from nothing)."""
        if self.name == "sqlite":
            with sqlite3.connect(self.target) as conn:
                for table in TABLES:
                    conn.execute(f"DELETE FROM {table}")  # noqa: S608 (fixed names)
            return
        with psycopg.connect(self.target, autocommit=True) as conn:
            conn.execute(f"TRUNCATE {', '.join(TABLES)}".encode())
