"""Images accelerated by another tool and pushed without a subject (ctr-remote or nerdctl
eStargz, zstd:chunked, nydusify) are not originals: `plan` counts and lists them, nothing
converts them again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harbor_api.annotations import NYDUS_BOOTSTRAP, STARGZ_TOC_DIGEST, ZSTD_CHUNKED_CHECKSUMS
from harbor_api.oci import parse_manifest
from policies.desired import is_never_original, original_of
from tests.support.acceld_process import acceld, registry_config, write_config
from tests.support.harbor_emulator import (
    ADMIN,
    ADMIN_PASSWORD,
    RunningHarbor,
    harbor_session,
    start_harbor_emulator,
)
from tests.support.images import OCI_MANIFEST, push_image, push_manifest
from tests.support.registry_server import RunningRegistry

ANY_DIGEST = "sha256:" + "a" * 64


def _accelerated_copy(manifest: dict[str, Any], format: str) -> dict[str, Any]:
    """`manifest` as another tool would push its accelerated copy: layer annotations, no
    subject (the layers' bytes do not matter to the recognition)."""
    copy = json.loads(json.dumps(manifest))
    layers = copy["layers"]
    if format == "nydus":
        layers[-1]["annotations"] = {NYDUS_BOOTSTRAP: "true"}
    elif format == "zstd-chunked":
        for layer in layers:
            layer["annotations"] = {ZSTD_CHUNKED_CHECKSUMS[0]: ANY_DIGEST}
    else:
        for layer in layers:
            layer["annotations"] = {STARGZ_TOC_DIGEST: ANY_DIGEST}
    return copy


@pytest.mark.parametrize("format", ["estargz", "zstd-chunked", "nydus"])
def test_an_image_with_accelerated_layers_is_never_an_original(format: str) -> None:
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": ANY_DIGEST,
            "size": 2,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": ANY_DIGEST,
                "size": 3,
            }
        ],
    }
    body = json.dumps(_accelerated_copy(manifest, format)).encode()
    original = original_of(
        "team/app",
        ANY_DIGEST,
        parse_manifest(body, OCI_MANIFEST),
        tags=("1.0-ctr",),
        push_time=datetime.now(UTC),
    )
    assert original.accelerated_as == format
    reason = is_never_original(original)
    assert reason is not None
    assert f"already accelerated ({format} layers" in reason


def _push_ctr_copy(url: str, repository: str, session: Any = None) -> tuple[str, str]:
    plain = push_image(url, repository, "1.0", session=session)
    body = json.dumps(_accelerated_copy(plain.manifest, "estargz")).encode()
    ctr = push_manifest(url, repository, "1.0-ctr-esgz", body, OCI_MANIFEST, session)
    return plain.digest, ctr


def _plan(config: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = acceld("plan", "--config", str(config), "--output", "json", env=env)
    assert done.returncode == 0, done.stderr
    plan: dict[str, Any] = json.loads(done.stdout)
    return plan


def test_plan_over_a_registry_leaves_an_accelerated_image_alone_and_counts_it(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    plain, ctr = _push_ctr_copy(registry.url, "ctr/app")
    config = registry_config(
        tmp_path, registry.host, [{"name": "ctr", "projects": ["ctr"], "formats": ["estargz"]}]
    )
    plan = _plan(config)
    assert [item["digest"] for item in plan["items"]] == [plain]
    assert plan["already_accelerated"] == [
        {"repository": "ctr/app", "digest": ctr, "format": "estargz"}
    ]
    assert plan["matched"] == [{"policy": "ctr", "images": 1}]
    text = acceld("plan", "--config", str(config), "--output", "text").stdout
    assert "left alone, already accelerated by another tool (no subject): 1 image" in text
    assert f"ctr/app@{ctr} (estargz)" in text


@pytest.fixture
def harbor(registry: RunningRegistry) -> Iterator[RunningHarbor]:
    running = start_harbor_emulator(registry.url)
    yield running
    running.stop()


def test_plan_through_harbor_reads_the_layers_of_an_image_it_would_convert(
    harbor: RunningHarbor, tmp_path: Path
) -> None:
    harbor.emulator.state.add_project("ctrh")
    plain, ctr = _push_ctr_copy(harbor.url, "ctrh/app", harbor_session(ADMIN, ADMIN_PASSWORD))
    (tmp_path / "admin.secret").write_text(ADMIN_PASSWORD)
    config = write_config(
        tmp_path / "config.yaml",
        {
            "source": {
                "kind": "harbor",
                "url": harbor.url,
                "username": ADMIN,
                "password_file": "admin.secret",
            },
            "state_dir": str(tmp_path / "state"),
            "policies": [{"name": "ctrh", "projects": ["ctrh"], "formats": ["estargz"]}],
        },
    )
    (tmp_path / "admin.secret").chmod(0o600)
    plan = _plan(config)
    assert [item["digest"] for item in plan["items"]] == [plain]
    assert plan["already_accelerated"] == [
        {"repository": "ctrh/app", "digest": ctr, "format": "estargz"}
    ]
    assert plan["matched"] == [{"policy": "ctrh", "images": 1}]


def test_plan_shows_a_policy_that_matches_no_image(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    push_image(registry.url, "matched/app", "v1")
    policies = [
        {"name": "matched", "projects": ["matched"], "formats": ["estargz"]},
        {
            "name": "typo",
            "projects": ["matched"],
            "repositories": ["matched/nope"],
            "formats": ["estargz"],
        },
    ]
    config = registry_config(tmp_path, registry.host, policies)
    plan = _plan(config)
    assert plan["matched"] == [
        {"policy": "matched", "images": 1},
        {"policy": "typo", "images": 0},
    ]
    text = acceld("plan", "--config", str(config), "--output", "text").stdout
    assert "policy typo matches no image" in text
