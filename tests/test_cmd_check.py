"""`acceld check`: validate the config and connect to the source, changing nothing."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.acceld_process import acceld, registry_config, write_config
from tests.support.harbor_emulator import RunningHarbor, start_harbor_emulator
from tests.support.images import push_image
from tests.support.registry_server import RunningRegistry, free_port

POLICY = [{"name": "all", "formats": ["estargz"]}]
SECRET = "check-robot-secret"
WRONG = "not-the-robot-secret-42"


def _harbor_config(tmp: Path, harbor: RunningHarbor, robot: str) -> Path:
    return write_config(
        tmp / "config.yaml",
        {
            "source": {
                "kind": "harbor",
                "url": harbor.url,
                "username": robot,
                "password_env": "CHECK_SECRET",
            },
            "state_dir": str(tmp / "state"),
            "policies": POLICY,
        },
    )


def test_check_against_a_registry_reports_each_step(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    config = registry_config(tmp_path, registry.host, POLICY)
    answer = acceld("check", "--config", str(config))
    assert answer.returncode == 0, answer.stderr
    assert f"config {config}: ok (1 enabled policy: all)" in answer.stdout
    assert f"registry {registry.host}: /v2/ answers" in answer.stdout
    assert not (tmp_path / "state").exists()


def test_check_against_harbor_accepts_the_robot_and_refuses_a_wrong_secret(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    harbor = start_harbor_emulator(registry.url)
    try:
        robot = harbor.emulator.state.add_robot("checker", SECRET, [("project", "read")])
        config = _harbor_config(tmp_path, harbor, robot)
        good = acceld("check", "--config", str(config), env={"CHECK_SECRET": SECRET})
        assert good.returncode == 0, good.stderr
        assert "credentials accepted" in good.stdout
        bad = acceld("check", "--config", str(config), env={"CHECK_SECRET": WRONG})
        assert bad.returncode == 1
        assert bad.stderr.startswith("acceld: error: ")
        assert "check the robot name" in bad.stderr
        assert bad.stderr.count("\n") == 1
        everything = good.stdout + good.stderr + bad.stdout + bad.stderr
        assert SECRET not in everything
        assert WRONG not in everything
    finally:
        harbor.stop()


def test_check_of_an_unreachable_source_is_one_line(tmp_path: Path) -> None:
    config = registry_config(tmp_path, f"127.0.0.1:{free_port()}", POLICY)
    answer = acceld("check", "--config", str(config))
    assert answer.returncode == 1
    assert "connection refused" in answer.stderr
    assert "Traceback" not in answer.stderr


def test_check_of_a_broken_config_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "source: {kind: registry, url: 'x:1'}\npolicies: [{name: a, formats: [zip]}]\n"
    )
    answer = acceld("check", "--config", str(config))
    assert answer.returncode == 2
    assert "policies[0]" in answer.stderr
    assert "formats" in answer.stderr


def test_check_fails_fast_on_a_refused_connection_without_retry_lines(tmp_path: Path) -> None:
    config = registry_config(tmp_path, f"127.0.0.1:{free_port()}", POLICY)
    started = time.monotonic()
    answer = acceld("check", "--config", str(config))
    assert time.monotonic() - started < 8
    assert answer.returncode == 1
    assert "retrying request" not in answer.stdout + answer.stderr


def test_check_fails_fast_when_the_host_name_does_not_resolve(tmp_path: Path) -> None:
    config = registry_config(tmp_path, "no-such-host.invalid:5000", POLICY)
    answer = acceld("check", "--config", str(config))
    assert answer.returncode == 1
    assert "host name does not resolve" in answer.stderr
    assert "retrying request" not in answer.stdout + answer.stderr


def test_check_refuses_a_state_dir_this_user_cannot_write(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    config = registry_config(tmp_path, registry.host, POLICY, state_dir="/proc/acceld-state")
    answer = acceld("check", "--config", str(config))
    assert answer.returncode == 1
    assert "error: state_dir /proc/acceld-state: does not exist and /proc is not writable" in (
        answer.stderr
    )
    assert f"work_dir {tmp_path / 'work'}: writable" in answer.stdout


def test_check_wants_a_webhook_secret_when_the_server_is_configured(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    config = registry_config(tmp_path, registry.host, POLICY, server={"listen": "0.0.0.0:8080"})
    answer = acceld("check", "--config", str(config))
    assert answer.returncode == 1
    assert "server: no webhook_secret" in answer.stderr
    assert "answer every webhook 401" in answer.stderr


def test_check_warns_about_a_policy_that_matches_no_repository(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    push_image(registry.url, "checked/app", "v1")
    policies = [
        {"name": "apps", "projects": ["checked"], "formats": ["estargz"]},
        {"name": "typo", "projects": ["chekced"], "formats": ["estargz"]},
    ]
    config = registry_config(tmp_path, registry.host, policies)
    answer = acceld("check", "--config", str(config))
    assert answer.returncode == 0, answer.stderr
    assert "policy apps: matches 1 repository" in answer.stdout
    assert "warning: policy typo matches no repository" in answer.stderr
