"""The in-process `WorkQueue`: blocking get, wake on add, polling for other processes' keys,
the heartbeat, on each backend."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.state.clock import SystemClock
from reconciler.state.keys import Key
from reconciler.state.store import KeyQueue, Lease, StateStore
from reconciler.state.workqueue import WorkQueue
from tests.support.clock import FakeClock
from tests.support.daemon_process import wait_until
from tests.support.state_backends import StateBackend

pytest_plugins = ("tests.support.state_fixtures",)

KEY = Key("proj/app", "sha256:" + "ef" * 32, "estargz")
LEASE_SECONDS = 60.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(state_backend: StateBackend, clock: FakeClock) -> StateStore:
    return state_backend.open(clock, lease_seconds=LEASE_SECONDS)


@pytest.fixture
def queue(state: StateStore, clock: FakeClock) -> Iterator[WorkQueue]:
    work = WorkQueue(state.queue, "serve", clock, poll_seconds=5.0, heartbeat_seconds=0.05)
    work.start()
    yield work
    work.shut_down()


def _get_in_thread(queue: WorkQueue, timeout: float) -> tuple[threading.Thread, list[Lease | None]]:
    got: list[Lease | None] = []
    thread = threading.Thread(target=lambda: got.append(queue.get(timeout)))
    thread.start()
    return thread, got


def _renewed_at(keys: KeyQueue, clock: FakeClock) -> bool:
    return [item.expires_at for item in keys.in_progress()] == [clock.now() + LEASE_SECONDS]


def _kept_past_its_first_expiry(keys: KeyQueue, clock: FakeClock, backend: StateBackend) -> bool:
    """Whether a lease taken now is still held, by the heartbeat's renewal, once it would have
    expired: another process then finds nothing to release."""
    clock.advance(LEASE_SECONDS - 10)
    wait_until(lambda: _renewed_at(keys, clock), 5.0, "the heartbeat's renewal")
    clock.advance(20)
    return backend.open(clock).queue.release_expired() == 0


def test_get_wakes_when_this_process_adds_a_key(queue: WorkQueue) -> None:
    thread, got = _get_in_thread(queue, 10.0)
    time.sleep(0.1)
    started = time.monotonic()
    queue.add(KEY)
    thread.join(timeout=5)
    assert time.monotonic() - started < 1.0
    assert got[0] is not None
    assert got[0].key == KEY


def test_get_gives_up_after_its_timeout(queue: WorkQueue) -> None:
    started = time.monotonic()
    assert queue.get(0.3) is None
    assert 0.3 <= time.monotonic() - started < 2.0


def test_get_waits_for_a_delayed_key_until_it_is_due_not_a_whole_poll(
    state_backend: StateBackend,
) -> None:
    clock = SystemClock()
    queue = WorkQueue(state_backend.open(clock).queue, "serve", clock, poll_seconds=5.0)
    queue.add(KEY, due_at=clock.now() + 0.4)
    started = time.monotonic()
    lease = queue.get(5.0)
    assert lease is not None
    assert 0.35 <= time.monotonic() - started < 1.5


def test_get_finds_a_key_another_process_added(
    state_backend: StateBackend, clock: FakeClock
) -> None:
    queue = WorkQueue(state_backend.open(clock).queue, "serve", clock, poll_seconds=0.2)
    thread, got = _get_in_thread(queue, 10.0)
    time.sleep(0.1)
    state_backend.open(clock).queue.add(KEY)
    thread.join(timeout=5)
    assert got[0] is not None


def test_shut_down_releases_waiting_workers(queue: WorkQueue) -> None:
    thread, got = _get_in_thread(queue, 30.0)
    time.sleep(0.1)
    queue.shut_down()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert got == [None]


def test_the_heartbeat_keeps_leases_past_their_first_expiry(
    state_backend: StateBackend, queue: WorkQueue, clock: FakeClock
) -> None:
    queue.add(KEY)
    lease = queue.get(1.0)
    assert lease is not None
    assert _kept_past_its_first_expiry(queue.keys, clock, state_backend)
    assert queue.keys.done(lease)


def test_the_heartbeat_outlasts_a_sqlite_database_locked_by_another_process(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    backend = StateBackend("sqlite", str(tmp_path / "state.db"))
    state = backend.open(clock, lease_seconds=LEASE_SECONDS, busy_timeout_seconds=0.05)
    queue = WorkQueue(state.queue, "serve", clock, heartbeat_seconds=0.05)
    queue.start()
    try:
        queue.add(KEY)
        lease = queue.get(1.0)
        assert lease is not None
        blocker = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        wait_until(lambda: "lease heartbeat failed" in caplog.messages, 5.0, "a failed heartbeat")
        blocker.execute("ROLLBACK")
        blocker.close()
        assert _kept_past_its_first_expiry(state.queue, clock, backend)
        assert state.queue.done(lease)
    finally:
        queue.shut_down()
        backend.close_all()
