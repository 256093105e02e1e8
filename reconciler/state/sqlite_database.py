"""The state database in one SQLite file (`state.db` in the state directory).

Every change is one `BEGIN IMMEDIATE` transaction, so two processes sharing the file (`acceld
serve` and `acceld backfill`) see each other's leases and never hand one key to two workers.
WAL lets `acceld status` read while the daemon writes. The queue, the caches, the scan marks and
the leader leases (the `sql_*` modules) share one connection through this class.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reconciler.state.migrations import SCHEMA_VERSION, migrate
from reconciler.state.private_dirs import check_private_directory
from reconciler.state.store import StateError

STATE_DB = "state.db"


def state_db_path(state_dir: Path, *, must_exist: bool) -> Path:
    """Where the state database of `state_dir` lives; creates the directory unless `must_exist`.

    Commands that only read or fix state (`status`, `retry`) pass `must_exist` so a mistyped
    directory is an error rather than a new, empty state.
    """
    path = state_dir / STATE_DB
    if must_exist:
        if not path.is_file():
            raise StateError(
                f"{path}: no state database (is the state directory right? has acceld run?)"
            )
    else:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_private_directory(state_dir, "state_dir")
    return path


def _create_private(path: Path) -> None:
    """The database file, 0600 even under umask 022; SQLite gives its -wal and -shm files the
    database file's mode."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


class SqliteDatabase:
    """One connection to the state file, migrated on open, shared by threads under a lock."""

    # BEGIN IMMEDIATE holds the whole file: rows need no locks of their own.
    lock_rows = ""
    skip_locked_rows = ""
    local_only = True
    schema_version = SCHEMA_VERSION

    def __init__(self, path: Path, *, busy_timeout_seconds: float = 30.0) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            _create_private(path)
            self._conn = sqlite3.connect(
                path, timeout=busy_timeout_seconds, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self.migrated_from = migrate(self._conn, str(path))
        except (sqlite3.Error, OSError) as exc:
            raise StateError(f"{path}: cannot open the state database: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One `BEGIN IMMEDIATE` transaction, committed when the block ends without an error."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StateError(f"{self.path}: {exc}") from exc
                raise

    def read(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        """The rows of one query, outside any write transaction."""
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StateError(f"{self.path}: {exc}") from exc
