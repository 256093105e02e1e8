"""Workers outlive an unreachable state database: a failing lease or queue update is retried,
never the end of the worker thread, and a reconciled key is recorded once the database
answers again instead of staying leased to a live process."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from reconciler.controller.controller import Controller, Worked
from reconciler.controller.reconcile import Outcome
from reconciler.observability.metrics import Metrics
from reconciler.state.keys import Key
from reconciler.state.sqlite_state import open_sqlite_state
from reconciler.state.store import KeyQueue, StateError
from reconciler.state.workqueue import WorkQueue
from tests.support.clock import FakeClock

KEY = Key("library/app", "sha256:" + "ef" * 32, "estargz")


class FlakyQueue:
    """`keys`, but the first `failures[name]` calls of each named method raise StateError."""

    def __init__(self, keys: KeyQueue, failures: dict[str, int]) -> None:
        self._keys = keys
        self._failures = dict(failures)
        self.failed: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._keys, name)
        if name not in self._failures:
            return method

        def flaky(*args: Any, **kwargs: Any) -> Any:
            if self._failures[name] > 0:
                self._failures[name] -= 1
                self.failed.append(name)
                raise StateError("postgresql://db:5432/acceld: server closed the connection")
            return method(*args, **kwargs)

        return flaky


class Present:
    def reconcile(self, key: Key) -> Outcome:
        return Outcome("present", "a referrer in estargz exists")


def test_a_worker_retries_the_state_database_until_the_key_is_recorded(tmp_path: Path) -> None:
    clock = FakeClock()
    store = open_sqlite_state(tmp_path / "state.db", clock)
    store.queue.add(KEY, clock.now())
    flaky = FlakyQueue(store.queue, {"lease": 2, "done": 3})
    keys: Any = flaky
    queue = WorkQueue(keys, "serve:host:1:abcd", clock, poll_seconds=0.05)
    settled = threading.Event()
    results: list[Worked] = []

    def worked(result: Worked) -> None:
        results.append(result)
        settled.set()

    reconciler: Any = Present()
    controller = Controller(
        queue,
        keys,
        Metrics(CollectorRegistry(), formats=["estargz"]),
        lambda: reconciler,
        workers=1,
        on_worked=worked,
    )
    controller.start()
    try:
        assert settled.wait(timeout=20)
        assert controller.alive()
    finally:
        controller.stop(0.0)
    assert [r.status for r in results] == ["done"]
    assert flaky.failed == ["lease", "lease", "done", "done", "done"]
    assert store.queue.counts().in_progress == store.queue.counts().pending == 0
    store.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_worker_shows_in_readiness(tmp_path: Path) -> None:
    # What the daemon's /readyz reports as its "workers" check.
    clock = FakeClock()
    store = open_sqlite_state(tmp_path / "state.db", clock)
    store.queue.add(KEY, clock.now())
    queue = WorkQueue(store.queue, "serve:host:1:abcd", clock, poll_seconds=0.05)

    def broken() -> Any:
        raise SystemExit("a bug that escapes the worker loop")

    controller = Controller(
        queue,
        store.queue,
        Metrics(CollectorRegistry(), formats=["estargz"]),
        broken,
        workers=1,
    )
    controller.start()
    try:
        deadline = time.monotonic() + 10
        while controller.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not controller.alive()
    finally:
        controller.stop(0.0)
        store.close()
