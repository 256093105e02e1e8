"""Every command README.md and the operator guide show works as written from the repository
root: each benchmark and each acceld subcommand answers `--help`, the demo runs to the end and
cleans up after itself, and no script stops processes it did not start."""

from __future__ import annotations

import glob
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEXT = "\n".join(path.read_text() for path in DOCUMENTS)

BENCHMARKS = sorted(set(re.findall(r"python (bench/\w+\.py)", TEXT)))
SUBCOMMANDS = sorted(
    {" ".join(re.findall(r"[a-z]+", found)) for found in re.findall(r"`acceld((?: [a-z]+)+)", TEXT)}
)
SCRIPTS = sorted(set(re.findall(r"\./(scripts/[\w.]+)", TEXT)))


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_the_documents_name_commands() -> None:
    assert len(BENCHMARKS) >= 5
    assert {"serve", "backfill", "plan", "status", "check", "harbor setup"} <= set(SUBCOMMANDS)
    assert SCRIPTS == ["scripts/demo.sh", "scripts/test.sh"]


@pytest.mark.parametrize("script", BENCHMARKS)
def test_each_documented_benchmark_runs_as_written(script: str) -> None:
    done = _run(script, "--help")
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
def test_each_documented_acceld_command_exists(subcommand: str) -> None:
    done = _run("-m", "reconciler", *subcommand.split(), "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage: " in done.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_are_valid_and_stop_nothing_by_name(script: str) -> None:
    text = (ROOT / script).read_text()
    assert subprocess.run(["bash", "-n", str(ROOT / script)], check=False).returncode == 0
    for killer in ("pkill", "killall", "kill -"):
        assert killer not in text


def test_the_demo_runs_to_the_end_and_removes_its_directory() -> None:
    pattern = str(Path(tempfile.gettempdir()) / "acceld-demo-*")
    before = set(glob.glob(pattern))
    done = _run("scripts/demo.py", timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "$ acceld backfill" in done.stdout
    assert set(glob.glob(pattern)) == before
