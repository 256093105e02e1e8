"""`acceld backfill` through a proxy that breaks a fifth of the answers of the registry (or of the
Harbor emulator, REST API and token service included): 5xx, 429 with Retry-After, resets in the
middle of uploads and downloads, slow answers, truncated bodies. Every conversion still completes,
every output reads back whole, and no original is touched."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from harbor_api.registry import RegistryClient
from harbor_api.transport import TlsOptions
from harbor_api.version import ACCELD_VERSION
from tests.support.acceld_process import acceld, registry_config
from tests.support.converted_images import check_converted_manifest, pull_manifest
from tests.support.daemon_process import (
    ROBOT_SECRET,
    SECRETS_ENV,
    accessories_of,
    estargz_policy,
    set_up_serving,
)
from tests.support.fault_proxy import Fault, FaultProxy, FaultRule
from tests.support.harbor_emulator import RunningHarbor
from tests.support.images import push_image
from tests.support.registry_log import parse_access_log
from tests.support.registry_server import RunningRegistry
from tests.support.reliability import (
    assert_converged,
    distinct_layer,
    original_writes,
    push_distinct_images,
)
from tests.support.secret_scan import find_secrets

pytest_plugins = ("tests.support.harbor_fixtures",)

FAULT_RATE = 0.2
IMAGES = 10
HARBOR_IMAGES = 3
LAYER_BYTES = 2 << 20
# Enough attempts that a key surviving 20% faults on every request is near certain; the queue's
# backoff (1 s doubling) keeps the run short.
MAX_ATTEMPTS = "8"

# Requests by kind, each with the faults that fit it and each fault's share of the kind's faults.
# Rules fire in turn (the first that fires wins), so each gets the rate that makes its own chance
# its share of `FAULT_RATE`, and the kind's total chance of a fault `FAULT_RATE`.
_KINDS: list[tuple[frozenset[str], str, dict[Fault, float], bool]] = [
    (
        frozenset({"GET"}),
        r"/blobs/sha256:",
        {
            Fault.RESET_DOWNLOAD: 0.4,
            Fault.TRUNCATED_BODY: 0.3,
            Fault.HTTP_503: 0.1,
            Fault.HTTP_429: 0.1,
            Fault.SLOW: 0.1,
        },
        False,
    ),
    (frozenset({"HEAD"}), r"/blobs/sha256:", {Fault.HTTP_500: 0.5, Fault.SLOW: 0.5}, False),
    (
        frozenset({"GET", "HEAD"}),
        r"/manifests/|/tags/list$|/_catalog$",
        {
            Fault.HTTP_500: 0.25,
            Fault.HTTP_502: 0.25,
            Fault.HTTP_429: 0.2,
            Fault.TRUNCATED_BODY: 0.15,
            Fault.SLOW: 0.15,
        },
        False,
    ),
    (frozenset({"PUT"}), r"/manifests/", {Fault.HTTP_503: 0.5, Fault.HTTP_502: 0.5}, False),
    # Only an upload with a body can be cut; starting one (POST) gets an error answer.
    (frozenset({"PUT", "PATCH"}), r"/blobs/uploads/", {Fault.RESET_UPLOAD: 1.0}, True),
    (frozenset({"POST"}), r"/blobs/uploads/", {Fault.HTTP_503: 1.0}, True),
]


# What only Harbor answers: its REST API (read only by acceld) and its token service.
_HARBOR_KINDS: list[tuple[frozenset[str], str, dict[Fault, float], bool]] = [
    (
        frozenset({"GET"}),
        r"^/api/v2\.0/",
        {
            Fault.HTTP_500: 0.2,
            Fault.HTTP_502: 0.2,
            Fault.HTTP_429: 0.2,
            Fault.TRUNCATED_BODY: 0.2,
            Fault.SLOW: 0.2,
        },
        False,
    ),
    (frozenset({"GET"}), r"^/service/token$", {Fault.HTTP_503: 0.5, Fault.HTTP_429: 0.5}, False),
]


def fault_rules(
    rate: float, kinds: list[tuple[frozenset[str], str, dict[Fault, float], bool]] = _KINDS
) -> list[FaultRule]:
    rules = []
    for methods, path, shares, unrepeatable in kinds:
        taken = 0.0
        for fault, share in shares.items():
            chance = rate * share
            rules.append(
                FaultRule(
                    fault,
                    rate=chance / (1 - taken),
                    methods=methods,
                    path=path,
                    unrepeatable_too=unrepeatable,
                    delay_seconds=0.3,
                )
            )
            taken += chance
    return rules


@pytest.mark.slow
def test_backfill_through_20_percent_faults_converges_and_leaves_originals_alone(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    images = push_distinct_images(registry.url, "faulty", IMAGES, size=LAYER_BYTES, seed=20)
    logged_before = len(parse_access_log(registry.log_text()))
    with FaultProxy(registry.host, fault_rules(FAULT_RATE), seed=2026) as proxy:
        config = registry_config(
            tmp_path, proxy.host, [estargz_policy("faulty", "faulty")], workers=2
        )
        started = time.monotonic()
        run = acceld(
            "backfill", "--config", str(config), "--output", "json", "--max-attempts", MAX_ATTEMPTS
        )
        seconds = time.monotonic() - started
        records = proxy.records()

    assert run.returncode == 0, run.stderr[-4000:]
    summary = json.loads(run.stdout)
    assert summary["converged"] is True
    assert summary["missing"] == IMAGES
    assert [r["detail"] for r in summary["results"]] == ["converted"] * IMAGES
    injected = Counter(r.fault for r in records if r.fault is not None)
    share = sum(injected.values()) / len(records)
    print(
        f"faults: {sum(injected.values())} of {len(records)} requests ({share:.1%}), "
        f"{dict((f.value, n) for f, n in injected.items())}; backfill {seconds:.1f} s"
    )
    # A fifth of each kind of request; requests of no kind (the ping, upload cancels) and faults
    # that do not fit a request (no body to cut) make the share of all requests lower.
    assert 0.12 <= share <= 0.25, share
    assert any(injected[f] for f in (Fault.HTTP_500, Fault.HTTP_502, Fault.HTTP_503)), injected
    assert injected[Fault.HTTP_429], injected
    assert injected[Fault.SLOW], injected
    # Each cut is rare on its own; together they are many.
    cuts = (Fault.RESET_DOWNLOAD, Fault.RESET_UPLOAD, Fault.TRUNCATED_BODY)
    assert sum(injected[f] for f in cuts) >= 3, injected
    assert_converged(registry.url, images, tmp_path / "check")
    assert original_writes(records, images) == []
    assert original_writes(parse_access_log(registry.log_text())[logged_before:], images) == []
    leftovers = list((tmp_path / "work").iterdir()) if (tmp_path / "work").exists() else []
    assert leftovers == []


def _seed_that_fires_once(rate: float) -> int:
    """A proxy seed whose first draw fires a rule of `rate` and whose second does not."""
    for seed in range(1000):
        draws = random.Random(seed)
        if draws.random() < rate <= draws.random():
            return seed
    raise AssertionError(f"no seed in 0..999 fires a rule of rate {rate} once, then not")


def test_a_manifest_answer_cut_short_is_read_again(registry: RunningRegistry) -> None:
    image = push_image(registry.url, "faulty/cut", "v1")
    rule = FaultRule(Fault.TRUNCATED_BODY, rate=0.5, methods=frozenset({"GET"}), path="/manifests/")
    with FaultProxy(registry.host, [rule], seed=_seed_that_fires_once(0.5)) as proxy:
        client = RegistryClient(proxy.host, tls=TlsOptions(plain_http=True))
        fetched = client.get_manifest("faulty/cut", "v1")
        faults = [r.fault for r in proxy.records()]
    assert faults == [Fault.TRUNCATED_BODY, None]
    assert fetched.digest == image.digest


def test_backfill_over_harbor_through_20_percent_faults_converges(
    registry: RunningRegistry, harbor: RunningHarbor, admin: requests.Session, tmp_path: Path
) -> None:
    with FaultProxy(
        harbor.host, fault_rules(FAULT_RATE, [*_HARBOR_KINDS, *_KINDS]), seed=7
    ) as proxy:
        setup = set_up_serving(
            harbor,
            admin,
            tmp_path,
            ["shaky"],
            [estargz_policy("shaky", "shaky")],
            source_url=proxy.url,
            workers=2,
        )
        images = [
            push_image(
                harbor.url, f"shaky/app{n}", "v1", [distinct_layer(300 + n, 1 << 20)], session=admin
            )
            for n in range(HARBOR_IMAGES)
        ]
        logged_before = len(parse_access_log(registry.log_text()))
        run = acceld(
            "backfill",
            "--config",
            str(setup.config),
            "--output",
            "json",
            "--max-attempts",
            MAX_ATTEMPTS,
            env=SECRETS_ENV,
        )
        records = proxy.records()
    assert run.returncode == 0, run.stderr[-4000:]
    assert json.loads(run.stdout)["converged"] is True
    injected = Counter(r.fault for r in records if r.fault is not None)
    api_faults = [r for r in records if r.fault is not None and r.path.startswith("/api/")]
    print(
        f"harbor: {sum(injected.values())} faults in {len(records)} requests, "
        f"{[(r.fault.value, r.path) for r in api_faults]} on the API"
    )
    assert api_faults
    for image in images:
        (converted,) = accessories_of(harbor, image)
        original = pull_manifest(registry.url, image.repository, image.digest)
        check_converted_manifest(
            registry.url, image.repository, converted, original, ACCELD_VERSION, tmp_path
        )
    assert original_writes(records, images) == []
    assert original_writes(parse_access_log(registry.log_text())[logged_before:], images) == []
    # Retried failures log their requests: neither the robot secret nor a token may ride along.
    tokens = list(harbor.emulator._tokens)
    assert tokens
    leaks = find_secrets({"stderr": run.stderr, "stdout": run.stdout}, [ROBOT_SECRET, *tokens])
    assert leaks == [], [str(leak) for leak in leaks]
