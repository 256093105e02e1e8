"""The in-process `WorkQueue`: blocking get, wake on add, polling for other processes' keys."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.state.keys import Key
from reconciler.state.sqlite_store import SqliteStateStore
from reconciler.state.store import Lease
from reconciler.state.workqueue import WorkQueue

KEY = Key("proj/app", "sha256:" + "ef" * 32, "estargz")


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[WorkQueue]:
    store = SqliteStateStore(tmp_path / "state.db", lease_seconds=1.0)
    work = WorkQueue(store, "serve", poll_seconds=5.0, heartbeat_seconds=0.2)
    work.start()
    yield work
    work.shut_down()


def _get_in_thread(queue: WorkQueue, timeout: float) -> tuple[threading.Thread, list[Lease | None]]:
    got: list[Lease | None] = []
    thread = threading.Thread(target=lambda: got.append(queue.get(timeout)))
    thread.start()
    return thread, got


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


def test_get_returns_a_delayed_key_when_it_comes_due(queue: WorkQueue) -> None:
    queue.add(KEY, due_at=time.time() + 0.4)
    started = time.monotonic()
    lease = queue.get(5.0)
    assert lease is not None
    assert 0.35 <= time.monotonic() - started < 1.5


def test_get_finds_a_key_another_process_added(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "state.db")
    queue = WorkQueue(store, "serve", poll_seconds=0.2)
    thread, got = _get_in_thread(queue, 10.0)
    time.sleep(0.1)
    SqliteStateStore(tmp_path / "state.db").add(KEY)
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
    tmp_path: Path, queue: WorkQueue
) -> None:
    queue.add(KEY)
    lease = queue.get(1.0)
    assert lease is not None
    time.sleep(2.0)
    assert SqliteStateStore(tmp_path / "state.db").release_expired() == 0
    assert queue.store.done(lease)


def test_the_heartbeat_outlasts_a_database_locked_by_another_process(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "state.db", lease_seconds=1.5, busy_timeout_seconds=0.05)
    queue = WorkQueue(store, "serve", heartbeat_seconds=0.2)
    queue.start()
    try:
        queue.add(KEY)
        lease = queue.get(1.0)
        assert lease is not None
        blocker = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        time.sleep(0.7)
        blocker.execute("ROLLBACK")
        blocker.close()
        time.sleep(1.2)
        assert SqliteStateStore(tmp_path / "state.db").release_expired() == 0
        assert store.done(lease)
    finally:
        queue.shut_down()
