"""SIGKILL `acceld serve` at chosen points of a conversion (download, conversion, upload,
manifest push, fallback-tag update), start it again, and check that everything converges: exactly
one referrer per original, no fallback entry pointing at nothing, the dead process's files gone,
the queue empty, originals untouched.

A proxy between acceld and the registry holds the requests of the chosen point for a moment, so
the kill lands while that request is on the wire; the "conversion" point holds nothing and kills
a random moment after the first download began.
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.daemon_process import DaemonProcess, estargz_policy, loopback_listen, wait_until
from tests.support.fault_proxy import Fault, FaultRule
from tests.support.registry_log import parse_access_log
from tests.support.registry_server import RunningRegistry, start_registry
from tests.support.reliability import (
    WatchedProxy,
    assert_converged,
    converted_everywhere,
    fallback_entries,
    original_writes,
    push_distinct_images,
    queue_counts,
    registry_serve_config,
)

IMAGES_PER_TRIAL = 2
LAYER_BYTES = 6 << 20
HOLD_SECONDS = 1.5
SLOW_TRIALS = 20
UPLOADS = ("POST", "PATCH", "PUT")


@dataclass(frozen=True)
class CrashPoint:
    name: str
    methods: tuple[str, ...]
    path: str
    hold: bool
    """Hold the matching requests for HOLD_SECONDS; else kill up to `window` after one came."""
    window: float = HOLD_SECONDS * 0.8


CRASH_POINTS = (
    CrashPoint("download", ("GET",), r"/blobs/sha256:", hold=True),
    CrashPoint("conversion", ("GET",), r"/blobs/sha256:", hold=False, window=0.15),
    CrashPoint("upload", ("PUT", "PATCH"), r"/blobs/uploads/", hold=True),
    CrashPoint("manifest push", ("PUT",), r"/manifests/sha256:", hold=True),
    CrashPoint("fallback-tag update", ("PUT",), r"/manifests/sha256-", hold=True),
)


@dataclass(frozen=True)
class Trial:
    point: str
    unfinished: int
    """Originals still without a referrer when the killed process was gone."""
    uploads_begun: int
    """Blob upload requests the killed process had sent when the kill came."""
    files_left: int
    """Files the killed process left in its work area."""
    seconds: float


def _serve(directory: Path, proxy: WatchedProxy, project: str) -> DaemonProcess:
    listen = loopback_listen()
    config = registry_serve_config(
        directory, proxy.host, [estargz_policy(project, project)], listen=listen
    )
    return DaemonProcess(config, listen)


def crash_and_recover(
    registry: RunningRegistry,
    proxy: WatchedProxy,
    directory: Path,
    trial: int,
    point: CrashPoint,
    rng: random.Random,
) -> Trial:
    started = time.monotonic()
    project = f"crash{trial}"
    images = push_distinct_images(
        registry.url, project, IMAGES_PER_TRIAL, size=LAYER_BYTES, seed=trial
    )
    logged_before = len(parse_access_log(registry.log_text()))
    rules = []
    if point.hold:
        rules.append(
            FaultRule(
                Fault.SLOW,
                methods=frozenset(point.methods),
                path=point.path,
                unrepeatable_too=True,
                delay_seconds=HOLD_SECONDS,
            )
        )
    proxy.set_rules(rules)
    seen = proxy.arrivals()
    with _serve(directory, proxy, project) as first:
        came = proxy.wait_for_request(point.methods, point.path, after=seen, timeout=60)
        assert came, f"no {point.name} request reached the registry:\n{first.log_text()}"
        time.sleep(rng.uniform(0.0, point.window))
        uploads_begun = proxy.matching(UPLOADS, r"/blobs/uploads/", after=seen)
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait_exit(10) == -signal.SIGKILL
    dead_area = directory / "work" / f"proc-{first.pid}"
    assert dead_area.is_dir()
    files_left = sum(1 for path in dead_area.rglob("*") if path.is_file())
    proxy.set_rules([])
    proxy.records()  # the held requests are answered (or dropped) before the state is read
    unfinished = sum(
        1 for i in images if not fallback_entries(registry.url, i.repository, i.digest)
    )

    with _serve(directory, proxy, project) as second:
        second.wait_ready(timeout=30)
        config = directory / "config.yaml"
        wait_until(
            lambda: converted_everywhere(registry.url, images), 60, "every referrer after restart"
        )
        wait_until(
            lambda: queue_counts(config) == {"pending": 0, "in_progress": 0, "quarantined": 0},
            60,
            "an empty queue",
            interval=0.3,
        )
        assert not dead_area.exists()
        assert second.stop() == 0, second.log_text()
    assert list((directory / "work").iterdir()) == []
    assert_converged(registry.url, images, directory / "check")
    assert original_writes(proxy.records(), images) == []
    assert original_writes(parse_access_log(registry.log_text())[logged_before:], images) == []
    return Trial(point.name, unfinished, uploads_begun, files_left, time.monotonic() - started)


@pytest.fixture(scope="module")
def crash_registry(tmp_path_factory: pytest.TempPathFactory) -> RunningRegistry:
    running = start_registry(tmp_path_factory.mktemp("crash-registry"))
    yield running  # type: ignore[misc]
    running.stop()


def test_killed_during_the_fallback_tag_update_a_restart_leaves_one_referrer(
    crash_registry: RunningRegistry, tmp_path: Path
) -> None:
    point = CRASH_POINTS[-1]
    with WatchedProxy(crash_registry.host) as proxy:
        trial = crash_and_recover(crash_registry, proxy, tmp_path, 100, point, random.Random(1))
    print(trial)


@pytest.mark.slow
def test_twenty_kills_at_every_point_of_a_conversion_each_converge_after_restart(
    crash_registry: RunningRegistry, tmp_path: Path
) -> None:
    rng = random.Random(20261128)
    trials: list[Trial] = []
    with WatchedProxy(crash_registry.host) as proxy:
        for n in range(SLOW_TRIALS):
            point = CRASH_POINTS[n % len(CRASH_POINTS)]
            directory = tmp_path / f"trial-{n}"
            directory.mkdir()
            trials.append(crash_and_recover(crash_registry, proxy, directory, n, point, rng))
    for point in CRASH_POINTS:
        mine = [t for t in trials if t.point == point.name]
        print(
            f"{point.name}: {len(mine)} kills, {sum(t.unfinished for t in mine)} originals "
            f"unfinished at the kill, {sum(not t.uploads_begun for t in mine)} kills before any "
            f"upload, {sum(t.files_left for t in mine)} files left behind, "
            f"{sum(t.seconds for t in mine):.1f} s"
        )
    assert len(trials) == SLOW_TRIALS
    # The kills must have interrupted real work, or this proves nothing about crashes.
    assert sum(t.unfinished for t in trials) >= SLOW_TRIALS
    # Killed after a download began and before any upload: in the middle of a conversion.
    assert any(t.point == "conversion" and not t.uploads_begun for t in trials)
    # ... and its files were there to be cleaned up by the next start.
    assert any(t.files_left for t in trials)
