"""`acceld prune` against the Harbor emulator: Harbor deletes accessories with their subject,
so a prune there removes only what Harbor leaves, says so, and touches nothing else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from tests.support.acceld_process import acceld
from tests.support.harbor_emulator import ADMIN, ADMIN_PASSWORD, RunningHarbor, harbor_session
from tests.support.images import Entry, PushedImage, push_artifact, push_image, push_index
from tests.test_backfill_harbor import PERMISSIONS, ROBOT_SECRET, harbor_config

pytest_plugins = ("tests.support.harbor_fixtures",)

PROJECT = "hp"
REPOSITORY = f"{PROJECT}/app"
ENV = {"ACCELD_TEST_ROBOT_SECRET": ROBOT_SECRET}
SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
ACCEPT = "application/vnd.oci.image.manifest.v1+json,application/vnd.oci.image.index.v1+json"
CASCADING = "Harbor deletes accelerated copies with their original"


def _accessories(harbor: RunningHarbor, digest: str) -> list[str]:
    return [
        r.digest for r in harbor.emulator.state.in_repository(REPOSITORY) if r.subject == digest
    ]


def _listing(harbor: RunningHarbor) -> dict[str, str]:
    """Every tag of the repository in the registry behind Harbor, and what it names."""
    upstream = harbor.emulator.registry_url
    tags = requests.get(f"{upstream}/v2/{REPOSITORY}/tags/list", timeout=10).json()["tags"] or []
    return {
        tag: requests.head(
            f"{upstream}/v2/{REPOSITORY}/manifests/{tag}", headers={"Accept": ACCEPT}, timeout=10
        ).headers["Docker-Content-Digest"]
        for tag in tags
    }


def _exists(harbor: RunningHarbor, digest: str) -> bool:
    answer = requests.head(
        f"{harbor.emulator.registry_url}/v2/{REPOSITORY}/manifests/{digest}",
        headers={"Accept": ACCEPT},
        timeout=10,
    )
    return answer.status_code == 200


def _prune(config: Path, *args: str) -> tuple[dict[str, Any], str]:
    as_json = acceld("prune", "--config", str(config), "--output", "json", *args, env=ENV)
    assert as_json.returncode == 0, as_json.stderr
    as_text = acceld("prune", "--config", str(config), "--dry-run", "--output", "text", env=ENV)
    assert as_text.returncode == 0, as_text.stderr
    document: dict[str, Any] = json.loads(as_json.stdout)
    return document, as_text.stdout


def test_prune_on_harbor_removes_only_the_copies_harbor_leaves_and_says_so(
    harbor: RunningHarbor, tmp_path: Path
) -> None:
    state = harbor.emulator.state
    state.add_project(PROJECT)
    robot = state.add_robot("acceld", ROBOT_SECRET, [*PERMISSIONS, ("artifact", "delete")])
    admin = harbor_session(ADMIN, ADMIN_PASSWORD)
    url = harbor.url

    def image(tag: str) -> PushedImage:
        return push_image(url, REPOSITORY, tag, [[Entry("id", data=tag.encode())]], session=admin)

    def sign(subject: PushedImage) -> str:
        descriptor = {"mediaType": subject.media_type, "digest": subject.digest}
        descriptor["size"] = subject.size  # type: ignore[assignment]
        signature = push_artifact(
            url,
            REPOSITORY,
            "",
            SIGNATURE,
            "application/octet-stream",
            b"sig",
            subject=descriptor,
            session=admin,
        )
        return signature.digest

    keep, single, unlinked = image("keep"), image("single"), image("unlinked")
    multi, _ = push_index(
        url, REPOSITORY, "multi", ["linux/amd64", "linux/arm64/v8"], session=admin
    )
    config = harbor_config(
        tmp_path, harbor, robot, [{"name": "apps", "projects": [PROJECT], "formats": ["estargz"]}]
    )
    backfill = acceld("backfill", "--config", str(config), "--output", "json", env=ENV)
    assert backfill.returncode == 0, backfill.stderr
    kept_signature = sign(keep)
    sign(single)
    (kept_copy,) = [d for d in _accessories(harbor, keep.digest) if d != kept_signature]
    # A copy pushed when Harbor did not link accessories (before 2.8): an artifact of its own,
    # so Harbor leaves it when its original goes.
    (leftover,) = _accessories(harbor, unlinked.digest)
    record = state.artifacts[REPOSITORY][leftover]
    record.subject, record.accessory_type = None, ""
    copies_of_multi = _accessories(harbor, multi.digest)
    assert len(copies_of_multi) == 1

    artifacts = f"{url}/api/v2.0/projects/{PROJECT}/repositories/app/artifacts"
    for deleted in (single, unlinked, multi):
        assert admin.delete(f"{artifacts}/{deleted.digest}", timeout=30).status_code == 200
    # Harbor took the accessories (copies, signature) and the converted index's platform copies.
    assert {r.digest for r in state.in_repository(REPOSITORY)} == {
        keep.digest,
        kept_copy,
        kept_signature,
        leftover,
    }
    before = _listing(harbor)
    assert before == {"keep": keep.digest, "keep-esgz": kept_copy, "unlinked-esgz": leftover}

    dry, text = _prune(config, "--dry-run")
    assert dry["cascading"] is True
    assert [(r["digest"], r["reason"], r["tags"]) for r in dry["removed"]] == [
        (leftover, "orphan", ["unlinked-esgz"])
    ]
    assert text.splitlines()[0].startswith(CASCADING)
    assert f"would delete copy {REPOSITORY}@{leftover}" in text
    assert _listing(harbor) == before

    harbor.emulator.calls.clear()
    pruned, _ = _prune(config)
    assert pruned["removed"] == dry["removed"]
    assert pruned["failures"] == []
    assert harbor.emulator.calls["registry_manifests_delete"] == 1
    assert harbor.emulator.calls["artifact_delete"] == 0
    assert _listing(harbor) == {"keep": keep.digest, "keep-esgz": kept_copy}
    assert not _exists(harbor, leftover)
    assert all(_exists(harbor, d) for d in (keep.digest, kept_copy, kept_signature))
    assert sorted(_accessories(harbor, keep.digest)) == sorted([kept_copy, kept_signature])

    again, _ = _prune(config)
    assert again["removed"] == []
    assert again["cascading"] is True
