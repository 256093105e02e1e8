"""`acceld prune` against a real registry (no referrers API: fallback indexes are rewritten)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.acceld_process import acceld, registry_config
from tests.support.converted_images import fallback_referrers, pull_manifest
from tests.support.images import (
    OCI_MANIFEST,
    Entry,
    PushedImage,
    push_artifact,
    push_image,
    push_index,
    push_manifest,
    sample_layers,
)
from tests.support.registry_server import RunningRegistry, start_registry

REPO = "pr/app"
POLICIES = [{"name": "apps", "projects": ["pr"], "formats": ["estargz"]}]
SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"


@pytest.fixture(scope="module")
def own_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    running = start_registry(tmp_path_factory.mktemp("prune-registry"))
    yield running
    running.stop()


def _layers(name: str) -> list[list[Entry]]:
    return [[Entry("id", data=name.encode())], *sample_layers()[:1]]


@dataclass(frozen=True)
class Listing:
    """Every tag of a repository and what it names; each fallback index's entries."""

    tags: dict[str, str]
    fallback_entries: dict[str, list[dict[str, Any]]]


def _listing(url: str, repository: str) -> Listing:
    names = requests.get(f"{url}/v2/{repository}/tags/list", timeout=10).json()["tags"] or []
    tags, entries = {}, {}
    for tag in names:
        pulled = pull_manifest(url, repository, tag)
        tags[tag] = pulled.digest
        if tag.startswith("sha256-"):
            entries[tag] = pulled.json["manifests"]
    return Listing(tags, entries)


def _exists(url: str, repository: str, digest: str) -> bool:
    answer = requests.head(
        f"{url}/v2/{repository}/manifests/{digest}",
        headers={"Accept": f"{OCI_MANIFEST},application/vnd.oci.image.index.v1+json"},
        timeout=10,
    )
    return answer.status_code == 200


def _delete(url: str, repository: str, digest: str) -> None:
    requests.delete(f"{url}/v2/{repository}/manifests/{digest}", timeout=10).raise_for_status()


def _sign(url: str, repository: str, image: PushedImage) -> str:
    """A signature with `subject`, listed in the fallback index as cosign or oras would."""
    subject = {"mediaType": image.media_type, "digest": image.digest, "size": image.size}
    signature = push_artifact(
        url, repository, "", SIGNATURE, "application/octet-stream", b"sig", subject=subject
    )
    tag = "sha256-" + image.digest[7:]
    index = pull_manifest(url, repository, tag).json
    index["manifests"].append(
        {
            "mediaType": OCI_MANIFEST,
            "digest": signature.digest,
            "size": signature.size,
            "artifactType": SIGNATURE,
            "annotations": {"dev.sigstore.cosign/signature": "MEUCIQ"},
        }
    )
    push_manifest(
        url, repository, tag, json.dumps(index).encode(), "application/vnd.oci.image.index.v1+json"
    )
    return signature.digest


def _prune(config: Path, *args: str) -> dict[str, Any]:
    answer = acceld("prune", "--config", str(config), "--output", "json", *args)
    assert answer.returncode == 0, answer.stderr
    result: dict[str, Any] = json.loads(answer.stdout)
    return result


def _copies(url: str, repository: str, original: PushedImage) -> set[str]:
    """The copies of `original`, platform copies of a converted index included."""
    found = set()
    for digest in fallback_referrers(url, repository, original.digest):
        found.add(digest)
        for child in pull_manifest(url, repository, digest).json.get("manifests", []):
            found.add(child["digest"])
    return found


def test_prune_deletes_exactly_the_copies_of_deleted_originals(
    own_registry: RunningRegistry, tmp_path: Path
) -> None:
    url = own_registry.url
    keep = push_image(url, REPO, "keep", _layers("keep"))
    single = push_image(url, REPO, "v1", _layers("single"))
    shared = push_image(url, REPO, "v2", _layers("shared"))
    push_manifest(url, REPO, "latest", json.dumps(shared.manifest).encode(), OCI_MANIFEST)
    multi, _ = push_index(url, REPO, "multi", ["linux/amd64", "linux/arm64/v8"])
    digest_only = push_image(url, REPO, "", _layers("digest-only"))
    config = registry_config(tmp_path, own_registry.host, POLICIES)

    backfill = acceld("backfill", "--config", str(config), "--output", "json")
    assert backfill.returncode == 0, backfill.stderr
    converted = acceld(
        "convert", f"{own_registry.host}/{REPO}@{digest_only.digest}", "--plain-http"
    )
    assert converted.returncode == 0, converted.stderr
    deleted = (single, shared, multi, digest_only)
    orphans = set().union(*(_copies(url, REPO, image) for image in deleted))
    assert len(orphans) == 6  # one copy each, and the converted index's two platform copies
    kept_copies = _copies(url, REPO, keep)
    signatures = {_sign(url, REPO, single), _sign(url, REPO, keep)}
    for image in deleted:
        _delete(url, REPO, image.digest)
    before = _listing(url, REPO)

    dry = _prune(config, "--dry-run")
    assert {r["digest"] for r in dry["removed"]} == orphans
    assert {r["reason"] for r in dry["removed"]} == {"orphan", "leftover"}
    assert {t for r in dry["removed"] for t in r["tags"]} == {
        "v1-esgz",
        "v2-esgz",
        "latest-esgz",
        "multi-esgz",
    }
    assert _listing(url, REPO) == before

    pruned = _prune(config)
    assert sorted(r["digest"] for r in pruned["removed"]) == sorted(
        r["digest"] for r in dry["removed"]
    )
    after = _listing(url, REPO)
    emptied = {
        tag
        for tag, entries in before.fallback_entries.items()
        if all(entry["digest"] in orphans for entry in entries)
    }
    rewritten = {
        tag
        for tag, entries in before.fallback_entries.items()
        if tag not in emptied and any(entry["digest"] in orphans for entry in entries)
    }
    assert emptied
    assert rewritten == {"sha256-" + single.digest[7:]}
    assert {tag: d for tag, d in after.tags.items() if tag not in rewritten} == {
        tag: digest
        for tag, digest in before.tags.items()
        if digest not in orphans and tag not in emptied | rewritten
    }
    assert after.fallback_entries == {
        tag: [entry for entry in entries if entry["digest"] not in orphans]
        for tag, entries in before.fallback_entries.items()
        if tag not in emptied
    }
    for digest in orphans:
        assert not _exists(url, REPO, digest)
    for digest in signatures | kept_copies | {keep.digest}:
        assert _exists(url, REPO, digest)

    assert _prune(config)["removed"] == []
