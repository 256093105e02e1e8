"""The queue's client-go semantics, one by one, on a real SQLite file with an injected clock."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from reconciler.state.backoff import Backoff
from reconciler.state.keys import Key
from reconciler.state.sqlite_store import SqliteStateStore

T0 = 1_800_000_000.0


def key(n: int, format_name: str = "estargz") -> Key:
    return Key(f"proj/app{n}", f"sha256:{n:064x}", format_name)


@pytest.fixture
def store(tmp_path: Path) -> SqliteStateStore:
    return SqliteStateStore(tmp_path / "state.db", lease_seconds=60, rng=random.Random(7))


def test_a_pending_key_is_queued_once_however_often_it_is_added(store: SqliteStateStore) -> None:
    for _ in range(5):
        store.add(key(1), T0)
    store.add(key(2), T0)
    assert store.counts().pending == 2
    leased = store.lease("w", 10, T0)
    assert sorted(str(lease.key) for lease in leased) == sorted([str(key(1)), str(key(2))])
    assert store.lease("w", 10, T0) == []


def test_add_keeps_the_earliest_due_time(store: SqliteStateStore) -> None:
    store.add(key(1), T0 + 100)
    store.add(key(1), T0 + 10)
    store.add(key(1), T0 + 50)
    assert store.next_due() == T0 + 10
    assert store.lease("w", 1, T0 + 9) == []
    assert [lease.key for lease in store.lease("w", 1, T0 + 10)] == [key(1)]


def test_keys_are_leased_earliest_due_first_up_to_the_limit(store: SqliteStateStore) -> None:
    for n, due in [(1, 30), (2, 10), (3, 20)]:
        store.add(key(n), T0 + due)
    assert [lease.key for lease in store.lease("w", 2, T0 + 60)] == [key(2), key(3)]


def test_a_leased_key_is_not_leased_again_until_done(store: SqliteStateStore) -> None:
    store.add(key(1), T0)
    (lease,) = store.lease("a", 1, T0)
    store.add(key(1), T0)
    assert store.lease("b", 1, T0 + 1) == []
    assert store.counts().in_progress == 1
    assert store.done(lease)
    assert [again.owner for again in store.lease("b", 1, T0 + 2)] == ["b"]


def test_a_key_added_while_leased_is_pending_again_after_done(store: SqliteStateStore) -> None:
    store.add(key(1), T0)
    (lease,) = store.lease("w", 1, T0)
    store.add(key(1), T0 + 40)
    store.add(key(1), T0 + 30)
    assert store.done(lease)
    assert store.counts().pending == 1
    assert store.next_due() == T0 + 30


def test_done_without_a_new_add_removes_the_key(store: SqliteStateStore) -> None:
    store.add(key(1), T0)
    (lease,) = store.lease("w", 1, T0)
    assert store.done(lease)
    assert store.counts().pending == store.counts().in_progress == 0
    assert store.next_due() is None


def test_transient_failures_back_off_exponentially_within_jitter(tmp_path: Path) -> None:
    backoff = Backoff(base=1.0, cap=3600.0, jitter=0.2)
    store = SqliteStateStore(tmp_path / "state.db", backoff=backoff, rng=random.Random(3))
    store.add(key(1), T0)
    now = T0
    delays = []
    for attempt in range(1, 16):
        (lease,) = store.lease("w", 1, now)
        assert lease.attempts == attempt - 1
        assert store.retry_later(lease, f"HTTP 503 on attempt {attempt}", now)
        due = store.next_due()
        assert due is not None
        delays.append(due - now)
        nominal = min(3600.0, 2.0 ** (attempt - 1))
        assert nominal <= due - now <= min(3600.0, nominal * 1.2)
        now = due
    assert delays[-1] == 3600.0
    assert len({round(d, 6) for d in delays[:8]}) == 8
    (failing,) = store.failing()
    assert failing.attempts == 15
    assert failing.last_error == "HTTP 503 on attempt 15"


def test_adding_a_backing_off_key_does_not_cut_its_backoff(store: SqliteStateStore) -> None:
    store.add(key(1), T0)
    (lease,) = store.lease("w", 1, T0)
    store.retry_later(lease, "boom", T0)
    due = store.next_due()
    store.add(key(1), T0 + 0.1)
    assert store.next_due() == due
    assert store.failing()[0].attempts == 1


def test_success_resets_the_failure_count(store: SqliteStateStore) -> None:
    store.add(key(1), T0)
    (lease,) = store.lease("w", 1, T0)
    store.retry_later(lease, "boom", T0)
    (lease,) = store.lease("w", 1, T0 + 10)
    assert lease.attempts == 1
    assert store.done(lease)
    store.add(key(1), T0 + 20)
    (lease,) = store.lease("w", 1, T0 + 20)
    assert lease.attempts == 0


def test_requeue_after_waits_the_given_time_without_counting_a_failure(
    store: SqliteStateStore,
) -> None:
    store.add(key(1), T0)
    (lease,) = store.lease("w", 1, T0)
    assert store.requeue_after(lease, 30, T0 + 1)
    assert store.next_due() == T0 + 31
    assert store.failing() == []
    (lease,) = store.lease("w", 1, T0 + 31)
    assert lease.attempts == 0


def test_requeue_after_yields_to_an_earlier_add_during_the_work(store: SqliteStateStore) -> None:
    store.add(key(1), T0)
    (lease,) = store.lease("w", 1, T0)
    store.add(key(1), T0 + 5)
    store.requeue_after(lease, 300, T0 + 1)
    assert store.next_due() == T0 + 5


def test_a_terminal_error_quarantines_the_key_with_its_reason(store: SqliteStateStore) -> None:
    store.add(key(1), T0, policy_fingerprint="policy-v1")
    (lease,) = store.lease("w", 1, T0)
    assert store.quarantine(lease, "layer 2: not a tar stream", T0 + 1)
    assert store.counts().quarantined == 1
    (parked,) = store.quarantined()
    assert parked.key == key(1)
    assert parked.reason == "layer 2: not a tar stream"
    assert parked.policy_fingerprint == "policy-v1"
    assert parked.quarantined_at == T0 + 1
    store.add(key(1), T0 + 2, policy_fingerprint="policy-v1")
    store.add(key(1), T0 + 2)
    assert store.lease("w", 1, T0 + 10_000) == []


def test_a_policy_change_releases_a_quarantined_key(store: SqliteStateStore) -> None:
    store.add(key(1), T0, policy_fingerprint="policy-v1")
    (lease,) = store.lease("w", 1, T0)
    store.quarantine(lease, "unsupported media type", T0)
    store.add(key(1), T0 + 5, policy_fingerprint="policy-v2")
    assert store.counts().quarantined == 0
    (lease,) = store.lease("w", 1, T0 + 5)
    assert lease.attempts == 0
    assert lease.policy_fingerprint == "policy-v2"


def test_a_new_digest_is_a_new_key_untouched_by_the_old_quarantine(
    store: SqliteStateStore,
) -> None:
    store.add(key(1), T0)
    (lease,) = store.lease("w", 1, T0)
    store.quarantine(lease, "bad layer", T0)
    newer = Key(key(1).repository, f"sha256:{2:064x}", "estargz")
    store.add(newer, T0)
    assert [lease.key for lease in store.lease("w", 5, T0)] == [newer]


def test_a_policy_change_during_the_work_overrules_its_quarantine(
    store: SqliteStateStore,
) -> None:
    store.add(key(1), T0, policy_fingerprint="policy-v1")
    (lease,) = store.lease("w", 1, T0)
    store.add(key(1), T0 + 1, policy_fingerprint="policy-v2")
    assert store.quarantine(lease, "unsupported platform", T0 + 2)
    assert store.counts().quarantined == 0
    assert store.counts().pending == 1


def test_retry_moves_a_quarantined_key_back_to_pending_now(store: SqliteStateStore) -> None:
    store.add(key(1), T0)
    (lease,) = store.lease("w", 1, T0)
    store.quarantine(lease, "bad", T0)
    assert store.retry(key(1), T0 + 7)
    assert not store.retry(key(1), T0 + 7)
    assert store.next_due() == T0 + 7
    assert store.quarantined() == []


def test_retry_all_moves_quarantined_and_backing_off_keys_only(store: SqliteStateStore) -> None:
    for n in range(1, 5):
        store.add(key(n), T0)
    first, second, third, fourth = store.lease("w", 4, T0)
    store.quarantine(first, "bad", T0)
    store.retry_later(second, "503", T0)
    store.done(third)
    assert store.retry_all(T0 + 1) == 2
    assert store.counts().pending == 2
    assert store.counts().in_progress == 1
    assert {lease.key for lease in store.lease("w", 5, T0 + 1)} == {first.key, second.key}
    assert store.retry(fourth.key, T0 + 1) is False


def test_forget_drops_a_waiting_key(store: SqliteStateStore) -> None:
    store.add(key(1), T0)
    store.forget(key(1))
    assert store.counts().pending == 0


def test_forget_on_a_leased_key_keeps_the_lease_but_clears_the_dirty_mark(
    store: SqliteStateStore,
) -> None:
    store.add(key(1), T0)
    (lease,) = store.lease("w", 1, T0)
    store.add(key(1), T0)
    store.forget(key(1))
    store.add(key(1), T0)
    assert store.lease("other", 1, T0) == []
    store.forget(key(1))
    assert store.done(lease)
    assert store.counts().pending == 0


def test_a_worker_that_lost_its_lease_changes_nothing(store: SqliteStateStore) -> None:
    store.add(key(1), T0)
    (stale,) = store.lease("a", 1, T0)
    assert store.lease("b", 1, T0 + 61) == []
    (fresh,) = store.lease("b", 1, T0 + 7300)
    assert fresh.key == stale.key
    assert not store.done(stale)
    assert not store.retry_later(stale, "late", T0 + 7300)
    assert not store.quarantine(stale, "late", T0 + 7300)
    assert not store.requeue_after(stale, 1, T0 + 7300)
    assert store.in_progress()[0].owner == "b"


def test_renewed_leases_outlive_their_first_expiry(store: SqliteStateStore) -> None:
    store.add(key(1), T0)
    (lease,) = store.lease("w", 1, T0)
    assert store.renew("w", T0 + 50) == 1
    assert store.renew("someone-else", T0 + 50) == 0
    assert store.release_expired(T0 + 100) == 0
    assert store.done(lease)


def test_an_expired_lease_makes_the_key_pending_counting_a_failure(
    store: SqliteStateStore,
) -> None:
    store.add(key(1), T0)
    assert len(store.lease("w", 1, T0)) == 1
    assert store.release_expired(T0 + 61) == 1
    (failing,) = store.failing()
    assert failing.attempts == 1
    assert "worker w" in failing.last_error
    assert "stopped without a result" in failing.last_error
    assert 1.0 <= failing.next_attempt_at - (T0 + 61) <= 1.2


def test_release_gives_a_key_back_unworked(store: SqliteStateStore) -> None:
    store.add(key(1), T0)
    (lease,) = store.lease("w", 1, T0)
    assert store.release(lease, T0 + 3)
    assert store.failing() == []
    assert store.next_due() == T0 + 3


def test_in_progress_shows_owner_start_and_reconcile_id(store: SqliteStateStore) -> None:
    store.add(key(1), T0)
    (lease,) = store.lease("worker-1", 1, T0)
    (shown,) = store.in_progress()
    assert (shown.key, shown.owner, shown.started_at, shown.expires_at) == (
        key(1),
        "worker-1",
        T0,
        T0 + 60,
    )
    assert shown.reconcile_id == lease.reconcile_id
    assert shown.pid > 0


def test_key_state_tells_where_a_key_stands(store: SqliteStateStore) -> None:
    assert store.key_state(key(1)) is None
    store.add(key(1), T0)
    pending = store.key_state(key(1))
    assert pending is not None
    assert (pending.state, pending.due_at, pending.attempts) == ("pending", T0, 0)
    (lease,) = store.lease("w", 1, T0)
    assert getattr(store.key_state(key(1)), "state", None) == "leased"
    store.quarantine(lease, "bad layer", T0)
    parked = store.key_state(key(1))
    assert parked is not None
    assert (parked.state, parked.attempts, parked.last_error) == ("quarantined", 1, "bad layer")
