"""The unit files: systemd's own checks, the settings the daemon relies on, the sandbox score.

`systemd-analyze verify` insists the ExecStart binary exists. The units name the documented
install path (/opt/acceld/bin/acceld), so the test verifies a copy whose ExecStart points at the
`acceld` installed for this test run, and changes nothing else.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[1] / "systemd"
UNITS = ("acceld.service", "acceld-backfill.service")
INSTALL_PATH = "/opt/acceld/bin/acceld"

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian package systemd)",
)


def directives(unit: str) -> list[tuple[str, str, str]]:
    """(section, key, value) in file order; keys may repeat, as systemd allows."""
    section, found = "", []
    for raw in (SYSTEMD / unit).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.append((section, key.strip(), value.strip()))
    return found


def values(unit: str, key: str) -> list[str]:
    return [value for section, name, value in directives(unit) if name == key]


def installed_copy(unit: str, directory: Path) -> Path:
    acceld = shutil.which("acceld")
    if acceld is None:
        pytest.skip("the acceld console script is not installed (pip install -e .)")
    text = (SYSTEMD / unit).read_text()
    assert INSTALL_PATH in text
    copy = directory / unit
    copy.write_text(text.replace(INSTALL_PATH, acceld))
    return copy


@needs_systemd_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_unit_passes_systemd_analyze_verify(unit: str, tmp_path: Path) -> None:
    copy = installed_copy(unit, tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    about_unit = [line for line in done.stderr.splitlines() if unit in line]
    assert done.returncode == 0, done.stderr
    assert about_unit == []


@needs_systemd_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_sandbox_exposure_is_at_most_2(unit: str) -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(SYSTEMD / unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= 2.0


def test_service_is_a_notify_service_with_watchdog_reload_and_restart() -> None:
    unit = "acceld.service"
    assert values(unit, "Type") == ["notify"]
    assert values(unit, "NotifyAccess") == ["main"]
    assert int(values(unit, "WatchdogSec")[0]) > 0
    assert values(unit, "ExecReload") == ["/bin/kill -HUP $MAINPID"]
    assert values(unit, "Restart") == ["on-failure"]
    assert values(unit, "ExecStart")[0].startswith(f"{INSTALL_PATH} serve ")


def test_backfill_is_a_oneshot_without_a_timeout() -> None:
    unit = "acceld-backfill.service"
    assert values(unit, "Type") == ["oneshot"]
    assert values(unit, "TimeoutStartSec") == ["infinity"]
    assert values(unit, "ExecStart")[0].startswith(f"{INSTALL_PATH} backfill ")
    assert values(unit, "WatchdogSec") == []


@pytest.mark.parametrize("unit", UNITS)
def test_directories_credentials_and_privileges(unit: str) -> None:
    assert values(unit, "DynamicUser") == ["yes"]
    assert values(unit, "StateDirectory") == ["acceld"]
    assert values(unit, "CacheDirectory") == ["acceld"]
    assert values(unit, "ConfigurationDirectory") == ["acceld"]
    credentials = {value.split(":", 1)[0] for value in values(unit, "LoadCredential")}
    # The names examples/config.yaml uses with `*_credential:`.
    assert credentials == {"harbor-robot", "webhook-secret"}
    assert values(unit, "CapabilityBoundingSet") == [""]
    assert values(unit, "NoNewPrivileges") == ["yes"]
    assert values(unit, "ProtectSystem") == ["strict"]
    assert values(unit, "PrivateTmp") == ["yes"]
    assert values(unit, "SystemCallFilter")[0] == "@system-service"


def test_both_units_run_in_the_same_sandbox() -> None:
    def sandbox(unit: str) -> list[tuple[str, str, str]]:
        found = directives(unit)
        start = next(i for i, (_, key, _) in enumerate(found) if key == "DynamicUser")
        return [d for d in found[start:] if d[0] == "Service"]

    assert sandbox("acceld.service") == sandbox("acceld-backfill.service")


def test_credentials_are_named_in_the_example_config() -> None:
    example = (SYSTEMD.parent / "examples" / "config.yaml").read_text()
    assert "password_credential: harbor-robot" in example
    assert "webhook_secret_credential: webhook-secret" in example


@pytest.mark.parametrize("unit", UNITS)
def test_exec_start_names_a_real_subcommand_and_options(unit: str) -> None:
    acceld = shutil.which("acceld")
    if acceld is None:
        pytest.skip("the acceld console script is not installed (pip install -e .)")
    (command,) = values(unit, "ExecStart")
    program, *arguments = command.split()
    assert program == INSTALL_PATH
    done = subprocess.run(
        [acceld, *arguments, "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    for option in (a for a in arguments if a.startswith("--")):
        assert option in done.stdout
