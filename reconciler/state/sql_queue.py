"""The key queue in SQL, the same statements on SQLite and PostgreSQL (`sql_database`).

A lease expires unless its owner's heartbeat renews it, so a key held by a dead host comes back
after the lease period. A lease also carries its owner's host and process id, shown by `acceld
status`; where every process runs on this host (SQLite), a key whose worker's process died comes
back at once, without waiting for the lease to run out.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import uuid
from typing import Any

from reconciler.state.backoff import Backoff
from reconciler.state.clock import Clock
from reconciler.state.keys import InvalidKey, Key
from reconciler.state.process_liveness import pid_alive
from reconciler.state.sql_database import SqlConnection, SqlDatabase
from reconciler.state.store import (
    FailingKey,
    InProgress,
    KeyState,
    Lease,
    QuarantinedKey,
    QueueCounts,
)

log = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 2000


class SqlKeyQueue:
    """`KeyQueue` in SQL; times come from `clock`."""

    def __init__(
        self,
        database: SqlDatabase,
        clock: Clock,
        *,
        lease_seconds: float = 60.0,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
        self._database = database
        self._clock = clock
        self.lease_seconds = lease_seconds
        self.backoff = backoff or Backoff()
        self._rng = rng or random.Random()
        self._host = socket.gethostname()
        self._pid = os.getpid()

    def add(
        self, key: Key, due_at: float | None = None, policy_fingerprint: str | None = None
    ) -> None:
        due = self._clock.now() if due_at is None else due_at
        name = str(key)
        with self._database.write() as conn:
            row = self._row_to_add(conn, name, due, policy_fingerprint)
            if row is None:
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

    def _row_to_add(
        self, conn: SqlConnection, name: str, due: float, fingerprint: str | None
    ) -> Any:
        """The locked row of `name` to merge an add into, or None when the add inserted it.

        With PostgreSQL two transactions may both find no row; the second one's insert then
        waits for the first and does nothing, and it merges into the row the first inserted.
        """
        while True:
            row = conn.execute(
                "SELECT state, due_at, attempts, policy_fingerprint, dirty_due_at "  # noqa: S608 (a fixed clause of the backend)
                f"FROM queue WHERE key = ?{self._database.lock_rows}",
                (name,),
            ).fetchone()
            if row is not None:
                return row
            inserted = conn.execute(
                "INSERT INTO queue (key, state, due_at, policy_fingerprint) "
                "VALUES (?, 'pending', ?, ?) ON CONFLICT (key) DO NOTHING",
                (name, due, fingerprint),
            ).rowcount
            if inserted:
                return None

    def lease(self, owner: str, limit: int) -> list[Lease]:
        at = self._clock.now()
        expires = at + self.lease_seconds
        leases: list[Lease] = []
        with self._database.write() as conn:
            self._release_gone(conn, at)
            rows = conn.execute(
                "SELECT key, attempts, policy_fingerprint FROM queue "  # noqa: S608 (as above)
                "WHERE state = 'pending' AND due_at <= ? ORDER BY due_at, key LIMIT ?"
                + self._database.skip_locked_rows,
                (at, limit),
            ).fetchall()
            for name, attempts, fingerprint in rows:
                key = _decoded(name, attempts)
                if key is None:
                    # Left in place it would come back to every lease and stop every worker.
                    conn.execute("DELETE FROM queue WHERE key = ?", (name,))
                    continue
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
                        key=key,
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

    def renew(self, owner: str) -> int:
        at = self._clock.now()
        with self._database.write() as conn:
            return conn.execute(
                "UPDATE queue SET expires_at = ? WHERE state = 'leased' AND owner = ? "
                "AND owner_host = ? AND owner_pid = ?",
                (at + self.lease_seconds, owner, self._host, self._pid),
            ).rowcount

    def _held(self, conn: SqlConnection, lease: Lease) -> Any:
        return conn.execute(
            "SELECT dirty_due_at, attempts, policy_fingerprint FROM queue "  # noqa: S608 (as above)
            "WHERE key = ? AND state = 'leased' AND token = ?" + self._database.lock_rows,
            (str(lease.key), lease.token),
        ).fetchone()

    def _make_pending(
        self, conn: SqlConnection, name: str, due: float, attempts: int, error: str
    ) -> None:
        conn.execute(
            "UPDATE queue SET state = 'pending', due_at = ?, attempts = ?, last_error = ?, "
            "quarantined_at = NULL, dirty_due_at = NULL, owner = NULL, owner_host = NULL, "
            "owner_pid = NULL, token = NULL, reconcile_id = NULL, leased_at = NULL, "
            "expires_at = NULL WHERE key = ?",
            (due, attempts, error[:_MAX_ERROR_CHARS], name),
        )

    def done(self, lease: Lease) -> bool:
        with self._database.write() as conn:
            row = self._held(conn, lease)
            if row is None:
                return False
            dirty_due = row[0]
            if dirty_due is not None:
                self._make_pending(conn, str(lease.key), dirty_due, 0, "")
            else:
                conn.execute("DELETE FROM queue WHERE key = ?", (str(lease.key),))
            return True

    def retry_later(self, lease: Lease, error: str) -> bool:
        at = self._clock.now()
        with self._database.write() as conn:
            if self._held(conn, lease) is None:
                return False
            attempts = lease.attempts + 1
            due = at + self.backoff.delay(attempts, self._rng)
            self._make_pending(conn, str(lease.key), due, attempts, error)
            return True

    def requeue_after(self, lease: Lease, seconds: float) -> bool:
        at = self._clock.now()
        with self._database.write() as conn:
            row = self._held(conn, lease)
            if row is None:
                return False
            due = at + max(seconds, 0.0)
            if row[0] is not None:
                due = min(due, row[0])
            self._make_pending(conn, str(lease.key), due, 0, "")
            return True

    def release(self, lease: Lease) -> bool:
        at = self._clock.now()
        with self._database.write() as conn:
            row = self._held(conn, lease)
            if row is None:
                return False
            self._make_pending(conn, str(lease.key), at, lease.attempts, "")
            return True

    def quarantine(self, lease: Lease, reason: str) -> bool:
        at = self._clock.now()
        with self._database.write() as conn:
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
        with self._database.write() as conn:
            conn.execute("DELETE FROM queue WHERE key = ? AND state != 'leased'", (str(key),))
            conn.execute(
                "UPDATE queue SET dirty_due_at = NULL WHERE key = ? AND state = 'leased'",
                (str(key),),
            )

    def _release_gone(self, conn: SqlConnection, now: float, owner: str | None = None) -> int:
        """Make pending the keys whose worker is gone, counting the lost attempt as a failure.

        A worker that crashes the process every time (out of memory on one image) then backs
        off like any failing key instead of taking the daemon down in a loop.
        """
        select = "SELECT key, attempts, owner, owner_host, owner_pid, expires_at FROM queue "
        take = self._database.skip_locked_rows
        if owner is not None:
            rows = conn.execute(
                f"{select} WHERE state = 'leased' AND owner = ? AND owner_host = ? "
                f"AND owner_pid != ?{take}",
                (owner, self._host, self._pid),
            ).fetchall()
        elif self._database.local_only:
            rows = conn.execute(
                f"{select} WHERE state = 'leased' AND (expires_at < ? OR owner_host = ?){take}",
                (now, self._host),
            ).fetchall()
        else:
            # Process ids mean nothing on another host: only the lease's expiry counts.
            rows = conn.execute(
                f"{select} WHERE state = 'leased' AND expires_at < ?{take}", (now,)
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

    def release_expired(self) -> int:
        at = self._clock.now()
        with self._database.write() as conn:
            return self._release_gone(conn, at)

    def recover(self, owner: str) -> int:
        at = self._clock.now()
        with self._database.write() as conn:
            return self._release_gone(conn, at, owner)

    def retry(self, key: Key) -> bool:
        at = self._clock.now()
        with self._database.write() as conn:
            return (
                conn.execute(
                    "UPDATE queue SET state = 'pending', due_at = ?, attempts = 0, "
                    "last_error = '', quarantined_at = NULL WHERE key = ? AND "
                    "(state = 'quarantined' OR (state = 'pending' AND attempts > 0))",
                    (at, str(key)),
                ).rowcount
                == 1
            )

    def retry_all(self) -> int:
        at = self._clock.now()
        with self._database.write() as conn:
            return conn.execute(
                "UPDATE queue SET state = 'pending', due_at = ?, attempts = 0, "
                "last_error = '', quarantined_at = NULL WHERE "
                "state = 'quarantined' OR (state = 'pending' AND attempts > 0)",
                (at,),
            ).rowcount

    def key_state(self, key: Key) -> KeyState | None:
        rows = self._database.read(
            "SELECT state, due_at, attempts, last_error FROM queue WHERE key = ?", (str(key),)
        )
        return KeyState(key, *rows[0]) if rows else None

    def next_due(self) -> float | None:
        """When the earliest pending key is due, None when nothing is pending."""
        rows = self._database.read("SELECT MIN(due_at) FROM queue WHERE state = 'pending'")
        due: float | None = rows[0][0]
        return due

    # What `acceld status` shows.

    def counts(self) -> QueueCounts:
        found = dict(self._database.read("SELECT state, COUNT(*) FROM queue GROUP BY state"))
        return QueueCounts(
            pending=found.get("pending", 0),
            in_progress=found.get("leased", 0),
            quarantined=found.get("quarantined", 0),
        )

    def in_progress(self) -> list[InProgress]:
        rows = self._database.read(
            "SELECT key, owner, owner_host, owner_pid, leased_at, expires_at, reconcile_id "
            "FROM queue WHERE state = 'leased' ORDER BY leased_at, key"
        )
        return [InProgress(key, *row[1:]) for row in rows if (key := _decoded(row[0]))]

    def failing(self) -> list[FailingKey]:
        rows = self._database.read(
            "SELECT key, attempts, last_error, due_at FROM queue "
            "WHERE state = 'pending' AND attempts > 0 ORDER BY due_at, key"
        )
        return [FailingKey(key, *row[1:]) for row in rows if (key := _decoded(row[0]))]

    def quarantined(self) -> list[QuarantinedKey]:
        rows = self._database.read(
            "SELECT key, last_error, attempts, policy_fingerprint, quarantined_at FROM queue "
            "WHERE state = 'quarantined' ORDER BY quarantined_at, key"
        )
        return [QuarantinedKey(key, *row[1:]) for row in rows if (key := _decoded(row[0]))]


def _decoded(name: object, attempts: object = 0) -> Key | None:
    """The key of a queue row, or None (logged) for a row this acceld cannot read: written by
    hand, by another program, or damaged."""
    try:
        if not isinstance(name, str) or not isinstance(attempts, int):
            raise InvalidKey(f"key {name!r} with attempts {attempts!r} is not a queue row")
        return Key.parse(name)
    except InvalidKey as exc:
        log.error("undecodable queue row dropped", extra={"reason": str(exc)[:300]})
        return None
