"""`acceld harbor setup`: the pure plan, and the command against the Harbor emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from harbor_api.harbor_models import WebhookPolicy, WebhookTarget
from policies.glob import Glob
from policies.model import Policy
from reconciler.cli import cli
from reconciler.commands.harbor import covered_projects, plan_webhook_changes, wanted_policy
from tests.support.harbor_emulator import ADMIN, ADMIN_PASSWORD, RunningHarbor
from tests.support.registry_server import RunningRegistry
from tests.support.swagger_contract import contract_checked_harbor

ADDRESS = "https://acceld.test.invalid/webhooks/harbor"
WEBHOOK_SECRET = "Bearer hook-secret-1"


def test_plan_creates_where_missing_updates_drift_and_leaves_the_rest() -> None:
    wanted = wanted_policy(ADDRESS, "tok", "Default")
    drifted = WebhookPolicy(
        "acceld",
        False,
        ("PUSH_ARTIFACT",),
        (WebhookTarget("http://old.test.invalid/", "old-tok", "Default"),),
        wanted.description,
        id=4,
    )
    same = WebhookPolicy(
        "acceld", True, wanted.event_types, wanted.targets, wanted.description, id=9
    )
    other = WebhookPolicy("slack", True, ("PUSH_ARTIFACT",), (), id=1)
    changes = plan_webhook_changes({"c": [same], "b": [other, drifted], "a": [other]}, wanted)
    assert [(c.project, c.action) for c in changes] == [
        ("a", "create"),
        ("b", "update"),
        ("c", "unchanged"),
    ]
    assert changes[1].changed == ("enabled", "targets[0].address", "targets[0].auth_header")
    assert changes[1].policy.id == 4
    assert changes[1].policy.targets == wanted.targets


def test_payload_format_change_is_an_update() -> None:
    current = wanted_policy(ADDRESS, "tok", "Default")
    stored = WebhookPolicy(
        current.name, True, current.event_types, current.targets, current.description, id=2
    )
    (change,) = plan_webhook_changes({"p": [stored]}, wanted_policy(ADDRESS, "tok", "CloudEvents"))
    assert (change.action, change.changed) == ("update", ("targets[0].payload_format",))


def test_covered_projects_follow_enabled_policies_only() -> None:
    policies = [
        Policy(name="web", projects=(Glob.parse("web*"),)),
        Policy(name="off", enabled=False, projects=(Glob.parse("ops"),)),
    ]
    assert covered_projects(policies, ["ops", "webshop", "web", "data"]) == ["web", "webshop"]


@pytest.fixture
def harbor(registry: RunningRegistry) -> Iterator[RunningHarbor]:
    with contract_checked_harbor(registry.url) as running:
        yield running


def write_config(
    directory: Path, url: str, *, username: str = ADMIN, password: str = ADMIN_PASSWORD
) -> Path:
    (directory / "robot.secret").write_text(password)
    (directory / "hook.secret").write_text(WEBHOOK_SECRET)
    config: dict[str, Any] = {
        "source": {
            "kind": "harbor",
            "url": url,
            "username": username,
            "password_file": "robot.secret",
        },
        "state_dir": str(directory / "state"),
        "work_dir": str(directory / "work"),
        "server": {
            "external_url": "https://acceld.test.invalid",
            "webhook_secret_file": "hook.secret",
        },
        "policies": [{"name": "apps", "projects": ["app*"], "formats": ["estargz"]}],
    }
    path = directory / "config.yaml"
    path.write_text(json.dumps(config))
    return path


def setup(*args: str) -> Any:
    return CliRunner().invoke(cli, ["harbor", "setup", *args], catch_exceptions=False)


def stored_policies(harbor: RunningHarbor, project: str) -> list[dict[str, Any]]:
    return list(harbor.emulator.state.projects[project].policies.values())


def test_setup_registers_the_webhook_on_covered_projects_once(
    harbor: RunningHarbor, tmp_path: Path
) -> None:
    for name in ("apps", "apps-dev", "other"):
        harbor.emulator.state.add_project(name)
    harbor.emulator.state.add_project("app-cache", registry_id=2)
    config = write_config(tmp_path, harbor.url)

    first = setup("--config", str(config), "--payload-format", "CloudEvents")
    assert first.exit_code == 0, first.output
    assert "project apps: created webhook policy 'acceld'" in first.output
    assert "repository:pull, repository:push, tag:create, artifact:read" in first.output
    assert WEBHOOK_SECRET not in first.output
    assert stored_policies(harbor, "other") == []
    assert stored_policies(harbor, "app-cache") == []
    (policy,) = stored_policies(harbor, "apps-dev")
    assert policy["enabled"] is True
    assert policy["event_types"] == ["PUSH_ARTIFACT"]
    assert policy["targets"] == [
        {
            "type": "http",
            "address": "https://acceld.test.invalid/webhooks/harbor",
            "auth_header": WEBHOOK_SECRET,
            "skip_cert_verify": False,
            "payload_format": "CloudEvents",
        }
    ]

    writes_before = harbor.emulator.calls["webhook_policy_create"]
    again = setup("--config", str(config), "--payload-format", "CloudEvents")
    assert again.exit_code == 0, again.output
    assert again.output.count("is up to date") == 2
    assert harbor.emulator.calls["webhook_policy_create"] == writes_before
    assert harbor.emulator.calls["webhook_policy_update"] == 0


def test_dry_run_shows_changes_and_makes_none(harbor: RunningHarbor, tmp_path: Path) -> None:
    harbor.emulator.state.add_project("apps")
    config = write_config(tmp_path, harbor.url)
    result = setup("--config", str(config), "--dry-run", "--url", "http://10.0.0.5:9000/")
    assert result.exit_code == 0, result.output
    assert (
        "project apps: would create webhook policy 'acceld' -> "
        "http://10.0.0.5:9000/webhooks/harbor (Default)" in result.output
    )
    assert stored_policies(harbor, "apps") == []


def test_setup_puts_back_a_drifted_policy_and_only_on_named_projects(
    harbor: RunningHarbor, tmp_path: Path
) -> None:
    harbor.emulator.state.add_project("apps")
    harbor.emulator.state.add_project("data")
    config = write_config(tmp_path, harbor.url)
    assert setup("--config", str(config), "--project", "data").exit_code == 0
    assert stored_policies(harbor, "apps") == []
    harbor.emulator.state.projects["data"].policies[1]["enabled"] = False
    result = setup("--config", str(config), "--project", "data")
    assert "project data: updated webhook policy 'acceld' (enabled)" in result.output
    assert stored_policies(harbor, "data")[0]["enabled"] is True


def test_unknown_project_is_refused_before_any_change(
    harbor: RunningHarbor, tmp_path: Path
) -> None:
    harbor.emulator.state.add_project("apps")
    config = write_config(tmp_path, harbor.url)
    result = CliRunner().invoke(
        cli, ["harbor", "setup", "--config", str(config), "--project", "apps", "--project", "nope"]
    )
    assert result.exit_code != 0
    assert "project nope is not among the projects admin on http" in str(result.exception)
    assert "HarborClient(" not in str(result.exception)
    assert stored_policies(harbor, "apps") == []


def test_wrong_robot_secret_is_one_line_saying_what_to_fix(
    harbor: RunningHarbor,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from reconciler.cli import main

    robot = harbor.emulator.state.add_robot("acceld", "right-secret", [], "*")
    config = write_config(tmp_path, harbor.url, username=robot, password="wrong-secret")
    monkeypatch.setattr("sys.argv", ["acceld", "harbor", "setup", "--config", str(config)])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("acceld: error: ")
    assert "check the robot name (robot$…) and its secret" in err
    assert "wrong-secret" not in err


def test_robot_without_webhook_permission_is_told_which_it_lacks(
    harbor: RunningHarbor,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from reconciler.cli import main

    harbor.emulator.state.add_project("apps")
    robot = harbor.emulator.state.add_robot(
        "acceld", "pw", [("notification-policy", "list")], "apps"
    )
    config = write_config(tmp_path, harbor.url, username=robot, password="pw")
    monkeypatch.setattr("sys.argv", ["acceld", "harbor", "setup", "--config", str(config)])
    with pytest.raises(SystemExit):
        main()
    err = capsys.readouterr().err
    assert err.strip().endswith(
        f"{robot!r} lacks the permission notification-policy:create on project 'apps' in Harbor "
        "(Harbor said: forbidden)"
    )
    assert stored_policies(harbor, "apps") == []
