"""The state store in one SQLite file (`state.db` in the state directory).

Every change is one `BEGIN IMMEDIATE` transaction, so two processes sharing the file (`acceld
serve` and `acceld backfill`) see each other's leases and never hand one key to two workers.
WAL lets `acceld status` read while the daemon writes.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harbor_api.oci import Descriptor, canonical_json
from reconciler.state.backoff import Backoff
from reconciler.state.keys import Key
from reconciler.state.migrations import migrate
from reconciler.state.process_liveness import pid_alive
from reconciler.state.store import (
    MISSING,
    CachedLayer,
    FailingKey,
    InProgress,
    KeyState,
    Lease,
    Missing,
    QuarantinedKey,
    QueueCounts,
    ScanMark,
    StateError,
)

STATE_DB = "state.db"
_MAX_ERROR_CHARS = 2000


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
    return path


class SqliteStateStore:
    """`StateStore` on SQLite. One connection per store, shared by threads under a lock."""

    def __init__(
        self,
        path: Path,
        *,
        lease_seconds: float = 60.0,
        backoff: Backoff | None = None,
        busy_timeout_seconds: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
        self.path = path
        self.lease_seconds = lease_seconds
        self.backoff = backoff or Backoff()
        self._rng = rng or random.Random()
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(
                path, timeout=busy_timeout_seconds, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            migrate(self._conn, str(path))
        except sqlite3.Error as exc:
            raise StateError(f"{path}: cannot open the state database: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
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

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StateError(f"{self.path}: {exc}") from exc

    # The queue.

    def add(
        self, key: Key, due_at: float | None = None, policy_fingerprint: str | None = None
    ) -> None:
        due = time.time() if due_at is None else due_at
        name = str(key)
        with self._write() as conn:
            row = conn.execute(
                "SELECT state, due_at, attempts, policy_fingerprint, dirty_due_at "
                "FROM queue WHERE key = ?",
                (name,),
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO queue (key, state, due_at, policy_fingerprint) "
                    "VALUES (?, 'pending', ?, ?)",
                    (name, due, policy_fingerprint),
                )
                return
            state, old_due, attempts, old_fingerprint, dirty_due = row
            policy_changed = (
                policy_fingerprint is not None and policy_fingerprint != old_fingerprint
            )
            fingerprint = policy_fingerprint if policy_fingerprint is not None else old_fingerprint
            if state == "leased":
                new_dirty = due if dirty_due is None else min(dirty_due, due)
                conn.execute(
                    "UPDATE queue SET dirty_due_at = ?, policy_fingerprint = ? WHERE key = ?",
                    (new_dirty, fingerprint, name),
                )
            elif state == "pending" and (attempts == 0 or policy_changed):
                # A failing key keeps its backoff: scans and webhooks keep finding it, and they
                # must not turn a backoff into a retry loop. A policy change is a fresh start.
                new_due = min(old_due, due) if attempts == 0 else due
                conn.execute(
                    "UPDATE queue SET due_at = ?, attempts = 0, last_error = '', "
                    "policy_fingerprint = ? WHERE key = ?",
                    (new_due, fingerprint, name),
                )
            elif state == "quarantined" and policy_changed:
                conn.execute(
                    "UPDATE queue SET state = 'pending', due_at = ?, attempts = 0, "
                    "last_error = '', quarantined_at = NULL, policy_fingerprint = ? WHERE key = ?",
                    (due, fingerprint, name),
                )

    def lease(self, owner: str, limit: int, now: float | None = None) -> list[Lease]:
        at = time.time() if now is None else now
        expires = at + self.lease_seconds
        leases: list[Lease] = []
        with self._write() as conn:
            self._release_gone(conn, at)
            rows = conn.execute(
                "SELECT key, attempts, policy_fingerprint FROM queue "
                "WHERE state = 'pending' AND due_at <= ? ORDER BY due_at, key LIMIT ?",
                (at, limit),
            ).fetchall()
            for name, attempts, fingerprint in rows:
                token = uuid.uuid4().hex
                reconcile_id = str(uuid.uuid4())
                conn.execute(
                    "UPDATE queue SET state = 'leased', owner = ?, owner_host = ?, "
                    "owner_pid = ?, token = ?, reconcile_id = ?, leased_at = ?, expires_at = ?, "
                    "dirty_due_at = NULL WHERE key = ?",
                    (owner, self._host, self._pid, token, reconcile_id, at, expires, name),
                )
                leases.append(
                    Lease(
                        key=Key.parse(name),
                        owner=owner,
                        token=token,
                        reconcile_id=reconcile_id,
                        attempts=attempts,
                        policy_fingerprint=fingerprint,
                        leased_at=at,
                        expires_at=expires,
                    )
                )
        return leases

    def renew(self, owner: str, now: float | None = None) -> int:
        at = time.time() if now is None else now
        with self._write() as conn:
            return conn.execute(
                "UPDATE queue SET expires_at = ? WHERE state = 'leased' AND owner = ? "
                "AND owner_host = ? AND owner_pid = ?",
                (at + self.lease_seconds, owner, self._host, self._pid),
            ).rowcount

    def _held(self, conn: sqlite3.Connection, lease: Lease) -> Any:
        return conn.execute(
            "SELECT dirty_due_at, attempts, policy_fingerprint FROM queue "
            "WHERE key = ? AND state = 'leased' AND token = ?",
            (str(lease.key), lease.token),
        ).fetchone()

    def _make_pending(
        self, conn: sqlite3.Connection, name: str, due: float, attempts: int, error: str
    ) -> None:
        conn.execute(
            "UPDATE queue SET state = 'pending', due_at = ?, attempts = ?, last_error = ?, "
            "quarantined_at = NULL, dirty_due_at = NULL, owner = NULL, owner_host = NULL, "
            "owner_pid = NULL, token = NULL, reconcile_id = NULL, leased_at = NULL, "
            "expires_at = NULL WHERE key = ?",
            (due, attempts, error[:_MAX_ERROR_CHARS], name),
        )

    def done(self, lease: Lease) -> bool:
        with self._write() as conn:
            row = self._held(conn, lease)
            if row is None:
                return False
            dirty_due = row[0]
            if dirty_due is not None:
                self._make_pending(conn, str(lease.key), dirty_due, 0, "")
            else:
                conn.execute("DELETE FROM queue WHERE key = ?", (str(lease.key),))
            return True

    def retry_later(self, lease: Lease, error: str, now: float | None = None) -> bool:
        at = time.time() if now is None else now
        with self._write() as conn:
            if self._held(conn, lease) is None:
                return False
            attempts = lease.attempts + 1
            due = at + self.backoff.delay(attempts, self._rng)
            self._make_pending(conn, str(lease.key), due, attempts, error)
            return True

    def requeue_after(self, lease: Lease, seconds: float, now: float | None = None) -> bool:
        at = time.time() if now is None else now
        with self._write() as conn:
            row = self._held(conn, lease)
            if row is None:
                return False
            due = at + max(seconds, 0.0)
            if row[0] is not None:
                due = min(due, row[0])
            self._make_pending(conn, str(lease.key), due, 0, "")
            return True

    def release(self, lease: Lease, now: float | None = None) -> bool:
        at = time.time() if now is None else now
        with self._write() as conn:
            row = self._held(conn, lease)
            if row is None:
                return False
            self._make_pending(conn, str(lease.key), at, lease.attempts, "")
            return True

    def quarantine(self, lease: Lease, reason: str, now: float | None = None) -> bool:
        at = time.time() if now is None else now
        with self._write() as conn:
            row = self._held(conn, lease)
            if row is None:
                return False
            dirty_due, _, fingerprint = row
            if fingerprint is not None and fingerprint != lease.policy_fingerprint:
                # The policy changed while this attempt ran: its verdict is about the old one.
                due = at if dirty_due is None else dirty_due
                self._make_pending(conn, str(lease.key), due, 0, "")
                return True
            conn.execute(
                "UPDATE queue SET state = 'quarantined', attempts = ?, last_error = ?, "
                "quarantined_at = ?, dirty_due_at = NULL, owner = NULL, owner_host = NULL, "
                "owner_pid = NULL, token = NULL, reconcile_id = NULL, leased_at = NULL, "
                "expires_at = NULL WHERE key = ?",
                (lease.attempts + 1, reason[:_MAX_ERROR_CHARS], at, str(lease.key)),
            )
            return True

    def forget(self, key: Key) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM queue WHERE key = ? AND state != 'leased'", (str(key),))
            conn.execute(
                "UPDATE queue SET dirty_due_at = NULL WHERE key = ? AND state = 'leased'",
                (str(key),),
            )

    def _release_gone(self, conn: sqlite3.Connection, now: float, owner: str | None = None) -> int:
        """Make pending the keys whose worker is gone, counting the lost attempt as a failure.

        A worker that crashes the process every time (out of memory on one image) then backs
        off like any failing key instead of taking the daemon down in a loop.
        """
        if owner is None:
            rows = conn.execute(
                "SELECT key, attempts, owner, owner_host, owner_pid, expires_at FROM queue "
                "WHERE state = 'leased' AND (expires_at < ? OR owner_host = ?)",
                (now, self._host),
            ).fetchall()
        else:
            rows = conn.execute(
                "SELECT key, attempts, owner, owner_host, owner_pid, expires_at FROM queue "
                "WHERE state = 'leased' AND owner = ? AND owner_host = ? AND owner_pid != ?",
                (owner, self._host, self._pid),
            ).fetchall()
        released = 0
        for name, attempts, holder, host, pid, expires_at in rows:
            gone = (
                owner is not None or expires_at < now or (pid != self._pid and not pid_alive(pid))
            )
            if not gone:
                continue
            error = f"worker {holder} (pid {pid} on {host}) stopped without a result"
            due = now + self.backoff.delay(attempts + 1, self._rng)
            self._make_pending(conn, name, due, attempts + 1, error)
            released += 1
        return released

    def release_expired(self, now: float | None = None) -> int:
        at = time.time() if now is None else now
        with self._write() as conn:
            return self._release_gone(conn, at)

    def recover(self, owner: str, now: float | None = None) -> int:
        at = time.time() if now is None else now
        with self._write() as conn:
            return self._release_gone(conn, at, owner)

    def retry(self, key: Key, now: float | None = None) -> bool:
        at = time.time() if now is None else now
        with self._write() as conn:
            return (
                conn.execute(
                    "UPDATE queue SET state = 'pending', due_at = ?, attempts = 0, "
                    "last_error = '', quarantined_at = NULL WHERE key = ? AND "
                    "(state = 'quarantined' OR (state = 'pending' AND attempts > 0))",
                    (at, str(key)),
                ).rowcount
                == 1
            )

    def retry_all(self, now: float | None = None) -> int:
        at = time.time() if now is None else now
        with self._write() as conn:
            return conn.execute(
                "UPDATE queue SET state = 'pending', due_at = ?, attempts = 0, "
                "last_error = '', quarantined_at = NULL WHERE "
                "state = 'quarantined' OR (state = 'pending' AND attempts > 0)",
                (at,),
            ).rowcount

    def key_state(self, key: Key) -> KeyState | None:
        rows = self._read(
            "SELECT state, due_at, attempts, last_error FROM queue WHERE key = ?", (str(key),)
        )
        return KeyState(key, *rows[0]) if rows else None

    def next_due(self) -> float | None:
        """When the earliest pending key is due, None when nothing is pending."""
        rows = self._read("SELECT MIN(due_at) FROM queue WHERE state = 'pending'")
        due: float | None = rows[0][0]
        return due

    # What `acceld status` shows.

    def counts(self) -> QueueCounts:
        found = dict(self._read("SELECT state, COUNT(*) FROM queue GROUP BY state"))
        return QueueCounts(
            pending=found.get("pending", 0),
            in_progress=found.get("leased", 0),
            quarantined=found.get("quarantined", 0),
        )

    def in_progress(self) -> list[InProgress]:
        rows = self._read(
            "SELECT key, owner, owner_host, owner_pid, leased_at, expires_at, reconcile_id "
            "FROM queue WHERE state = 'leased' ORDER BY leased_at, key"
        )
        return [InProgress(Key.parse(row[0]), *row[1:]) for row in rows]

    def failing(self) -> list[FailingKey]:
        rows = self._read(
            "SELECT key, attempts, last_error, due_at FROM queue "
            "WHERE state = 'pending' AND attempts > 0 ORDER BY due_at, key"
        )
        return [FailingKey(Key.parse(row[0]), *row[1:]) for row in rows]

    def quarantined(self) -> list[QuarantinedKey]:
        rows = self._read(
            "SELECT key, last_error, attempts, policy_fingerprint, quarantined_at FROM queue "
            "WHERE state = 'quarantined' ORDER BY quarantined_at, key"
        )
        return [QuarantinedKey(Key.parse(row[0]), *row[1:]) for row in rows]

    # The caches.

    def layer_cache_get(
        self, source_digest: str, format: str, options_key: str
    ) -> CachedLayer | None:
        rows = self._read(
            "SELECT descriptor, diff_id, repository FROM layer_cache "
            "WHERE source_digest = ? AND format = ? AND options_key = ?",
            (source_digest, format, options_key),
        )
        if not rows:
            return None
        descriptor = Descriptor.from_json(json.loads(rows[0][0]), "layer cache descriptor")
        return CachedLayer(descriptor, rows[0][1], rows[0][2])

    def layer_cache_put(
        self, source_digest: str, format: str, options_key: str, layer: CachedLayer
    ) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO layer_cache "
                "(source_digest, format, options_key, descriptor, diff_id, repository) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    source_digest,
                    format,
                    options_key,
                    canonical_json(layer.descriptor.to_json()).decode(),
                    layer.diff_id,
                    layer.repository,
                ),
            )

    def classification_get(self, digest: str) -> str | Missing | None:
        rows = self._read("SELECT format FROM classification WHERE digest = ?", (digest,))
        if not rows:
            return MISSING
        found: str | None = rows[0][0]
        return found

    def classification_put(self, digest: str, format: str | None) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO classification (digest, format) VALUES (?, ?)",
                (digest, format),
            )

    # Scan marks.

    def scan_started(self, kind: str, at: float) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO scan_marks (kind, last_started_at) VALUES (?, ?) "
                "ON CONFLICT (kind) DO UPDATE SET last_started_at = excluded.last_started_at",
                (kind, at),
            )

    def scan_finished(
        self,
        kind: str,
        started_at: float,
        finished_at: float,
        missing_by_policy_format: Mapping[tuple[str, str], int],
    ) -> None:
        missing = json.dumps(
            sorted(
                [policy, fmt, count] for (policy, fmt), count in missing_by_policy_format.items()
            )
        )
        with self._write() as conn:
            conn.execute(
                "INSERT INTO scan_marks (kind, last_started_at, last_success_started_at, "
                "last_success_finished_at, missing) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (kind) DO UPDATE SET "
                "last_success_started_at = excluded.last_success_started_at, "
                "last_success_finished_at = excluded.last_success_finished_at, "
                "missing = excluded.missing",
                (kind, started_at, started_at, finished_at, missing),
            )

    def last_scan(self, kind: str) -> ScanMark | None:
        marks = [mark for mark in self.scans() if mark.kind == kind]
        return marks[0] if marks else None

    def scans(self) -> list[ScanMark]:
        rows = self._read(
            "SELECT kind, last_started_at, last_success_started_at, last_success_finished_at, "
            "missing FROM scan_marks ORDER BY kind"
        )
        return [
            ScanMark(
                kind,
                started,
                success_started,
                success_finished,
                {(policy, fmt): count for policy, fmt, count in json.loads(missing)},
            )
            for kind, started, success_started, success_finished, missing in rows
        ]
