"""What the queue, the caches and the scan marks need of a database, so one SQL text serves
SQLite and PostgreSQL alike.

Statements are written with `?` placeholders and standard SQL (`INSERT … ON CONFLICT`); a
backend translates what it must. Where the two differ in locking, a backend says how: SQLite's
`BEGIN IMMEDIATE` already serialises every writer, PostgreSQL locks the rows a transaction
reads in order to change (`FOR UPDATE`), and lets concurrent lessees pass each other's rows
(`SKIP LOCKED`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

from reconciler.state.store import StateDatabase


class SqlCursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class SqlConnection(Protocol):
    def execute(self, sql: str, parameters: tuple[object, ...] = (), /) -> SqlCursor: ...


class SqlDatabase(StateDatabase, Protocol):
    lock_rows: str
    """Appended to a SELECT whose rows the transaction goes on to change."""
    skip_locked_rows: str
    """Appended to a SELECT of rows to take, passing over rows another transaction holds."""
    local_only: bool
    """Every process using the database runs on this host, so a dead process id frees a key."""

    def write(self) -> AbstractContextManager[SqlConnection]:
        """One transaction, committed when the block ends without an error."""

    def read(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        """The rows of one query, outside any write transaction."""
