"""Ctrl-C in `acceld backfill`: the first lets the conversions in progress finish, the second
aborts them; exit 130, what is left stays queued and is listed, and no key has an attempt
counted against it for the interrupt. The signal goes to the whole process group, as a
terminal sends it, so the converter children get it too."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.acceld_process import acceld, registry_config
from tests.support.images import Entry, push_image
from tests.support.registry_server import RunningRegistry

IMAGES = 4


def _push_images(registry: RunningRegistry, project: str) -> None:
    for n in range(IMAGES):
        big = Entry(f"data{n}", data=os.urandom(24 << 20))
        push_image(registry.url, f"{project}/app{n}", "v1", [[big]])


def _start_backfill(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler", "backfill", "--config", str(config), "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_for_first_conversion(process: subprocess.Popen[str]) -> list[str]:
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if "reconcile started" in line:
            return seen
    raise AssertionError("backfill ended before converting: " + "".join(seen))


def _status(config: Path) -> dict[str, Any]:
    done = acceld("status", "--config", str(config), "--output", "json")
    assert done.returncode == 0, done.stderr
    status: dict[str, Any] = json.loads(done.stdout)
    return status


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_leaves_the_rest_queued_and_counts_no_failed_attempt(
    registry: RunningRegistry, tmp_path: Path, presses: int
) -> None:
    project = f"interrupt{presses}"
    _push_images(registry, project)
    config = registry_config(
        tmp_path, registry.host, [{"name": "all", "projects": [project], "formats": ["estargz"]}]
    )
    process = _start_backfill(config)
    before = _wait_for_first_conversion(process)
    for _ in range(presses):
        os.killpg(process.pid, signal.SIGINT)
        time.sleep(0.3)
    stdout, rest = process.communicate(timeout=300)
    stderr = "".join(before) + rest
    assert process.returncode == 130, stderr
    assert "interrupted: the conversions in progress finish" in stderr
    assert ("aborting: the conversions in progress go back to the queue" in stderr) is (
        presses == 2
    )
    assert "Traceback" not in stderr
    summary = json.loads(stdout)
    converted = [r["key"] for r in summary["results"] if r["ok"]]
    assert all(r["ok"] for r in summary["results"])
    assert len(converted) == (1 if presses == 1 else 0)
    assert len(summary["left_in_queue"]) == IMAGES - len(converted)
    status = _status(config)
    assert status["failing"] == []
    assert status["quarantined"] == []
    assert status["queue"]["pending"] == IMAGES - len(converted)
