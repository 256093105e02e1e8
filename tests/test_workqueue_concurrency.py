"""Never two workers on one key: threads of one process, and processes sharing one state, on
each backend; and what becomes of the keys of a worker process that is killed."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from multiprocessing.synchronize import Barrier as BarrierType
from pathlib import Path

from reconciler.state.clock import SystemClock
from reconciler.state.keys import Key
from reconciler.state.store import KeyQueue
from tests.support.clock import FakeClock
from tests.support.postgres_server import RunningPostgres
from tests.support.state_backends import StateBackend, open_state

pytest_plugins = ("tests.support.state_fixtures",)

KEYS = 120


def key(n: int) -> Key:
    return Key(f"proj/app{n % 7}", f"sha256:{n:064x}", "estargz")


def _work(keys: KeyQueue, owner: str, markers: Path, deadline: float) -> list[str]:
    """Lease and finish keys until the queue is empty; a marker file proves exclusive holding."""
    handled: list[str] = []
    while time.monotonic() < deadline:
        leases = keys.lease(owner, 2)
        if not leases:
            counts = keys.counts()
            if counts.pending == 0 and counts.in_progress == 0:
                break
            time.sleep(0.005)
            continue
        for lease in leases:
            marker = markers / str(lease.key).replace("/", "_")
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                (markers.parent / "violations").mkdir(exist_ok=True)
                (markers.parent / "violations" / marker.name).touch()
                continue
            os.close(fd)
            time.sleep(0.001)
            marker.unlink()
            assert keys.done(lease)
            handled.append(str(lease.key))
    return handled


def _process_worker(
    backend: str,
    target: str,
    owner: str,
    markers: str,
    out: str,
    threads: int,
    start: BarrierType,
) -> None:
    state = open_state(backend, target, SystemClock())
    results: list[list[str]] = [[] for _ in range(threads)]
    # Both processes start together: on a loaded machine the first would otherwise take every
    # key before the second has imported anything.
    start.wait(timeout=30)
    deadline = time.monotonic() + 30

    def run(slot: int) -> None:
        results[slot] = _work(state.queue, f"{owner}-{slot}", Path(markers), deadline)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=40)
    Path(out).write_text("\n".join(k for handled in results for k in handled))
    state.close()


def _fill(keys: KeyQueue) -> None:
    for n in range(KEYS):
        keys.add(key(n))


def test_many_threads_never_hold_one_key_at_once(
    tmp_path: Path, state_backend: StateBackend
) -> None:
    state = state_backend.open(SystemClock())
    _fill(state.queue)
    markers = tmp_path / "markers"
    markers.mkdir()
    results: list[list[str]] = [[] for _ in range(8)]
    deadline = time.monotonic() + 30

    def run(slot: int) -> None:
        results[slot] = _work(state.queue, f"thread-{slot}", markers, deadline)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=40)
    handled = [k for slot in results for k in slot]
    assert not (tmp_path / "violations").exists()
    assert sorted(handled) == sorted(str(key(n)) for n in range(KEYS))
    assert sum(1 for slot in results if slot) > 1


def test_two_processes_on_one_state_never_hold_one_key_at_once(
    tmp_path: Path, state_backend: StateBackend
) -> None:
    state = state_backend.open(SystemClock())
    _fill(state.queue)
    markers = tmp_path / "markers"
    markers.mkdir()
    context = multiprocessing.get_context("spawn")
    outs = [tmp_path / f"out-{i}" for i in range(2)]
    start = context.Barrier(len(outs))
    processes = [
        context.Process(
            target=_process_worker,
            args=(
                state_backend.name,
                state_backend.target,
                f"proc{i}",
                str(markers),
                str(out),
                3,
                start,
            ),
        )
        for i, out in enumerate(outs)
    ]
    for process in processes:
        process.start()
    # Keys added while the others work: pending again or dirty, never doubly held.
    for n in range(0, KEYS, 3):
        state.queue.add(key(n))
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    handled = [line for out in outs for line in out.read_text().splitlines()]
    assert not (tmp_path / "violations").exists()
    assert set(handled) == {str(key(n)) for n in range(KEYS)}
    assert all(out.read_text() for out in outs)
    assert state.queue.counts().pending == state.queue.counts().in_progress == 0


_VICTIM = """
import sys, time
from reconciler.state.clock import SystemClock
from tests.support.state_backends import open_state
state = open_state(sys.argv[1], sys.argv[2], SystemClock(), lease_seconds=3600)
leases = state.queue.lease(sys.argv[3], 3)
print(len(leases), flush=True)
time.sleep(60)
"""


def _leases_then_killed(backend: StateBackend, owner: str) -> None:
    """A process of this host leases three keys for an hour and is killed (SIGKILL)."""
    victim = subprocess.Popen(
        [sys.executable, "-c", _VICTIM, backend.name, backend.target, owner],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert victim.stdout is not None
        assert victim.stdout.readline().strip() == "3"
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)


def test_on_one_host_the_keys_of_a_killed_worker_process_are_pending_again_at_once(
    tmp_path: Path,
) -> None:
    backend = StateBackend("sqlite", str(tmp_path / "state.db"))
    clock = FakeClock(time.time())
    keys = backend.open(clock).queue
    for n in range(4):
        keys.add(key(n))
    _leases_then_killed(backend, "backfill")
    assert keys.counts().in_progress == 3
    assert keys.release_expired() == 3
    assert keys.counts().pending == 4
    assert all("stopped without a result" in failing.last_error for failing in keys.failing())
    clock.advance(2)
    assert len(keys.lease("serve", 10)) == 4
    backend.close_all()


def test_across_hosts_the_keys_of_a_dead_worker_are_pending_again_after_its_lease(
    postgres: RunningPostgres,
) -> None:
    # A process id means nothing to the other hosts: only the lease's expiry frees the keys.
    backend = StateBackend("postgresql", postgres.dsn(postgres.create_database()))
    clock = FakeClock(time.time())
    keys = backend.open(clock).queue
    for n in range(4):
        keys.add(key(n))
    _leases_then_killed(backend, "serve:host-a")
    assert keys.release_expired() == 0
    clock.advance(3600)
    assert keys.release_expired() == 0
    clock.advance(1)
    assert keys.release_expired() == 3
    assert all("stopped without a result" in failing.last_error for failing in keys.failing())
    clock.advance(2)
    assert len(keys.lease("serve:host-b", 10)) == 4
    backend.close_all()


def test_a_restarted_owner_recovers_what_it_held_before(state_backend: StateBackend) -> None:
    keys = state_backend.open(SystemClock()).queue
    for n in range(3):
        keys.add(key(n))
    _leases_then_killed(state_backend, "serve")
    assert keys.recover("other") == 0
    assert keys.recover("serve") == 3
    assert keys.counts().pending == 3
