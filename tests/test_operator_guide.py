"""The operator guide covers what an operator meets: a runbook for every alert, every exit
code, the robot's permissions as acceld asks for them, and shell completion that works."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from harbor_api.harbor import ROBOT_PERMISSIONS
from reconciler import exit_codes
from reconciler.commands.harbor import SETUP_PERMISSIONS
from reconciler.service.daemon import REACHABLE_WINDOW_SECONDS

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs" / "operator-guide.md").read_text()


def test_every_alert_has_a_runbook() -> None:
    rules = yaml.safe_load((ROOT / "monitoring" / "alerts.yml").read_text())
    alerts = [rule["alert"] for group in rules["groups"] for rule in group["rules"]]
    for alert in alerts:
        assert f"**{alert}**" in GUIDE


def test_every_exit_code_is_documented() -> None:
    codes = [value for name, value in vars(exit_codes).items() if name.isupper()]
    assert sorted(codes) == [0, 1, 2, 130]
    for code in codes:
        assert re.search(rf"^\| {code} \|", GUIDE, re.MULTILINE)


def test_the_robot_permissions_are_the_ones_acceld_asks_for() -> None:
    table = {
        f"{resource.strip().lower()}:{action.strip().lower()}"
        for resource, action in re.findall(r"^   \| (\w+) \| (\w+) \|", GUIDE, re.MULTILINE)
    }
    assert table - {"resource:action"} == set(ROBOT_PERMISSIONS)
    assert len(SETUP_PERMISSIONS) == 3
    assert "Webhook (notification policy)\n   List, Create and Update" in GUIDE


def test_readyz_window_is_the_one_the_daemon_uses() -> None:
    assert f"**{int(REACHABLE_WINDOW_SECONDS)} seconds**" in GUIDE


@pytest.mark.skipif(shutil.which("acceld") is None, reason="the acceld script is not installed")
def test_shell_completion_as_documented_completes_subcommands() -> None:
    assert "_ACCELD_COMPLETE=bash_source acceld" in GUIDE
    done = subprocess.run(
        ["acceld"],
        env={
            **os.environ,
            "_ACCELD_COMPLETE": "bash_complete",
            "COMP_WORDS": "acceld ba",
            "COMP_CWORD": "1",
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "plain,backfill" in done.stdout.splitlines()
