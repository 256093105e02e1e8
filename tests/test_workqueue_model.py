"""Random sequences of queue operations against a plain-Python model of client-go's semantics."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from reconciler.state.backoff import Backoff
from reconciler.state.keys import Key
from reconciler.state.store import KeyQueue, Lease
from tests.support.clock import FakeClock
from tests.support.state_backends import StateBackend

pytest_plugins = ("tests.support.state_fixtures",)

KEYS = [Key(f"proj/app{n}", f"sha256:{n:064x}", "estargz") for n in range(4)]
LEASE_SECONDS = 50.0
BACKOFF = Backoff(base=1.0, cap=8.0, jitter=0.0)


@dataclass(frozen=True)
class Row:
    state: str
    due: float
    attempts: int = 0
    fingerprint: str | None = None
    dirty_due: float | None = None
    expires: float = 0.0
    token: str = ""


class QueueModel(RuleBasedStateMachine):
    def __init__(self, backend: StateBackend, queue: KeyQueue, clock: FakeClock) -> None:
        super().__init__()
        self.backend = backend
        self.queue = queue
        self.clock = clock
        clock.set(1000.0)
        self.rows: dict[Key, Row] = {}
        self.leases: dict[Key, Lease] = {}
        self.stale: list[Lease] = []

    @property
    def now(self) -> float:
        return self.clock.now()

    def teardown(self) -> None:
        self.backend.empty()

    def _pending(self, key: Key, due: float, attempts: int, row: Row) -> None:
        self.rows[key] = Row("pending", due, attempts, row.fingerprint)
        self.leases.pop(key, None)

    def _expire(self, key: Key, row: Row) -> None:
        self.stale.append(self.leases[key])
        self._pending(key, self.now + BACKOFF.nominal(row.attempts + 1), row.attempts + 1, row)

    @rule(
        key=st.sampled_from(KEYS),
        delay=st.sampled_from([0.0, 5.0, 30.0]),
        fingerprint=st.sampled_from([None, "a", "b"]),
    )
    def add(self, key: Key, delay: float, fingerprint: str | None) -> None:
        due = self.now + delay
        self.queue.add(key, due, fingerprint)
        row = self.rows.get(key)
        if row is None:
            self.rows[key] = Row("pending", due, fingerprint=fingerprint)
            return
        changed = fingerprint is not None and fingerprint != row.fingerprint
        kept = fingerprint if fingerprint is not None else row.fingerprint
        if row.state == "leased":
            dirty = due if row.dirty_due is None else min(row.dirty_due, due)
            self.rows[key] = replace(row, dirty_due=dirty, fingerprint=kept)
        elif row.state == "pending" and (row.attempts == 0 or changed):
            new_due = min(row.due, due) if row.attempts == 0 else due
            self.rows[key] = Row("pending", new_due, 0, kept)
        elif row.state == "quarantined" and changed:
            self.rows[key] = Row("pending", due, 0, kept)

    @rule(seconds=st.sampled_from([1.0, 4.0, 20.0, 60.0]))
    def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(limit=st.integers(min_value=1, max_value=3))
    def lease(self, limit: int) -> None:
        for key, row in list(self.rows.items()):
            if row.state == "leased" and row.expires < self.now:
                self._expire(key, row)
        due = sorted(
            (row.due, str(key), key)
            for key, row in self.rows.items()
            if row.state == "pending" and row.due <= self.now
        )[:limit]
        got = self.queue.lease("w", limit)
        assert [lease.key for lease in got] == [key for _, _, key in due]
        for lease in got:
            row = self.rows[lease.key]
            assert lease.attempts == row.attempts
            assert lease.policy_fingerprint == row.fingerprint
            self.rows[lease.key] = replace(
                row, state="leased", dirty_due=None, expires=self.now + LEASE_SECONDS
            )
            self.leases[lease.key] = lease

    @precondition(lambda self: self.leases)
    @rule(data=st.data(), outcome=st.sampled_from(["done", "retry", "requeue", "quarantine"]))
    def finish(self, data: st.DataObject, outcome: str) -> None:
        key = data.draw(st.sampled_from(sorted(self.leases, key=str)))
        lease = self.leases[key]
        row = self.rows[key]
        if outcome == "done":
            kept = self.queue.done(lease)
        elif outcome == "retry":
            kept = self.queue.retry_later(lease, "transient")
        elif outcome == "requeue":
            kept = self.queue.requeue_after(lease, 10.0)
        else:
            kept = self.queue.quarantine(lease, "terminal")
        assert kept
        if outcome == "done":
            if row.dirty_due is None:
                del self.rows[key]
                self.leases.pop(key)
            else:
                self._pending(key, row.dirty_due, 0, row)
        elif outcome == "retry":
            attempts = lease.attempts + 1
            self._pending(key, self.now + BACKOFF.nominal(attempts), attempts, row)
        elif outcome == "requeue":
            due = self.now + 10.0
            self._pending(key, due if row.dirty_due is None else min(due, row.dirty_due), 0, row)
        elif row.fingerprint is not None and row.fingerprint != lease.policy_fingerprint:
            self._pending(key, self.now if row.dirty_due is None else row.dirty_due, 0, row)
        else:
            self.rows[key] = Row("quarantined", row.due, lease.attempts + 1, row.fingerprint)
            self.leases.pop(key)

    @precondition(lambda self: self.stale)
    @rule(outcome=st.sampled_from(["done", "retry", "requeue", "quarantine"]))
    def finish_too_late(self, outcome: str) -> None:
        lease = self.stale.pop()
        if outcome == "done":
            assert not self.queue.done(lease)
        elif outcome == "retry":
            assert not self.queue.retry_later(lease, "late")
        elif outcome == "requeue":
            assert not self.queue.requeue_after(lease, 1.0)
        else:
            assert not self.queue.quarantine(lease, "late")

    @rule(key=st.sampled_from(KEYS))
    def retry(self, key: Key) -> None:
        row = self.rows.get(key)
        movable = row is not None and (
            row.state == "quarantined" or (row.state == "pending" and row.attempts > 0)
        )
        assert self.queue.retry(key) == movable
        if row is not None and movable:
            self.rows[key] = Row("pending", self.now, 0, row.fingerprint)

    @rule(key=st.sampled_from(KEYS))
    def forget(self, key: Key) -> None:
        self.queue.forget(key)
        row = self.rows.get(key)
        if row is None:
            return
        if row.state == "leased":
            self.rows[key] = replace(row, dirty_due=None)
        else:
            del self.rows[key]

    @invariant()
    def store_matches_model(self) -> None:
        for key in KEYS:
            found = self.queue.key_state(key)
            row = self.rows.get(key)
            if row is None:
                assert found is None, key
                continue
            assert found is not None, key
            assert (found.state, found.attempts) == (row.state, row.attempts), key
            if row.state == "pending":
                assert found.due_at == row.due, key
        assert self.queue.counts().in_progress == len(
            {k for k, r in self.rows.items() if r.state == "leased"}
        )


def test_queue_behaves_like_its_model(state_backend: StateBackend) -> None:
    clock = FakeClock()
    queue = state_backend.open(
        clock, lease_seconds=LEASE_SECONDS, backoff=BACKOFF, rng=random.Random(0)
    ).queue
    run_state_machine_as_test(
        lambda: QueueModel(state_backend, queue, clock),
        settings=settings(max_examples=40, stateful_step_count=30, deadline=None),
    )
