"""SIGKILL during a prune and during a replacement of outdated copies, on the real registry; the
next run finishes the work with nothing lost: every original keeps an accelerated copy, no
fallback-index entry names a manifest that is gone, and a further prune deletes nothing.

A fault proxy between acceld and the registry picks the moment: a request it holds is forwarded
after the kill (a deletion lands, what acceld would have done next never comes), a request it
answers 503 never reaches the registry (acceld is killed while it retries).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.acceld_process import acceld, registry_config
from tests.support.converted_images import pull_manifest
from tests.support.daemon_process import DaemonProcess, loopback_listen, sample, wait_until
from tests.support.fault_proxy import Fault, FaultRule
from tests.support.images import PushedImage, push_image, push_index
from tests.support.registry_server import RunningRegistry, start_registry
from tests.support.reliability import (
    WatchedProxy,
    assert_converged,
    distinct_layer,
    fallback_entries,
    queue_counts,
    registry_serve_config,
)
from tests.test_prune_registry import _copies, _delete, _exists, _sign

LAYER_BYTES = 64 << 10
HOLD_SECONDS = 1.5
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@dataclass(frozen=True)
class KillPoint:
    name: str
    method: str
    path: str
    fault: Fault
    """SLOW: the request lands after the kill; HTTP_503: it never does."""

    def rule(self) -> FaultRule:
        return FaultRule(
            self.fault,
            methods=frozenset({self.method}),
            path=self.path,
            delay_seconds=HOLD_SECONDS,
        )


PRUNE_POINTS = (
    KillPoint("a copy's deletion", "DELETE", r"/manifests/sha256:", Fault.SLOW),
    KillPoint("a fallback-index rewrite", "PUT", r"/manifests/sha256-", Fault.HTTP_503),
)
REPLACEMENT_POINTS = (
    KillPoint("listing the new copy", "PUT", r"/manifests/sha256-", Fault.HTTP_503),
    KillPoint("deleting the old copy", "DELETE", r"/manifests/sha256:", Fault.SLOW),
)


@pytest.fixture(scope="module")
def own_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    running = start_registry(tmp_path_factory.mktemp("lifecycle-crash-registry"))
    yield running
    running.stop()


def _image(url: str, repository: str, tag: str, seed: int) -> PushedImage:
    return push_image(url, repository, tag, [distinct_layer(seed, LAYER_BYTES)])


def _tags(url: str, repository: str) -> list[str]:
    answer = requests.get(f"{url}/v2/{repository}/tags/list", timeout=10)
    answer.raise_for_status()
    tags: list[str] = answer.json()["tags"] or []
    return tags


def _dangling_entries(url: str, repository: str) -> list[str]:
    """Entries of every fallback index of `repository` that name a manifest the registry lost."""
    dangling: list[str] = []
    for tag in _tags(url, repository):
        if tag.startswith("sha256-"):
            subject = "sha256:" + tag.removeprefix("sha256-")
            dangling.extend(
                digest
                for digest in fallback_entries(url, repository, subject)
                if not _exists(url, repository, digest)
            )
    return dangling


def _arm(proxy: WatchedProxy, point: KillPoint) -> int:
    """Hold or fail the requests of `point` from now on; the count of requests seen so far."""
    proxy.set_rules([point.rule()])
    return proxy.arrivals()


def _kill_at(
    proxy: WatchedProxy, process: subprocess.Popen[str], point: KillPoint, seen: int
) -> None:
    """SIGKILL `process` once a request of `point` reached the proxy (and was held or failed)."""
    came = proxy.wait_for_request((point.method,), point.path, after=seen, timeout=120)
    if not came:
        process.kill()
        output, _ = process.communicate(timeout=10)
        raise AssertionError(f"no request of {point.name} came:\n{output}")
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=10) == -signal.SIGKILL
    proxy.set_rules([])
    proxy.records()  # what was held is answered before the state is read


def _prune(config: Path) -> dict[str, Any]:
    answer = acceld("prune", "--config", str(config), "--output", "json")
    assert answer.returncode == 0, answer.stdout + answer.stderr
    result: dict[str, Any] = json.loads(answer.stdout)
    return result


@pytest.mark.parametrize("point", PRUNE_POINTS, ids=lambda p: p.name)
def test_a_prune_killed_half_way_is_finished_by_the_next_one(
    own_registry: RunningRegistry, tmp_path: Path, point: KillPoint
) -> None:
    url = own_registry.url
    repository = f"pk{PRUNE_POINTS.index(point)}/app"
    seed = 7000 + 100 * PRUNE_POINTS.index(point)
    keep = _image(url, repository, "keep", seed)
    signed = _image(url, repository, "signed", seed + 1)
    others = [_image(url, repository, f"v{n}", seed + 2 + n) for n in range(3)]
    multi, _ = push_index(url, repository, "multi", ["linux/amd64", "linux/arm64/v8"])
    proxy = WatchedProxy(own_registry.host)
    with proxy:
        config = registry_config(
            tmp_path,
            proxy.host,
            [{"name": "apps", "projects": [repository.split("/")[0]], "formats": ["estargz"]}],
        )
        backfill = acceld("backfill", "--config", str(config), "--output", "json")
        assert backfill.returncode == 0, backfill.stderr
        deleted = [signed, multi, *others]
        orphans = set().union(*(_copies(url, repository, image) for image in deleted))
        kept = _copies(url, repository, keep) | {keep.digest}
        signature = _sign(url, repository, signed)
        signatures = {signature, _sign(url, repository, keep)}
        for image in deleted:
            _delete(url, repository, image.digest)

        seen = _arm(proxy, point)
        killed = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "prune", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        _kill_at(proxy, killed, point, seen)
        left = {digest for digest in orphans if _exists(url, repository, digest)}
        dangling = _dangling_entries(url, repository)
        assert left or dangling, "the kill came after the prune had finished"
        if point.fault is Fault.HTTP_503:
            # The copy of `signed` went, its entry could not be taken out of the rewritten index.
            assert dangling

        finished = _prune(config)
        assert {r["digest"] for r in finished["removed"]} == left | set(dangling)
        assert finished["failures"] == []
        assert _prune(config)["removed"] == []

    assert not any(_exists(url, repository, digest) for digest in orphans)
    assert _dangling_entries(url, repository) == []
    assert all(_exists(url, repository, digest) for digest in kept | signatures)
    assert fallback_entries(url, repository, signed.digest) == [signature]
    assert not {t for t in _tags(url, repository) if t.endswith("-esgz")} - {"keep-esgz"}


def _reconvert_policy(project: str, level: int, reconvert: str) -> dict[str, object]:
    return {
        "name": "apps",
        "projects": [project],
        "formats": ["estargz"],
        "options": {"estargz": {"compression_level": level}},
        "reconvert": reconvert,
    }


def _listed_and_present(url: str, image: PushedImage) -> list[str]:
    return [
        digest
        for digest in fallback_entries(url, image.repository, image.digest)
        if _exists(url, image.repository, digest)
    ]


def _renewed(url: str, images: list[PushedImage], old: dict[str, list[str]]) -> bool:
    """Each original lists exactly one copy, not the one it had before."""
    for image in images:
        entries = fallback_entries(url, image.repository, image.digest)
        if len(entries) != 1 or entries == old[image.digest]:
            return False
    return True


@pytest.mark.parametrize("point", REPLACEMENT_POINTS, ids=lambda p: p.name)
def test_a_replacement_killed_half_way_is_finished_after_restart_and_no_original_lacks_a_copy(
    own_registry: RunningRegistry, tmp_path: Path, point: KillPoint
) -> None:
    url = own_registry.url
    project = f"rk{REPLACEMENT_POINTS.index(point)}"
    seed = 8000 + 100 * REPLACEMENT_POINTS.index(point)
    images = [_image(url, f"{project}/app{n}", "v1", seed + n) for n in range(2)]
    first = tmp_path / "first"
    first.mkdir(mode=0o700)
    made = registry_config(first, own_registry.host, [_reconvert_policy(project, 9, "never")])
    assert acceld("backfill", "--config", str(made)).returncode == 0
    old = {image.digest: fallback_entries(url, image.repository, image.digest) for image in images}
    assert all(len(copies) == 1 for copies in old.values())

    directory = tmp_path / "serve"
    directory.mkdir(mode=0o700)
    proxy = WatchedProxy(own_registry.host)
    with proxy:
        listen = loopback_listen()
        config = registry_serve_config(
            directory,
            proxy.host,
            [_reconvert_policy(project, 6, "options-changed")],
            listen=listen,
        )
        seen = _arm(proxy, point)
        with DaemonProcess(config, listen) as killed:
            _kill_at(proxy, killed.process, point, seen)
        for image in images:
            assert _listed_and_present(url, image), (point.name, image.repository)
        assert not _renewed(url, images, old), "the kill came after every replacement"

        with DaemonProcess(config, listen) as restarted:
            restarted.wait_ready(timeout=30)

            wait_until(
                lambda: _renewed(url, images, old), 90, "one new copy per original after restart"
            )
            wait_until(
                lambda: queue_counts(config) == {"pending": 0, "in_progress": 0, "quarantined": 0},
                60,
                "an empty queue",
                interval=0.3,
            )
            replaced = sample(restarted.samples(), "acceld_replaced_copies_total", format="estargz")
            assert replaced >= 1
            assert restarted.stop() == 0, restarted.log_text()
        assert _prune(config)["removed"] == []

    assert_converged(url, images, tmp_path / "check")
    for image in images:
        assert not _exists(url, image.repository, old[image.digest][0])
        assert _dangling_entries(url, image.repository) == []
        assert pull_manifest(url, image.repository, "v1").digest == image.digest
