"""Shared pieces of the reliability suite: images that convert to distinct outputs, a fault proxy
that reports when a request arrives (to kill acceld at a chosen point), a serve config over a
plain registry, and the checks every test ends with: each original has exactly one converted
referrer that an independent reader accepts, no fallback entry points at nothing, and nobody
wrote to an original."""

from __future__ import annotations

import json
import random
import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import requests

from harbor_api.version import ACCELD_VERSION
from tests.support.acceld_process import acceld, registry_config
from tests.support.converted_images import check_converted_manifest, pull_manifest
from tests.support.fault_proxy import FaultProxy, FaultRule
from tests.support.images import Entry, PushedImage, push_image
from tests.support.registry_log import Request, parse_access_log, writes_to_manifests

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ESTARGZ_SUFFIX = "-esgz"
_WORDS = 512


def distinct_layer(seed: int, size: int) -> list[Entry]:
    """One file of `size` bytes of text words: compressible like real files, unique per seed."""
    rng = random.Random(seed)
    words = [bytes(rng.choice(b"abcdefghijklmnop") for _ in range(8)) for _ in range(_WORDS)]
    data = b" ".join(rng.choice(words) for _ in range(size // 9))
    return [Entry("data", "dir", mode=0o755), Entry(f"data/blob-{seed}", data=data)]


def push_distinct_images(
    base_url: str, project: str, count: int, *, size: int, seed: int
) -> list[PushedImage]:
    """`count` one-layer images `project/appN:v1`, each layer different from every other."""
    return [
        push_image(base_url, f"{project}/app{n}", "v1", [distinct_layer(seed * 1000 + n, size)])
        for n in range(count)
    ]


def registry_serve_config(
    directory: Path,
    registry_host: str,
    policies: list[dict[str, object]],
    *,
    listen: str,
    **extra: object,
) -> Path:
    """A config for `acceld serve` over a plain loopback registry: a full scan at start and
    then hourly, state and work directories under `directory`."""
    return registry_config(
        directory,
        registry_host,
        policies,
        scan={"full_interval": "1h", "incremental_interval": "1h"},
        server={"listen": listen},
        **extra,
    )


def fallback_entries(base_url: str, repository: str, digest: str) -> list[str]:
    """The digests listed under `digest`'s `sha256-<hex>` fallback tag; none when it is absent."""
    answer = requests.get(
        f"{base_url}/v2/{repository}/manifests/sha256-{digest.removeprefix('sha256:')}",
        headers={"Accept": OCI_INDEX},
        timeout=10,
    )
    if answer.status_code == 404:
        return []
    answer.raise_for_status()
    return [entry["digest"] for entry in answer.json()["manifests"]]


def converted_everywhere(base_url: str, images: Iterable[PushedImage]) -> bool:
    return all(fallback_entries(base_url, i.repository, i.digest) for i in images)


def assert_converged(base_url: str, images: Iterable[PushedImage], scratch: Path) -> None:
    """Each image has exactly one referrer, present in the registry, tagged `<tag>-esgz`, and
    read back whole by the independent eStargz reader against the unchanged original."""
    scratch.mkdir(parents=True, exist_ok=True)
    for image in images:
        entries = fallback_entries(base_url, image.repository, image.digest)
        assert len(entries) == 1, (image.repository, entries)
        original = pull_manifest(base_url, image.repository, image.digest)
        assert original.digest == image.digest
        check_converted_manifest(
            base_url, image.repository, entries[0], original, ACCELD_VERSION, scratch
        )
        by_tag = pull_manifest(base_url, image.repository, image.tag + ESTARGZ_SUFFIX)
        assert by_tag.digest == entries[0]
        assert pull_manifest(base_url, image.repository, image.tag).digest == image.digest


def assert_pushed_once(base_url: str, access_log: str, images: Iterable[PushedImage]) -> None:
    """The registry's access log shows one PUT of each image's converted manifest by digest and
    one of its `<tag>-esgz` tag: nothing was converted and pushed twice."""
    logged = parse_access_log(access_log)
    for image in images:
        (converted,) = fallback_entries(base_url, image.repository, image.digest)
        pushes = writes_to_manifests(logged, image.repository, [converted])
        tag_pushes = writes_to_manifests(logged, image.repository, [image.tag + ESTARGZ_SUFFIX])
        assert (len(pushes), len(tag_pushes)) == (1, 1), image.repository


def original_writes(records: Iterable[Request], images: Iterable[PushedImage]) -> list[Request]:
    """Requests that tried to change an original manifest, by digest or by its tag."""
    records = list(records)
    found: list[Request] = []
    for image in images:
        references = [image.digest, image.tag] if image.tag else [image.digest]
        found.extend(writes_to_manifests(records, image.repository, references))
    return found


def queue_counts(config: Path, env: dict[str, str] | None = None) -> dict[str, int]:
    """The queue as `acceld status` reports it."""
    answer = acceld("status", "--config", str(config), "--output", "json", env=env, timeout=60)
    assert answer.returncode == 0, answer.stderr
    counts: dict[str, int] = json.loads(answer.stdout)["queue"]
    return counts


def status_of(config: Path, env: dict[str, str] | None = None) -> tuple[dict[str, object], str]:
    """`acceld status` as JSON and as the text an operator reads."""
    as_json = acceld("status", "--config", str(config), "--output", "json", env=env, timeout=60)
    as_text = acceld("status", "--config", str(config), env=env, timeout=60)
    assert as_json.returncode == 0, as_json.stderr
    assert as_text.returncode == 0, as_text.stderr
    document: dict[str, object] = json.loads(as_json.stdout)
    return document, as_text.stdout


class WatchedProxy(FaultProxy):
    """A fault proxy that also says, while a request is still being answered, that it came."""

    def __init__(self, upstream: str, *, seed: int = 0) -> None:
        super().__init__(upstream, seed=seed)
        self._arrivals: list[tuple[str, str]] = []
        self._arrived = threading.Condition()

    def _admit(self, method: str, path: str) -> tuple[bool, FaultRule | None]:
        verdict = super()._admit(method, path)
        with self._arrived:
            self._arrivals.append((method, path))
            self._arrived.notify_all()
        return verdict

    def arrivals(self) -> int:
        with self._arrived:
            return len(self._arrivals)

    def matching(self, methods: Sequence[str], pattern: str, *, after: int = 0) -> int:
        """How many requests of `methods` whose path matches `pattern` came in, among those
        after the first `after`."""
        with self._arrived:
            return self._count(methods, re.compile(pattern), after)

    def wait_for_request(
        self, methods: Sequence[str], pattern: str, *, after: int, timeout: float
    ) -> bool:
        """Whether a request of `methods` whose path matches `pattern` came in, among those
        after the first `after`, within `timeout` seconds."""
        wanted = re.compile(pattern)
        with self._arrived:
            return self._arrived.wait_for(
                lambda: self._count(methods, wanted, after) > 0, timeout=timeout
            )

    def _count(self, methods: Sequence[str], wanted: re.Pattern[str], after: int) -> int:
        return sum(
            1
            for method, path in self._arrivals[after:]
            if method in methods and wanted.search(path)
        )
