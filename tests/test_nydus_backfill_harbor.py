"""Both formats through Harbor: `acceld backfill` against the Harbor emulator over the real
registry gives each original one eStargz and one nydus accessory, which Harbor lists as
`accelerator.nydus` by its last layer; a second backfill converts nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.acceld_process import acceld
from tests.support.erofs_mount import mount_unavailable
from tests.support.harbor_emulator import (
    ADMIN,
    ADMIN_PASSWORD,
    HarborState,
    RunningHarbor,
    harbor_session,
    start_harbor_emulator,
)
from tests.support.images import PushedImage, push_image, push_index
from tests.support.nydus_images import assert_mounts_as_original
from tests.support.registry_server import RunningRegistry
from tests.test_backfill_harbor import PERMISSIONS, ROBOT_SECRET, harbor_config

pytestmark = pytest.mark.skipif(mount_unavailable() is not None, reason=str(mount_unavailable()))


def _accessory_types(state: HarborState, original: PushedImage) -> list[str]:
    return [
        record.accessory_type
        for record in state.in_repository(original.repository)
        if record.subject == original.digest
    ]


@pytest.fixture
def harbor(registry: RunningRegistry) -> Iterator[RunningHarbor]:
    running = start_harbor_emulator(registry.url)
    yield running
    running.stop()


def test_each_original_gets_an_estargz_and_a_nydus_accessory_once(
    harbor: RunningHarbor, tmp_path: Path
) -> None:
    state = harbor.emulator.state
    state.add_project("both")
    robot = state.add_robot("acceld", ROBOT_SECRET, PERMISSIONS)
    pusher = harbor_session(ADMIN, ADMIN_PASSWORD)
    image = push_image(harbor.url, "both/app", "v1", session=pusher)
    index, children = push_index(
        harbor.url, "both/base", "1.0", ["linux/amd64", "linux/arm64/v8"], session=pusher
    )
    config = harbor_config(
        tmp_path,
        harbor,
        robot,
        [{"name": "both", "projects": ["both"], "formats": ["estargz", "nydus"]}],
    )
    env = {"ACCELD_TEST_ROBOT_SECRET": ROBOT_SECRET}

    first = acceld("backfill", "--config", str(config), "--output", "json", env=env)
    second = acceld("backfill", "--config", str(config), "--output", "json", env=env)

    assert first.returncode == 0, first.stderr
    assert len(json.loads(first.stdout)["results"]) == 4
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["results"] == []
    # Harbor knows nydus by its last layer; any other referrer is a plain subject.accessory,
    # and so is a converted index (it has no layers): its platform images carry the type.
    assert sorted(_accessory_types(state, image)) == ["accelerator.nydus", "subject.accessory"]
    assert _accessory_types(state, index) == ["subject.accessory", "subject.accessory"]
    for child in children:
        assert sorted(_accessory_types(state, child)) == [
            "accelerator.nydus",
            "subject.accessory",
        ]
    assert_mounts_as_original(
        harbor.emulator.registry_url, "both/app", "v1-nydus", "v1", tmp_path / "check"
    )
