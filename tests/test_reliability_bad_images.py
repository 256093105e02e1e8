"""`acceld serve` over the Harbor emulator, facing a project full of hostile and broken images
next to good ones: each bad image ends as a quarantined key with a precise reason in `acceld
status` and in the metrics, non-images are ignored, good images (also one pushed after the
quarantines) are converted, no temporary file is left, no original is written, and no secret
shows anywhere the run was captured: log, metrics, status, error answers, process arguments."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from harbor_api.version import ACCELD_VERSION
from tests.support import bad_images
from tests.support.acceld_process import acceld
from tests.support.bad_images import BadImage
from tests.support.converted_images import check_converted_manifest, pull_manifest
from tests.support.daemon_process import (
    ROBOT_SECRET,
    ROBOT_SECRET_ENV,
    SECRETS_ENV,
    WEBHOOK_SECRET,
    Samples,
    accessories_of,
    edit_config,
    estargz_policy,
    sample,
    set_up_serving,
    wait_until,
)
from tests.support.harbor_emulator import (
    ADMIN,
    ADMIN_PASSWORD,
    RunningHarbor,
    harbor_session,
    start_harbor_emulator,
)
from tests.support.images import PushedImage, push_image
from tests.support.registry_log import parse_access_log
from tests.support.registry_server import RunningRegistry
from tests.support.reliability import distinct_layer, original_writes, queue_counts, status_of
from tests.support.secret_scan import find_secrets, find_secrets_in_command_line

PROJECT = "hostile"
# Low enough that the bomb trips them, high enough for the good images.
LIMITS = {"max_layer_uncompressed_size": "16MiB", "max_compression_ratio": 200}
BOMB_BYTES = 48 << 20
CONVERSIONS = "acceld_conversions_total"
QUEUE_DEPTH = "acceld_queue_depth"
WRONG_ROBOT_SECRET = "not-the-robot-secret-0451"


@dataclass(frozen=True)
class Run:
    harbor: RunningHarbor
    registry_url: str
    good: tuple[PushedImage, ...]
    late: PushedImage
    bad: dict[str, BadImage]
    ignored: dict[str, BadImage]
    status: dict[str, object]
    status_text: str
    samples: Samples
    captured: dict[str, str]
    """Source name → text, everything the run showed to the outside."""
    command_line_hits: list[str]
    tokens: tuple[str, ...]
    work_files: list[Path]
    original_writes: list[object]


def _push_bad(url: str, admin: requests.Session) -> dict[str, BadImage]:
    bad = {
        "corrupt gzip": bad_images.corrupt_gzip_layer(url, f"{PROJECT}/corrupt", "v1", admin),
        "truncated layer": bad_images.truncated_layer(url, f"{PROJECT}/truncated", "v1", admin),
        "huge PAX header": bad_images.huge_pax_header_layer(url, f"{PROJECT}/pax", "v1", admin),
        "decompression bomb": bad_images.decompression_bomb(
            url, f"{PROJECT}/bomb", "v1", admin, uncompressed_bytes=BOMB_BYTES
        ),
        "missing blob": bad_images.missing_blob_image(url, f"{PROJECT}/missing", "v1", admin),
    }
    for kind in sorted(bad_images.HOSTILE_ENTRIES):
        bad[kind] = bad_images.hostile_entries_image(url, f"{PROJECT}/{kind}", kind, "v1", admin)
    return bad


def _push_non_images(
    url: str, admin: requests.Session, good: tuple[PushedImage, ...]
) -> dict[str, BadImage]:
    return {
        "helm chart": bad_images.helm_chart(url, f"{PROJECT}/chart", "0.1.0", admin),
        "cosign signature": bad_images.cosign_signature(url, good[0], admin),
        "legacy cosign signature": bad_images.legacy_cosign_signature(url, good[0], admin),
        "SPDX SBOM": bad_images.spdx_sbom(url, good[1], admin),
    }


def _refused_webhooks(url: str) -> dict[str, str]:
    """The answers to webhooks with a wrong secret, none, and a good one but a broken body."""
    hook = url + "/webhooks/harbor"
    json_type = {"Content-Type": "application/json"}
    answers = {
        "wrong secret": requests.post(
            hook, data=b"{}", headers={**json_type, "Authorization": "Bearer wrong"}, timeout=5
        ),
        "no secret": requests.post(hook, data=b"{}", headers=json_type, timeout=5),
        "broken body": requests.post(
            hook,
            data=b'{"type": "PUSH_ARTIFACT", "event_data": 7}',
            headers={**json_type, "Authorization": WEBHOOK_SECRET},
            timeout=5,
        ),
    }
    for name, answer in answers.items():
        assert 400 <= answer.status_code < 500, (name, answer.status_code, answer.text)
    return {f"webhook answer ({name})": answer.text for name, answer in answers.items()}


@pytest.fixture(scope="module")
def run(registry: RunningRegistry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    harbor = start_harbor_emulator(registry.url)
    admin = harbor_session(ADMIN, ADMIN_PASSWORD)
    directory = tmp_path_factory.mktemp("bad-images")
    try:
        # Webhooks to the daemon before it listens are lost, as Harbor's are: the scan at start
        # finds these pushes.
        setup = set_up_serving(
            harbor, admin, directory, [PROJECT], [estargz_policy(PROJECT, PROJECT)], workers=2
        )
        edit_config(setup.config, limits=LIMITS)
        url = harbor.url
        good = tuple(
            push_image(url, f"{PROJECT}/good{n}", "v1", [distinct_layer(n, 1 << 20)], session=admin)
            for n in range(2)
        )
        bad = _push_bad(url, admin)
        ignored = _push_non_images(url, admin, good)
        logged_before = len(parse_access_log(registry.log_text()))
        with setup.start() as daemon:
            daemon.wait_for_sample(
                CONVERSIONS, len(bad), timeout=90, format="estargz", result="terminal"
            )
            daemon.wait_for_sample(QUEUE_DEPTH, len(bad), timeout=30, state="quarantined")
            work_files = [p for p in (directory / "work").rglob("*") if not p.is_dir()]
            late = push_image(
                url, f"{PROJECT}/late", "v1", [distinct_layer(599, 1 << 20)], session=admin
            )
            samples = daemon.wait_for_sample(
                CONVERSIONS, len(good) + 1, timeout=60, format="estargz", result="success"
            )
            metrics_text = daemon.metrics_text()
            webhook_answers = _refused_webhooks(daemon.url)
            hits = [
                str(h)
                for h in find_secrets_in_command_line(daemon.pid, [ROBOT_SECRET, WEBHOOK_SECRET])
            ]
            # acceld's own pushes fire webhooks too: let those keys settle first.
            settled = {"pending": 0, "in_progress": 0, "quarantined": len(bad)}
            wait_until(
                lambda: queue_counts(setup.config, SECRETS_ENV) == settled,
                30,
                "a settled queue",
                interval=0.3,
            )
            status, status_text = status_of(setup.config, SECRETS_ENV)
            assert daemon.stop() == 0
        refused = acceld(
            "check",
            "--config",
            str(setup.config),
            env={**SECRETS_ENV, ROBOT_SECRET_ENV: WRONG_ROBOT_SECRET},
        )
        assert refused.returncode != 0, refused.stdout
        writes = original_writes(
            parse_access_log(registry.log_text())[logged_before:],
            [*good, *(b.image for b in bad.values()), *(i.image for i in ignored.values())],
        )
        yield Run(
            harbor=harbor,
            registry_url=registry.url,
            good=good,
            late=late,
            bad=bad,
            ignored=ignored,
            status=status,
            status_text=status_text,
            samples=samples,
            captured={
                "daemon log": daemon.log_text(),
                "metrics": metrics_text,
                "status (json)": json.dumps(status),
                "status (text)": status_text,
                **webhook_answers,
                "acceld check with a wrong robot secret": refused.stdout + refused.stderr,
            },
            command_line_hits=[str(hit) for hit in hits],
            tokens=tuple(harbor.emulator._tokens),
            work_files=work_files,
            original_writes=list(writes),
        )
    finally:
        harbor.stop()


def _key(image: PushedImage) -> str:
    return f"{image.repository}@{image.digest}#estargz"


def test_each_bad_image_is_quarantined_with_its_precise_reason_in_status(run: Run) -> None:
    quarantined = run.status["quarantined"]
    assert isinstance(quarantined, list)
    reasons = {item["key"]: item["reason"] for item in quarantined}
    assert sorted(reasons) == sorted(_key(b.image) for b in run.bad.values())
    for name, bad in run.bad.items():
        reason = reasons[_key(bad.image)]
        assert bad.reason.lower() in reason.lower(), (name, reason)
        assert _key(bad.image) in run.status_text
        assert " ".join(reason.split()) in run.status_text
    assert run.status["queue"] == {"pending": 0, "in_progress": 0, "quarantined": len(run.bad)}
    assert run.status["failing"] == []


def test_the_scan_counts_only_images_as_missing(run: Run) -> None:
    scans = run.status["scans"]
    assert isinstance(scans, list)
    (full,) = [scan for scan in scans if scan["kind"] == "full"]
    expected = len(run.good) + len(run.bad)
    assert full["missing"] == [{"policy": PROJECT, "format": "estargz", "count": expected}]


def test_quarantines_are_counted_in_the_metrics(run: Run) -> None:
    assert sample(run.samples, CONVERSIONS, format="estargz", result="terminal") == len(run.bad)
    assert sample(run.samples, CONVERSIONS, format="estargz", result="error") == 0
    assert sample(run.samples, QUEUE_DEPTH, state="quarantined") == len(run.bad)


def test_non_images_are_ignored_not_quarantined_and_get_no_referrer(run: Run) -> None:
    keys = json.dumps(run.status)
    for name, artifact in run.ignored.items():
        assert artifact.image.digest not in keys, name
        assert accessories_of(run.harbor, artifact.image) == [], name


def test_good_images_are_converted_beside_the_bad_ones_and_after_them(
    run: Run, tmp_path: Path
) -> None:
    by_others = {i.image.digest for i in run.ignored.values()}
    for image in (*run.good, run.late):
        (converted,) = [d for d in accessories_of(run.harbor, image) if d not in by_others]
        original = pull_manifest(run.registry_url, image.repository, image.digest)
        check_converted_manifest(
            run.registry_url, image.repository, converted, original, ACCELD_VERSION, tmp_path
        )


def test_failed_conversions_leave_no_temporary_file(run: Run) -> None:
    assert run.work_files == []


def test_no_original_manifest_or_tag_is_written(run: Run) -> None:
    assert run.original_writes == []


def test_no_secret_shows_in_logs_metrics_status_answers_or_arguments(run: Run) -> None:
    assert run.tokens, "the emulator issued no registry token: the check would prove nothing"
    assert run.command_line_hits == []
    secrets = [
        ROBOT_SECRET,
        WRONG_ROBOT_SECRET,
        WEBHOOK_SECRET,
        WEBHOOK_SECRET.removeprefix("Bearer "),
        *run.tokens,
    ]
    hits = find_secrets(run.captured, secrets)
    assert hits == [], [str(h) for h in hits]
