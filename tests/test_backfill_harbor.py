"""`acceld backfill` end to end against the Harbor emulator over the real registry."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from harbor_api.version import ACCELD_VERSION
from tests.support.acceld_process import acceld, write_config
from tests.support.converted_images import check_converted_manifest, pull_manifest
from tests.support.harbor_emulator import (
    ADMIN,
    ADMIN_PASSWORD,
    RunningHarbor,
    harbor_session,
    start_harbor_emulator,
)
from tests.support.images import Entry, push_artifact, push_image, push_index, sample_layers
from tests.support.registry_server import RunningRegistry

ROBOT_SECRET = "robot-secret-for-backfill-tests"
PERMISSIONS = [
    ("repository", "pull"),
    ("repository", "push"),
    ("repository", "list"),
    ("tag", "create"),
    ("artifact", "read"),
    ("artifact", "list"),
    ("accessory", "list"),
    ("project", "read"),
]


@pytest.fixture
def harbor(registry: RunningRegistry) -> Iterator[RunningHarbor]:
    running = start_harbor_emulator(registry.url)
    yield running
    running.stop()


def harbor_config(
    tmp: Path, harbor: RunningHarbor, robot: str, policies: list[dict[str, object]]
) -> Path:
    return write_config(
        tmp / "config.yaml",
        {
            "source": {
                "kind": "harbor",
                "url": harbor.url,
                "username": robot,
                "password_env": "ACCELD_TEST_ROBOT_SECRET",
            },
            "state_dir": str(tmp / "state"),
            "work_dir": str(tmp / "work"),
            "workers": 2,
            "policies": policies,
        },
    )


def accessories_of(harbor: RunningHarbor, repository: str, digest: str) -> list[str]:
    state = harbor.emulator.state
    return [record.digest for record in state.in_repository(repository) if record.subject == digest]


def test_backfill_through_harbor_converges_and_a_second_run_is_cheap(
    harbor: RunningHarbor, tmp_path: Path
) -> None:
    state = harbor.emulator.state
    for project in ("hb-web", "hb-data", "hb-other"):
        state.add_project(project)
    state.add_project("hb-proxy", registry_id=7)
    robot = state.add_robot("acceld", ROBOT_SECRET, PERMISSIONS)
    pusher = harbor_session(ADMIN, ADMIN_PASSWORD)
    url = harbor.url
    extra = [Entry("opt", "dir", mode=0o755), Entry("opt/x", data=b"x" * 5000)]
    web_v1 = push_image(url, "hb-web/shop/front", "v1", session=pusher)
    web_v2 = push_image(url, "hb-web/shop/front", "v2", [*sample_layers(), extra], session=pusher)
    index, _ = push_index(
        url, "hb-web/base", "1.0", ["linux/amd64", "linux/arm64/v8"], session=pusher
    )
    data = push_image(url, "hb-data/db", "15", compression="zstd", session=pusher)
    other = push_image(url, "hb-other/app", "v1", session=pusher)
    chart = push_artifact(
        url,
        "hb-web/charts",
        "0.1.0",
        "application/vnd.cncf.helm.config.v1+json",
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
        b"chart",
        session=pusher,
    )
    config = harbor_config(
        tmp_path,
        harbor,
        robot,
        [{"name": "harbor-apps", "projects": ["hb-web", "hb-data"], "formats": ["estargz"]}],
    )
    env = {"ACCELD_TEST_ROBOT_SECRET": ROBOT_SECRET}

    first = acceld("backfill", "--config", str(config), "--output", "json", env=env)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert len(summary["results"]) == 4
    assert summary["converged"]
    assert ROBOT_SECRET not in first.stdout + first.stderr

    for image in (web_v1, web_v2, index, data):
        (accessory,) = accessories_of(harbor, image.repository, image.digest)
        original = pull_manifest(harbor.emulator.registry_url, image.repository, image.digest)
        if image is index:
            converted = pull_manifest(harbor.emulator.registry_url, image.repository, accessory)
            assert converted.json["subject"] == original.descriptor
            assert len(converted.json["manifests"]) == 2
        else:
            check_converted_manifest(
                harbor.emulator.registry_url,
                image.repository,
                accessory,
                original,
                ACCELD_VERSION,
                tmp_path,
            )
    assert accessories_of(harbor, other.repository, other.digest) == []
    assert accessories_of(harbor, chart.repository, chart.digest) == []

    harbor.emulator.calls.clear()
    second = acceld("backfill", "--config", str(config), "--output", "json", env=env)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["results"] == []
    calls = harbor.emulator.calls
    projects, repositories, artifacts = 2, 4, 6
    assert not any(
        name.startswith("registry_") and name.endswith(("_put", "_post", "_patch"))
        for name in calls
    ), calls
    # The start-up credential check (one systeminfo call) is not part of the scan.
    assert calls.pop("systeminfo") == 1
    total = sum(calls.values())
    assert total <= projects + repositories + math.ceil(artifacts / 100), calls
