"""`acceld status` and `acceld retry` on a state database filled through the real store."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.state.clock import SystemClock
from reconciler.state.keys import Key
from reconciler.state.sqlite_database import state_db_path
from reconciler.state.sqlite_state import open_sqlite_state
from reconciler.state.store import StateStore
from tests.support.clock import FakeClock


def key(n: int) -> Key:
    return Key(f"library/app{n}", f"sha256:{n:064x}", "estargz")


def _open(state_dir: Path) -> StateStore:
    return open_sqlite_state(state_dir / "state.db", SystemClock())


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """Five keys: one pending, one in progress, one backing off, one quarantined; two scans."""
    directory = tmp_path / "state"
    now = time.time()
    store = open_sqlite_state(state_db_path(directory, must_exist=False), FakeClock(now))
    for n in range(1, 5):
        store.queue.add(key(n), now - 10, policy_fingerprint="fp-1")
    leases = {lease.key: lease for lease in store.queue.lease("serve-worker-0", 3)}
    store.queue.retry_later(leases[key(2)], "GET /v2/library/app2/blobs/x: HTTP 503\nupstream")
    store.queue.quarantine(leases[key(3)], "layer 1: not a tar stream")
    store.scans.scan_started("full", now - 660)
    store.scans.scan_finished("full", now - 660, now - 600, {("web", "estargz"): 4})
    store.scans.scan_started("incremental", now - 5)
    store.leaders.hold("scan", "serve:host-a:41:0a1b2c3d", 45)
    store.close()
    return directory


def test_status_json_reports_queue_work_failures_quarantine_and_scans(state_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["status", "--state-dir", str(state_dir), "--output", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["queue"] == {"pending": 2, "in_progress": 1, "quarantined": 1}
    (working,) = report["in_progress"]
    assert working["key"] == str(key(1))
    assert (working["owner"], working["pid"]) == ("serve-worker-0", os.getpid())
    assert working["started_at"].endswith("+00:00")
    (failing,) = report["failing"]
    assert (failing["key"], failing["attempts"]) == (str(key(2)), 1)
    assert failing["last_error"].startswith("GET /v2/library/app2/blobs/x: HTTP 503")
    (parked,) = report["quarantined"]
    assert parked["key"] == str(key(3))
    assert parked["repository"] == "library/app3"
    assert parked["reason"] == "layer 1: not a tar stream"
    assert parked["policy_fingerprint"] == "fp-1"
    scans = {scan["kind"]: scan for scan in report["scans"]}
    assert scans["full"]["missing"] == [{"policy": "web", "format": "estargz", "count": 4}]
    assert scans["incremental"]["last_success_finished_at"] is None
    (leader,) = report["leaders"]
    assert (leader["name"], leader["holder"]) == ("scan", "serve:host-a:41:0a1b2c3d")
    assert leader["expires_at"].endswith("+00:00")


def test_status_text_lists_each_section_readably(state_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["status", "--state-dir", str(state_dir)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "queue: 2 pending (1 backing off), 1 in progress, 1 quarantined"
    text = result.output
    assert f"{key(1)}  serve-worker-0  {os.getpid()}@" in text
    failing_row = next(line for line in lines if str(key(2)) in line)
    assert "GET /v2/library/app2/blobs/x: HTTP 503 upstream" in failing_row
    quarantined_row = next(line for line in lines if str(key(3)) in line)
    assert quarantined_row.endswith("layer 1: not a tar stream")
    assert (
        "full: last started 11m ago, last success 10m ago, that scan found missing web/estargz=4"
        in text
    )
    assert re.search(r"incremental: last started \d+s ago, last success never\n", text)
    assert re.search(r"leaders:\n  scan: serve:host-a:41:0a1b2c3d, lease ends in \d+s", text)


def test_status_finds_the_state_dir_through_the_config(state_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "acceld.yaml"
    config.write_text(
        "source:\n  kind: registry\n  url: 127.0.0.1:5000\nstate_dir: state\npolicies: []\n"
    )
    result = CliRunner().invoke(cli, ["status", "--config", str(config), "--output", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["queue"]["quarantined"] == 1


def test_retry_key_puts_a_quarantined_key_back_in_the_queue(state_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["retry", str(key(3)), "--state-dir", str(state_dir)])
    assert result.exit_code == 0, result.output
    assert result.output == f"{key(3)} back in the queue\n"
    keys = _open(state_dir).queue
    assert keys.counts().quarantined == 0
    assert key(3) in {lease.key for lease in keys.lease("w", 10)}


def test_retry_all_moves_quarantined_and_backing_off_keys(state_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["retry", "--all", "--state-dir", str(state_dir)])
    assert result.exit_code == 0, result.output
    assert result.output == "2 keys back in the queue\n"
    keys = _open(state_dir).queue
    assert keys.failing() == []
    assert keys.quarantined() == []


def _acceld(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from reconciler.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_retry_of_a_key_with_nothing_to_retry_is_a_one_line_error(state_dir: Path) -> None:
    done = _acceld("retry", str(key(1)), "--state-dir", str(state_dir))
    assert done.returncode == 1
    assert done.stderr == (
        f"acceld: error: {key(1)} is neither quarantined nor backing off (see acceld status)\n"
    )
    assert _open(state_dir).queue.counts().in_progress == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["retry"], "give either one KEY or --all"),
        (["retry", "--all", f"library/app1@sha256:{1:064x}#estargz"], "give either one KEY"),
        (["retry", "library/app1"], "invalid key 'library/app1'"),
    ],
)
def test_retry_usage_errors_name_the_problem(
    state_dir: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(cli, [*args, "--state-dir", str(state_dir)])
    assert result.exit_code == 2
    assert message in result.output


def test_status_of_a_missing_state_dir_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    done = _acceld("status", "--state-dir", str(tmp_path / "typo"))
    assert done.returncode == 1
    assert done.stderr.startswith("acceld: error: ")
    assert "no state database" in done.stderr
    assert not (tmp_path / "typo").exists()


def test_status_reads_only_the_state_dir_so_the_daemons_secrets_need_not_be_at_hand(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    open_sqlite_state(state_db_path(state, must_exist=False), SystemClock()).close()
    config = tmp_path / "config.yaml"
    config.write_text(
        "source: {kind: harbor, url: 'https://harbor.example', username: 'robot$a',"
        " password_env: ACCELD_NOT_SET_IN_THIS_SHELL}\n"
        "state_dir: state\npolicies: [{name: a, formats: [estargz]}]\n"
    )
    answer = CliRunner().invoke(cli, ["status", "--config", str(config), "--output", "json"])
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.output)["queue"]["pending"] == 0
