"""A scan survives one bad repository and one bad image: it skips them, says so in `plan` and
`backfill`, counts them in `acceld_scan_errors_total{kind}` and scans everything else (issue 12).

Before, a repository whose tag list answered 404 (a push interrupted after its first blob) or a
manifest naming a sha512 layer ended the whole scan: `plan` failed and `backfill` converted
nothing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from reconciler.config import load_config
from reconciler.service.backfill import run_backfill
from reconciler.service.runtime import open_runtime
from tests.support.acceld_process import acceld, registry_config
from tests.support.images import PushedImage, push_blob, push_image, push_manifest
from tests.support.registry_server import RunningRegistry, start_registry

POLICIES: list[dict[str, object]] = [{"name": "all", "projects": ["sc"], "formats": ["estargz"]}]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def broken_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    running = start_registry(tmp_path_factory.mktemp("scan-errors-registry"))
    yield running
    running.stop()


def _push_sha512_layer_image(url: str, repository: str) -> None:
    layer = b"a layer stored under a sha512 digest"
    digest = "sha512:" + hashlib.sha512(layer).hexdigest()
    start = requests.post(f"{url}/v2/{repository}/blobs/uploads/", timeout=30)
    location = start.headers["Location"]
    location = url + location if location.startswith("/") else location
    sep = "&" if "?" in location else "?"
    requests.put(f"{location}{sep}digest={digest}", data=layer, timeout=30).raise_for_status()
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}})
    config_digest = push_blob(url, repository, config.encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest,
                "size": len(layer),
            }
        ],
    }
    push_manifest(url, repository, "v1", json.dumps(manifest).encode(), OCI_MANIFEST)


@pytest.fixture(scope="module")
def images(broken_registry: RunningRegistry) -> dict[str, PushedImage]:
    url = broken_registry.url
    good = {"first": push_image(url, "sc/a-good", "v1"), "last": push_image(url, "sc/z-good", "v1")}
    push_blob(url, "sc/b-interrupted", b"the first blob of a push that never finished")
    _push_sha512_layer_image(url, "sc/c-sha512")
    push_image(url, "sc/c-sha512", "v2")
    return good


def test_plan_scans_past_a_404_tag_list_and_a_sha512_manifest_and_reports_both(
    broken_registry: RunningRegistry, images: dict[str, PushedImage], tmp_path: Path
) -> None:
    config = registry_config(tmp_path, broken_registry.host, POLICIES)
    answer = acceld("plan", "--config", str(config), "--output", "json")
    assert answer.returncode == 0, answer.stderr
    plan = json.loads(answer.stdout)
    planned = {item["repository"] for item in plan["items"]}
    assert planned == {"sc/a-good", "sc/c-sha512", "sc/z-good"}
    skipped = {(e["kind"], e["where"]) for e in plan["scan_errors"]}
    assert skipped == {("repository", "sc/b-interrupted"), ("image", "sc/c-sha512:v1")}
    reasons = " ".join(e["reason"] for e in plan["scan_errors"])
    assert "404" in reasons
    assert "sha256" in reasons

    table = acceld("plan", "--config", str(config), "--output", "text")
    assert table.returncode == 0, table.stderr
    assert "SKIPPED repository sc/b-interrupted" in table.stdout
    assert "Traceback" not in table.stderr


def test_backfill_counts_skipped_parts_in_the_metric_and_is_not_converged(
    broken_registry: RunningRegistry, images: dict[str, PushedImage], tmp_path: Path
) -> None:
    config = load_config(registry_config(tmp_path, broken_registry.host, POLICIES), {})
    runtime = open_runtime(config)
    try:
        summary = run_backfill(runtime, dry_run=True)
        collector = runtime.metrics.collector
        counts = {
            kind: collector.get_sample_value("acceld_scan_errors_total", {"kind": kind})
            for kind in ("project", "repository", "image")
        }
    finally:
        runtime.close()
    assert counts == {"project": 0.0, "repository": 1.0, "image": 1.0}
    assert len(summary.plan.items) == 3
    assert not summary.converged


def test_status_shows_what_the_last_scan_skipped_in_text_and_json(
    broken_registry: RunningRegistry, images: dict[str, PushedImage], tmp_path: Path
) -> None:
    config = registry_config(tmp_path, broken_registry.host, POLICIES)
    scanned = acceld("backfill", "--dry-run", "--config", str(config))
    assert scanned.returncode in (0, 1), scanned.stderr

    answer = acceld("status", "--config", str(config), "--output", "json")
    assert answer.returncode == 0, answer.stderr
    (full,) = (mark for mark in json.loads(answer.stdout)["scans"] if mark["kind"] == "full")
    assert full["skipped_total"] == 2
    skipped = {(e["kind"], e["where"]) for e in full["skipped"]}
    assert skipped == {("repository", "sc/b-interrupted"), ("image", "sc/c-sha512:v1")}
    assert all(e["reason"] for e in full["skipped"])

    text = acceld("status", "--config", str(config)).stdout
    assert "    the scan skipped 2 parts it could not read:" in text
    assert "      SKIPPED repository sc/b-interrupted: " in text
    assert "      SKIPPED image sc/c-sha512:v1: " in text
