"""The state database on PostgreSQL, shared by every acceld host.

A pool of connections in autocommit mode; each change is one transaction that locks the rows it
changes (`FOR UPDATE`), and lessees pass over each other's rows (`SKIP LOCKED`), so workers on
any number of hosts never take one key twice. A pooled connection the server has closed (a
restart) fails at BEGIN, before anything ran, and is replaced then; a restart costs only the
transactions that were running, without a round trip to check every connection handed out.
While the server is down a caller waits for the pool to reconnect; the first failure is logged
(`state database unavailable`) and so is the first success after it (`state database reachable
again`, with how long it was down), once per outage whatever the number of threads.

The connection string is a secret (it may hold a password): it is never part of an error or a
log line; `where` names the server and database instead.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from reconciler.state.postgres_migrations import (
    SCHEMA_VERSION,
    TABLES,
    migrate,
    refuse_newer,
    schema_version,
)
from reconciler.state.store import StateError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PostgresLocation:
    """Where the shared state lives."""

    dsn: str = field(repr=False)
    """A libpq connection string or URI; a secret."""
    pool_size: int = 10
    """Connections this process keeps at most: workers, heartbeat, scans and webhooks share them."""
    connect_timeout_seconds: float = 10.0

    def where(self) -> str:
        """`postgresql://HOST:PORT/DBNAME`, without user or password, for messages."""
        try:
            params = conninfo_to_dict(self.dsn)
        except psycopg.ProgrammingError:
            raise StateError(
                "the state database's connection string is not a valid libpq key=value string "
                "or postgresql:// URI"
            ) from None
        host = params.get("host") or "localhost"
        port = params.get("port") or "5432"
        return f"postgresql://{host}:{port}/{params.get('dbname') or params.get('user') or ''}"


@functools.cache
def _placeholders(sql: str) -> bytes:
    """`?` placeholders as psycopg's `%s` (the shared statements contain no other `?` or `%`)."""
    return sql.replace("?", "%s").encode()


class _Connection:
    """A psycopg connection that takes the shared statements' `?` placeholders."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, parameters: tuple[object, ...] = (), /) -> psycopg.Cursor[Any]:
        return self._conn.execute(_placeholders(sql), parameters)


class PostgresDatabase:
    """A connection pool to the shared state database, migrated (or checked) on open."""

    lock_rows = " FOR UPDATE"
    skip_locked_rows = " FOR UPDATE SKIP LOCKED"
    local_only = False
    schema_version = SCHEMA_VERSION

    def __init__(self, location: PostgresLocation, *, migrate_schema: bool = True) -> None:
        self.where = location.where()
        timeout = location.connect_timeout_seconds
        try:
            with psycopg.connect(
                location.dsn, autocommit=True, connect_timeout=max(1, round(timeout))
            ) as conn:
                if migrate_schema:
                    self.migrated_from: int | None = migrate(conn, self.where)
                else:
                    _check_current(conn, self.where)
                    self.migrated_from = None
        except psycopg.Error as exc:
            raise StateError(f"{self.where}: cannot open the state database: {exc}") from None
        self._pool = ConnectionPool(
            location.dsn,
            min_size=1,
            max_size=location.pool_size,
            kwargs={"autocommit": True, "connect_timeout": max(1, round(timeout))},
            timeout=timeout,
            name="acceld-state",
            open=False,
        )
        # Every pooled connection may have gone stale at once (a server restart), and each
        # failed attempt drops one: one more attempt than the pool holds reaches a live one.
        self._attempts = location.pool_size + 1
        self._outage_lock = threading.Lock()
        self._down_since: float | None = None
        try:
            self._pool.open(wait=True, timeout=timeout)
        except psycopg.Error as exc:
            self._pool.close()
            raise StateError(f"{self.where}: cannot open the state database: {exc}") from None

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def write(self) -> Iterator[_Connection]:
        # One yield per run, so a retry can only happen before the caller's statements ran.
        for attempt in range(self._attempts):
            began = False
            try:
                with self._pool.connection() as conn, conn.transaction():
                    began = True
                    yield _Connection(conn)
                self._reached()
                return
            except psycopg.OperationalError as exc:
                self._lost(exc)
                if began or attempt == self._attempts - 1:
                    raise StateError(f"{self.where}: {exc}") from exc
                # The server closed this idle connection (a restart): BEGIN failed, nothing
                # ran, and the pool drops the connection; the next one may be alive.
            except psycopg.Error as exc:
                raise StateError(f"{self.where}: {exc}") from exc

    def read(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        for attempt in range(self._attempts):
            try:
                with self._pool.connection() as conn:
                    rows = conn.execute(_placeholders(sql), params).fetchall()
                self._reached()
                return rows
            except psycopg.OperationalError as exc:
                self._lost(exc)
                if attempt == self._attempts - 1:
                    raise StateError(f"{self.where}: {exc}") from exc
            except psycopg.Error as exc:
                raise StateError(f"{self.where}: {exc}") from exc
        raise AssertionError("unreachable")

    def _lost(self, error: psycopg.Error) -> None:
        with self._outage_lock:
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
        log.warning(
            "state database unavailable", extra={"database": self.where, "error": str(error)}
        )

    def _reached(self) -> None:
        if self._down_since is None:  # the common case, without taking the lock
            return
        with self._outage_lock:
            if self._down_since is None:
                return
            seconds = time.monotonic() - self._down_since
            self._down_since = None
        log.info(
            "state database reachable again",
            extra={"database": self.where, "seconds_down": round(seconds, 1)},
        )


def _check_current(conn: psycopg.Connection[Any], where: str) -> None:
    """Without migrating: the schema is this acceld's and the role may use every table."""
    found = schema_version(conn)
    refuse_newer(found, where)
    if found < SCHEMA_VERSION:
        raise StateError(
            f"{where}: schema version {found} is older than this acceld's ({SCHEMA_VERSION}); "
            "run acceld migrate"
        )
    missing = [
        f"{privilege} on {table}"
        for table in TABLES
        for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE")
        if not _allowed(conn, table, privilege)
    ]
    if missing:
        raise StateError(
            f"{where}: the role may not use the state tables: missing {', '.join(missing)}"
        )


def _allowed(conn: psycopg.Connection[Any], table: str, privilege: str) -> bool:
    row = conn.execute("SELECT has_table_privilege(%s, %s)", (table, privilege)).fetchone()
    return bool(row and row[0])
