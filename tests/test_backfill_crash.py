"""SIGKILL a real `acceld backfill` at a random moment, run it again: the work finishes, nothing
is converted twice, no broken referrer is left behind, and the crashed run's files are gone."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harbor_api.version import ACCELD_VERSION
from tests.support.acceld_process import acceld, registry_config
from tests.support.converted_images import check_converted_manifest, pull_manifest
from tests.support.registry_server import RunningRegistry, start_registry
from tests.support.reliability import fallback_entries, push_distinct_images


def _crash_then_finish(registry: RunningRegistry, tmp: Path, trial: int, rng: random.Random) -> int:
    """One trial; returns how many images still lacked their referrer when the kill came."""
    images = push_distinct_images(registry.url, f"crash{trial}", 4, size=16 << 20, seed=trial)
    config = registry_config(
        tmp,
        registry.host,
        [{"name": "crash", "projects": [f"crash{trial}"], "formats": ["estargz"]}],
        workers=2,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "backfill", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(rng.uniform(0.8, 3.0))
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    unfinished = sum(
        1 for image in images if not fallback_entries(registry.url, image.repository, image.digest)
    )

    again = acceld("backfill", "--config", str(config), "--output", "json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["converged"] is True
    for image in images:
        entries = fallback_entries(registry.url, image.repository, image.digest)
        assert len(entries) == 1, (image.repository, entries)
        original = pull_manifest(registry.url, image.repository, image.digest)
        check_converted_manifest(
            registry.url, image.repository, entries[0], original, ACCELD_VERSION, tmp
        )
    leftovers = list((tmp / "work").iterdir()) if (tmp / "work").exists() else []
    assert leftovers == []
    status = acceld("status", "--config", str(config), "--output", "json")
    queue = json.loads(status.stdout)["queue"]
    assert queue == {"pending": 0, "in_progress": 0, "quarantined": 0}
    return unfinished


@pytest.fixture(scope="module")
def crash_registry(tmp_path_factory: pytest.TempPathFactory) -> RunningRegistry:
    running = start_registry(tmp_path_factory.mktemp("crash-registry"))
    yield running  # type: ignore[misc]
    running.stop()


@pytest.mark.slow
def test_backfill_killed_at_a_random_moment_converges_on_the_next_run(
    crash_registry: RunningRegistry, tmp_path: Path
) -> None:
    rng = random.Random(20261127)
    unfinished = []
    for trial in range(3):
        trial_dir = tmp_path / f"trial-{trial}"
        trial_dir.mkdir()
        unfinished.append(_crash_then_finish(crash_registry, trial_dir, trial, rng))
    # The kills must have interrupted real work, or the test proves nothing about crashes.
    assert any(unfinished), unfinished
