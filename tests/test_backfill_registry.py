"""`acceld plan` and `acceld backfill` end to end against a plain registry (no referrers API)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from harbor_api.version import ACCELD_VERSION
from tests.support.acceld_process import acceld, registry_config
from tests.support.converted_images import (
    check_converted_manifest,
    fallback_referrers,
    pull_manifest,
    tags,
    write_count,
)
from tests.support.images import Entry, PushedImage, push_image, push_index, sample_layers
from tests.support.registry_server import RunningRegistry, start_registry

POLICIES = [
    {
        "name": "apps",
        "projects": ["bf"],
        "repositories": ["bf/**"],
        "exclude_tags": ["*-debug"],
        "formats": ["estargz"],
    }
]


@pytest.fixture(scope="module")
def own_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    running = start_registry(tmp_path_factory.mktemp("backfill-registry"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def pushed(own_registry: RunningRegistry) -> dict[str, PushedImage]:
    url = own_registry.url
    extra = [Entry("srv", "dir", mode=0o755), Entry("srv/v2", data=b"version two\n" * 40)]
    index, _ = push_index(url, "bf/multi", "v1", ["linux/amd64", "linux/arm64/v8"])
    return {
        "app_v1": push_image(url, "bf/team/app", "v1"),
        "app_v2": push_image(url, "bf/team/app", "v2", [*sample_layers(), extra]),
        "debug": push_image(url, "bf/team/app", "v3-debug", [extra]),
        "docker": push_image(url, "bf/legacy", "1.0", docker=True),
        "multi": index,
        "other": push_image(url, "other/app", "v1"),
    }


def _plan(config: Path) -> dict[str, object]:
    answer = acceld("plan", "--config", str(config), "--output", "json")
    assert answer.returncode == 0, answer.stderr
    plan: dict[str, object] = json.loads(answer.stdout)
    return plan


def test_backfill_converts_every_matching_original_once_and_nothing_else(
    own_registry: RunningRegistry, pushed: dict[str, PushedImage], tmp_path: Path
) -> None:
    url = own_registry.url
    config = registry_config(tmp_path, own_registry.host, POLICIES)
    wanted = ["app_v1", "app_v2", "docker", "multi"]

    before = _plan(config)
    planned = {(i["repository"], i["digest"]) for i in before["items"]}  # type: ignore[index]
    assert planned == {(pushed[n].repository, pushed[n].digest) for n in wanted}
    assert before["missing"] == [{"policy": "apps", "format": "estargz", "count": 4}]

    first = acceld("backfill", "--config", str(config), "--output", "json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["converged"] is True
    assert len(summary["results"]) == 4
    assert all(result["ok"] for result in summary["results"])

    for name in wanted:
        image = pushed[name]
        referrers = fallback_referrers(url, image.repository, image.digest)
        assert len(referrers) == 1, name
        converted = pull_manifest(url, image.repository, referrers[0])
        original = pull_manifest(url, image.repository, image.digest)
        if name == "multi":
            assert converted.json["subject"] == original.descriptor
            for child in converted.json["manifests"]:
                child_original = next(
                    m for m in original.json["manifests"] if m["platform"] == child["platform"]
                )
                child_pulled = pull_manifest(url, image.repository, child_original["digest"])
                check_converted_manifest(
                    url, image.repository, child["digest"], child_pulled, ACCELD_VERSION, tmp_path
                )
        else:
            check_converted_manifest(
                url, image.repository, referrers[0], original, ACCELD_VERSION, tmp_path
            )
        assert f"{image.tag}-esgz" in tags(url, image.repository)

    for name in ("debug", "other"):
        image = pushed[name]
        assert pull_manifest(url, image.repository, image.digest).digest == image.digest
        answer = requests.get(
            f"{url}/v2/{image.repository}/manifests/sha256-{image.digest[7:]}", timeout=10
        )
        assert answer.status_code == 404, name

    after = _plan(config)
    assert after["items"] == []
    assert after["missing"] == [{"policy": "apps", "format": "estargz", "count": 0}]

    writes = write_count(own_registry.log_text(), "bf/team/app")
    second = acceld("backfill", "--config", str(config), "--output", "json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["results"] == []
    assert write_count(own_registry.log_text(), "bf/team/app") == writes


def test_a_policy_min_chunk_size_reaches_the_converted_layers(
    own_registry: RunningRegistry, tmp_path: Path
) -> None:
    url = own_registry.url
    files = [Entry("etc", "dir", mode=0o755)] + [
        Entry(f"etc/conf{n:03d}", data=b"key%d = value %d\n" % (n, n) * (n % 25 + 1))
        for n in range(120)
    ]
    image = push_image(url, "packed/app", "v1", [files])
    policies = [
        {
            "name": "packed",
            "projects": ["packed"],
            "formats": ["estargz"],
            "options": {"estargz": {"min_chunk_size": "8KiB"}},
        }
    ]
    answer = acceld(
        "backfill", "--config", str(registry_config(tmp_path, own_registry.host, policies))
    )
    assert answer.returncode == 0, answer.stderr

    (referrer,) = fallback_referrers(url, image.repository, image.digest)
    original = pull_manifest(url, image.repository, image.digest)
    (blob,) = check_converted_manifest(
        url, image.repository, referrer, original, ACCELD_VERSION, tmp_path, shared_members=True
    )
    assert any(entry.get("innerOffset") for entry in blob.toc["entries"])


def test_backfill_dry_run_changes_nothing(own_registry: RunningRegistry, tmp_path: Path) -> None:
    image = push_image(own_registry.url, "bf/dry", "v1")
    config = registry_config(tmp_path, own_registry.host, POLICIES)
    writes = write_count(own_registry.log_text(), "bf/dry")
    answer = acceld("backfill", "--config", str(config), "--dry-run", "--output", "json")
    assert answer.returncode == 0, answer.stderr
    digests = {item["digest"] for item in json.loads(answer.stdout)["items"]}
    assert image.digest in digests
    assert write_count(own_registry.log_text(), "bf/dry") == writes


def test_backfill_with_a_broken_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("source: {kind: registry}\npolicies: []\n")
    answer = acceld("backfill", "--config", str(config))
    assert answer.returncode == 2
    assert answer.stderr.count("\n") == 1
    assert "Traceback" not in answer.stderr
