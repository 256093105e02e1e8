"""Re-conversion of outdated copies against a real registry: `plan` lists them, and with
`reconvert: options-changed` each is replaced while a reader of the referrers always finds one."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from harbor_api.annotations import DRIVER_NAME
from tests.support.acceld_process import acceld, registry_config
from tests.support.converted_images import fallback_referrers, pull_manifest
from tests.support.images import Entry, push_image, sample_layers
from tests.support.registry_server import RunningRegistry, start_registry

REPO = "rc/app"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture(scope="module")
def own_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    running = start_registry(tmp_path_factory.mktemp("reconvert-registry"))
    yield running
    running.stop()


def _policies(level: int, reconvert: str) -> list[dict[str, object]]:
    return [
        {
            "name": "apps",
            "projects": ["rc"],
            "formats": ["estargz"],
            "options": {"estargz": {"compression_level": level}},
            "reconvert": reconvert,
        }
    ]


def _config(tmp: Path, host: str, level: int, reconvert: str) -> Path:
    tmp.mkdir(mode=0o700)
    return registry_config(tmp, host, _policies(level, reconvert))


def _accelerated(index: dict[str, Any]) -> int:
    return sum(1 for m in index["manifests"] if DRIVER_NAME in m.get("annotations", {}))


def _accelerated_referrers(url: str, digest: str) -> int | None:
    """Copies listed in the fallback index; None for the one failure a read may meet while the
    index is rewritten, and only that one: distribution 2.8's filesystem driver rewrites a tag's
    link file in place (truncate, then write), so a read racing the rewrite finds an empty
    link and answers 500 UNKNOWN. Any other answer (a 404: the index is gone) fails the test."""
    answer = requests.get(
        f"{url}/v2/{REPO}/manifests/sha256-{digest[7:]}",
        headers={"Accept": OCI_INDEX},
        timeout=10,
    )
    if answer.status_code == 500:
        assert [e["code"] for e in answer.json()["errors"]] == ["UNKNOWN"], answer.text
        return None
    assert answer.status_code == 200, (answer.status_code, answer.text)
    return _accelerated(answer.json())


def _every_version_of_the_fallback_index(registry: RunningRegistry, digest: str) -> list[str]:
    """Every digest the fallback tag of `digest` ever named: distribution keeps a tag's history
    under `_manifests/tags/<tag>/index/`, and a manifest read by digest never races a rewrite;
    so the moments the poll could not see are checked too."""
    history = (
        registry.root
        / "data/docker/registry/v2/repositories"
        / REPO
        / "_manifests/tags"
        / f"sha256-{digest[7:]}/index/sha256"
    )
    return ["sha256:" + path.name for path in history.iterdir()]


def test_changed_options_replace_each_copy_and_a_reader_always_finds_one(
    own_registry: RunningRegistry, tmp_path: Path
) -> None:
    url = own_registry.url
    images = [
        push_image(url, REPO, f"v{n}", [[Entry("n", data=str(n).encode())], *sample_layers()[:1]])
        for n in range(3)
    ]
    first = _config(tmp_path / "a", own_registry.host, 9, "never")
    assert acceld("backfill", "--config", str(first)).returncode == 0
    old = {image.digest: fallback_referrers(url, REPO, image.digest) for image in images}
    assert all(len(copies) == 1 for copies in old.values())

    kept = _config(tmp_path / "b", own_registry.host, 6, "never")
    plan: dict[str, Any] = json.loads(
        acceld("plan", "--config", str(kept), "--output", "json").stdout
    )
    assert {(o["digest"], o["copy"]) for o in plan["outdated"]} == {
        (digest, copies[0]) for digest, copies in old.items()
    }
    assert {o["replaced"] for o in plan["outdated"]} == {False}
    assert acceld("backfill", "--config", str(kept), "--output", "json").returncode == 0
    assert {d: fallback_referrers(url, REPO, d) for d in old} == old  # never: kept as they are

    renewed = _config(tmp_path / "c", own_registry.host, 6, "options-changed")
    seen: list[int] = []
    raced: list[str] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            for image in images:
                count = _accelerated_referrers(url, image.digest)
                if count is None:
                    raced.append(image.digest)
                else:
                    seen.append(count)

    failures: list[BaseException] = []

    def poll_until_stopped() -> None:
        try:
            poll()
        except BaseException as exc:
            failures.append(exc)
            raise

    reader = threading.Thread(target=poll_until_stopped)
    reader.start()
    try:
        done = acceld("backfill", "--config", str(renewed), "--output", "json")
    finally:
        stop.set()
        reader.join()
    assert failures == []
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["converged"] is True
    assert seen
    assert min(seen) >= 1
    # A raced read hides one moment of one rewrite; every version ever written is read here.
    assert len(raced) < len(seen)
    for image in images:
        versions = _every_version_of_the_fallback_index(own_registry, image.digest)
        assert len(versions) >= 3  # the old copy; old and new; the new one
        for version in versions:
            assert _accelerated(pull_manifest(url, REPO, version).json) >= 1, version
    for image in images:
        [new] = fallback_referrers(url, REPO, image.digest)
        assert new != old[image.digest][0]
        assert pull_manifest(url, REPO, f"{image.tag}-esgz").digest == new
        gone = requests.head(f"{url}/v2/{REPO}/manifests/{old[image.digest][0]}", timeout=10)
        assert gone.status_code == 404
    again: dict[str, Any] = json.loads(
        acceld("plan", "--config", str(renewed), "--output", "json").stdout
    )
    assert again["outdated"] == []
    assert again["items"] == []
