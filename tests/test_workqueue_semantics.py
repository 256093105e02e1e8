"""The queue's client-go semantics, one by one, on each backend with an injected clock."""

from __future__ import annotations

import logging
import random
from typing import cast

import pytest

from reconciler.state.backoff import Backoff
from reconciler.state.keys import Key
from reconciler.state.sql_database import SqlDatabase
from reconciler.state.store import KeyQueue
from tests.support.clock import FakeClock
from tests.support.state_backends import StateBackend

pytest_plugins = ("tests.support.state_fixtures",)

T0 = 1_800_000_000.0


def key(n: int, format_name: str = "estargz") -> Key:
    return Key(f"proj/app{n}", f"sha256:{n:064x}", format_name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def queue(state_backend: StateBackend, clock: FakeClock) -> KeyQueue:
    return state_backend.open(clock, lease_seconds=60, rng=random.Random(7)).queue


def test_a_pending_key_is_queued_once_however_often_it_is_added(queue: KeyQueue) -> None:
    for _ in range(5):
        queue.add(key(1), T0)
    queue.add(key(2), T0)
    assert queue.counts().pending == 2
    leased = queue.lease("w", 10)
    assert sorted(str(lease.key) for lease in leased) == sorted([str(key(1)), str(key(2))])
    assert queue.lease("w", 10) == []


def test_add_keeps_the_earliest_due_time(queue: KeyQueue, clock: FakeClock) -> None:
    queue.add(key(1), T0 + 100)
    queue.add(key(1), T0 + 10)
    queue.add(key(1), T0 + 50)
    assert queue.next_due() == T0 + 10
    clock.set(T0 + 9)
    assert queue.lease("w", 1) == []
    clock.set(T0 + 10)
    assert [lease.key for lease in queue.lease("w", 1)] == [key(1)]


def test_keys_are_leased_earliest_due_first_up_to_the_limit(
    queue: KeyQueue, clock: FakeClock
) -> None:
    for n, due in [(1, 30), (2, 10), (3, 20)]:
        queue.add(key(n), T0 + due)
    clock.set(T0 + 60)
    assert [lease.key for lease in queue.lease("w", 2)] == [key(2), key(3)]


def test_a_leased_key_is_not_leased_again_until_done(queue: KeyQueue, clock: FakeClock) -> None:
    queue.add(key(1), T0)
    (lease,) = queue.lease("a", 1)
    queue.add(key(1), T0)
    clock.set(T0 + 1)
    assert queue.lease("b", 1) == []
    assert queue.counts().in_progress == 1
    assert queue.done(lease)
    clock.set(T0 + 2)
    assert [again.owner for again in queue.lease("b", 1)] == ["b"]


def test_a_key_added_while_leased_is_pending_again_after_done(queue: KeyQueue) -> None:
    queue.add(key(1), T0)
    (lease,) = queue.lease("w", 1)
    queue.add(key(1), T0 + 40)
    queue.add(key(1), T0 + 30)
    assert queue.done(lease)
    assert queue.counts().pending == 1
    assert queue.next_due() == T0 + 30


def test_done_without_a_new_add_removes_the_key(queue: KeyQueue) -> None:
    queue.add(key(1), T0)
    (lease,) = queue.lease("w", 1)
    assert queue.done(lease)
    assert queue.counts().pending == queue.counts().in_progress == 0
    assert queue.next_due() is None


def test_transient_failures_back_off_exponentially_within_jitter(
    state_backend: StateBackend,
) -> None:
    backoff = Backoff(base=1.0, cap=3600.0, jitter=0.2)
    clock = FakeClock(T0)
    queue = state_backend.open(clock, backoff=backoff, rng=random.Random(3)).queue
    queue.add(key(1), T0)
    now = T0
    delays = []
    for attempt in range(1, 16):
        clock.set(now)
        (lease,) = queue.lease("w", 1)
        assert lease.attempts == attempt - 1
        assert queue.retry_later(lease, f"HTTP 503 on attempt {attempt}")
        due = queue.next_due()
        assert due is not None
        delays.append(due - now)
        nominal = min(3600.0, 2.0 ** (attempt - 1))
        assert nominal <= due - now <= min(3600.0, nominal * 1.2)
        now = due
    assert delays[-1] == 3600.0
    assert len({round(d, 6) for d in delays[:8]}) == 8
    (failing,) = queue.failing()
    assert failing.attempts == 15
    assert failing.last_error == "HTTP 503 on attempt 15"


def test_adding_a_backing_off_key_does_not_cut_its_backoff(queue: KeyQueue) -> None:
    queue.add(key(1), T0)
    (lease,) = queue.lease("w", 1)
    queue.retry_later(lease, "boom")
    due = queue.next_due()
    queue.add(key(1), T0 + 0.1)
    assert queue.next_due() == due
    assert queue.failing()[0].attempts == 1


def test_success_resets_the_failure_count(queue: KeyQueue, clock: FakeClock) -> None:
    queue.add(key(1), T0)
    (lease,) = queue.lease("w", 1)
    queue.retry_later(lease, "boom")
    clock.set(T0 + 10)
    (lease,) = queue.lease("w", 1)
    assert lease.attempts == 1
    assert queue.done(lease)
    queue.add(key(1), T0 + 20)
    clock.set(T0 + 20)
    (lease,) = queue.lease("w", 1)
    assert lease.attempts == 0


def test_requeue_after_waits_the_given_time_without_counting_a_failure(
    queue: KeyQueue,
    clock: FakeClock,
) -> None:
    queue.add(key(1), T0)
    (lease,) = queue.lease("w", 1)
    clock.set(T0 + 1)
    assert queue.requeue_after(lease, 30)
    assert queue.next_due() == T0 + 31
    assert queue.failing() == []
    clock.set(T0 + 31)
    (lease,) = queue.lease("w", 1)
    assert lease.attempts == 0


def test_requeue_after_yields_to_an_earlier_add_during_the_work(
    queue: KeyQueue, clock: FakeClock
) -> None:
    queue.add(key(1), T0)
    (lease,) = queue.lease("w", 1)
    queue.add(key(1), T0 + 5)
    clock.set(T0 + 1)
    queue.requeue_after(lease, 300)
    assert queue.next_due() == T0 + 5


def test_a_terminal_error_quarantines_the_key_with_its_reason(
    queue: KeyQueue, clock: FakeClock
) -> None:
    queue.add(key(1), T0, policy_fingerprint="policy-v1")
    (lease,) = queue.lease("w", 1)
    clock.set(T0 + 1)
    assert queue.quarantine(lease, "layer 2: not a tar stream")
    assert queue.counts().quarantined == 1
    (parked,) = queue.quarantined()
    assert parked.key == key(1)
    assert parked.reason == "layer 2: not a tar stream"
    assert parked.policy_fingerprint == "policy-v1"
    assert parked.quarantined_at == T0 + 1
    queue.add(key(1), T0 + 2, policy_fingerprint="policy-v1")
    queue.add(key(1), T0 + 2)
    clock.set(T0 + 10_000)
    assert queue.lease("w", 1) == []


def test_a_policy_change_releases_a_quarantined_key(queue: KeyQueue, clock: FakeClock) -> None:
    queue.add(key(1), T0, policy_fingerprint="policy-v1")
    (lease,) = queue.lease("w", 1)
    queue.quarantine(lease, "unsupported media type")
    queue.add(key(1), T0 + 5, policy_fingerprint="policy-v2")
    assert queue.counts().quarantined == 0
    clock.set(T0 + 5)
    (lease,) = queue.lease("w", 1)
    assert lease.attempts == 0
    assert lease.policy_fingerprint == "policy-v2"


def test_a_new_digest_is_a_new_key_untouched_by_the_old_quarantine(
    queue: KeyQueue,
) -> None:
    queue.add(key(1), T0)
    (lease,) = queue.lease("w", 1)
    queue.quarantine(lease, "bad layer")
    newer = Key(key(1).repository, f"sha256:{2:064x}", "estargz")
    queue.add(newer, T0)
    assert [lease.key for lease in queue.lease("w", 5)] == [newer]


def test_a_policy_change_during_the_work_overrules_its_quarantine(
    queue: KeyQueue,
    clock: FakeClock,
) -> None:
    queue.add(key(1), T0, policy_fingerprint="policy-v1")
    (lease,) = queue.lease("w", 1)
    queue.add(key(1), T0 + 1, policy_fingerprint="policy-v2")
    clock.set(T0 + 2)
    assert queue.quarantine(lease, "unsupported platform")
    assert queue.counts().quarantined == 0
    assert queue.counts().pending == 1


def test_retry_moves_a_quarantined_key_back_to_pending_now(
    queue: KeyQueue, clock: FakeClock
) -> None:
    queue.add(key(1), T0)
    (lease,) = queue.lease("w", 1)
    queue.quarantine(lease, "bad")
    clock.set(T0 + 7)
    assert queue.retry(key(1))
    assert not queue.retry(key(1))
    assert queue.next_due() == T0 + 7
    assert queue.quarantined() == []


def test_retry_all_moves_quarantined_and_backing_off_keys_only(
    queue: KeyQueue, clock: FakeClock
) -> None:
    for n in range(1, 5):
        queue.add(key(n), T0)
    first, second, third, fourth = queue.lease("w", 4)
    queue.quarantine(first, "bad")
    queue.retry_later(second, "503")
    queue.done(third)
    clock.set(T0 + 1)
    assert queue.retry_all() == 2
    assert queue.counts().pending == 2
    assert queue.counts().in_progress == 1
    assert {lease.key for lease in queue.lease("w", 5)} == {first.key, second.key}
    assert queue.retry(fourth.key) is False


def test_forget_drops_a_waiting_key(queue: KeyQueue) -> None:
    queue.add(key(1), T0)
    queue.forget(key(1))
    assert queue.counts().pending == 0


def test_forget_on_a_leased_key_keeps_the_lease_but_clears_the_dirty_mark(
    queue: KeyQueue,
) -> None:
    queue.add(key(1), T0)
    (lease,) = queue.lease("w", 1)
    queue.add(key(1), T0)
    queue.forget(key(1))
    queue.add(key(1), T0)
    assert queue.lease("other", 1) == []
    queue.forget(key(1))
    assert queue.done(lease)
    assert queue.counts().pending == 0


def test_a_worker_that_lost_its_lease_changes_nothing(queue: KeyQueue, clock: FakeClock) -> None:
    queue.add(key(1), T0)
    (stale,) = queue.lease("a", 1)
    clock.set(T0 + 61)
    assert queue.lease("b", 1) == []
    clock.set(T0 + 7300)
    (fresh,) = queue.lease("b", 1)
    assert fresh.key == stale.key
    assert not queue.done(stale)
    assert not queue.retry_later(stale, "late")
    assert not queue.quarantine(stale, "late")
    assert not queue.requeue_after(stale, 1)
    assert queue.in_progress()[0].owner == "b"


def test_renewed_leases_outlive_their_first_expiry(queue: KeyQueue, clock: FakeClock) -> None:
    queue.add(key(1), T0)
    (lease,) = queue.lease("w", 1)
    clock.set(T0 + 50)
    assert queue.renew("w") == 1
    assert queue.renew("someone-else") == 0
    clock.set(T0 + 100)
    assert queue.release_expired() == 0
    assert queue.done(lease)


def test_an_expired_lease_makes_the_key_pending_counting_a_failure(
    queue: KeyQueue,
    clock: FakeClock,
) -> None:
    queue.add(key(1), T0)
    assert len(queue.lease("w", 1)) == 1
    clock.set(T0 + 61)
    assert queue.release_expired() == 1
    (failing,) = queue.failing()
    assert failing.attempts == 1
    assert "worker w" in failing.last_error
    assert "stopped without a result" in failing.last_error
    assert 1.0 <= failing.next_attempt_at - (T0 + 61) <= 1.2


def test_release_gives_a_key_back_unworked(queue: KeyQueue, clock: FakeClock) -> None:
    queue.add(key(1), T0)
    (lease,) = queue.lease("w", 1)
    clock.set(T0 + 3)
    assert queue.release(lease)
    assert queue.failing() == []
    assert queue.next_due() == T0 + 3


def test_in_progress_shows_owner_start_and_reconcile_id(queue: KeyQueue) -> None:
    queue.add(key(1), T0)
    (lease,) = queue.lease("worker-1", 1)
    (shown,) = queue.in_progress()
    assert (shown.key, shown.owner, shown.started_at, shown.expires_at) == (
        key(1),
        "worker-1",
        T0,
        T0 + 60,
    )
    assert shown.reconcile_id == lease.reconcile_id
    assert shown.pid > 0


def test_key_state_tells_where_a_key_stands(queue: KeyQueue) -> None:
    assert queue.key_state(key(1)) is None
    queue.add(key(1), T0)
    pending = queue.key_state(key(1))
    assert pending is not None
    assert (pending.state, pending.due_at, pending.attempts) == ("pending", T0, 0)
    (lease,) = queue.lease("w", 1)
    assert getattr(queue.key_state(key(1)), "state", None) == "leased"
    queue.quarantine(lease, "bad layer")
    parked = queue.key_state(key(1))
    assert parked is not None
    assert (parked.state, parked.attempts, parked.last_error) == ("quarantined", 1, "bad layer")


def test_an_undecodable_row_is_dropped_with_a_log_line_and_never_stops_leasing(
    state_backend: StateBackend, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = state_backend.open(clock, lease_seconds=60)
    database = cast(SqlDatabase, store.database)
    with database.write() as conn:
        conn.execute(
            "INSERT INTO queue (key, state, due_at, attempts) VALUES (?, 'pending', ?, 0)",
            ("not a key", T0 - 1),
        )
    store.queue.add(key(1), T0)

    with caplog.at_level(logging.ERROR):
        leased = store.queue.lease("w", 10)

    assert [lease.key for lease in leased] == [key(1)]
    assert "undecodable queue row dropped" in caplog.text
    assert database.read("SELECT key FROM queue WHERE key = ?", ("not a key",)) == []
