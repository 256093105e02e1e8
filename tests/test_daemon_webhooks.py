"""`acceld serve` as a real process over the Harbor emulator: webhooks and scans lead to
conversions, webhook auth is enforced, duplicate deliveries convert once."""

from __future__ import annotations

from pathlib import Path

import requests

from harbor_api.version import ACCELD_VERSION
from tests.support.converted_images import check_converted_manifest, pull_manifest
from tests.support.daemon_process import (
    WEBHOOK_SECRET,
    DaemonProcess,
    accessories_of,
    estargz_policy,
    sample,
    set_up_serving,
)
from tests.support.harbor_emulator import RunningHarbor
from tests.support.images import push_image
from tests.support.registry_log import parse_access_log, writes_to_manifests
from tests.support.registry_server import RunningRegistry

pytest_plugins = ("tests.support.harbor_fixtures",)
CONVERSIONS = "acceld_conversions_total"
WEBHOOKS = "acceld_webhook_requests_total"


def start_daemon(
    harbor: RunningHarbor,
    admin: requests.Session,
    tmp: Path,
    project: str,
    *,
    incremental_interval: str = "1h",
    workers: int = 1,
) -> DaemonProcess:
    policies = [estargz_policy("apps", project)]
    setup = set_up_serving(
        harbor,
        admin,
        tmp,
        [project],
        policies,
        incremental_interval=incremental_interval,
        workers=workers,
    )
    return setup.start()


def test_pushed_image_is_converted_from_its_webhook_without_a_scan(
    harbor: RunningHarbor, admin: requests.Session, tmp_path: Path
) -> None:
    with start_daemon(harbor, admin, tmp_path, "hook") as daemon:
        daemon.wait_for_log('"scan finished"', timeout=20)
        before = daemon.samples()
        image = push_image(harbor.url, "hook/web/front", "v1", session=admin)
        after = daemon.wait_for_sample(CONVERSIONS, 1, format="estargz", result="success")
        (accessory,) = accessories_of(harbor, image)
        assert sample(after, WEBHOOKS, result="accepted") > sample(
            before, WEBHOOKS, result="accepted"
        )
        assert sample(before, CONVERSIONS, format="estargz", result="success") == 0
        assert sample(after, "acceld_scan_last_success_timestamp_seconds", kind="incremental") == 0
        assert daemon.stop() == 0
    assert accessory in daemon.log_text()
    registry_url = harbor.emulator.registry_url
    original = pull_manifest(registry_url, image.repository, image.digest)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    check_converted_manifest(
        registry_url, image.repository, accessory, original, ACCELD_VERSION, scratch
    )


def test_push_whose_webhook_was_dropped_is_converted_by_the_next_incremental_scan(
    harbor: RunningHarbor, admin: requests.Session, tmp_path: Path
) -> None:
    with start_daemon(harbor, admin, tmp_path, "lost", incremental_interval="2s") as daemon:
        daemon.wait_for_log('"scan finished"', timeout=20)
        harbor.emulator.drop_deliveries = True
        image = push_image(harbor.url, "lost/api", "1.0", session=admin)
        after = daemon.wait_for_sample(CONVERSIONS, 1, format="estargz", result="success")
        assert len(accessories_of(harbor, image)) == 1
        assert sample(after, "acceld_scan_last_success_timestamp_seconds", kind="incremental") > 0
        assert sample(after, WEBHOOKS, result="accepted") == 0
        assert all(delivery.dropped for delivery in harbor.emulator.deliveries)
        assert daemon.stop() == 0


def test_webhook_with_a_wrong_or_missing_authorization_is_refused_and_counted(
    harbor: RunningHarbor, admin: requests.Session, tmp_path: Path
) -> None:
    with start_daemon(harbor, admin, tmp_path, "auth") as daemon:
        harbor.emulator.drop_deliveries = True
        image = push_image(harbor.url, "auth/app", "v1", session=admin)
        (delivery,) = harbor.emulator.deliveries
        wrong = {**delivery.headers, "Authorization": WEBHOOK_SECRET + "x"}
        missing = {k: v for k, v in delivery.headers.items() if k != "Authorization"}
        answers = [
            requests.post(daemon.url + "/webhooks/harbor", data=delivery.body, headers=h, timeout=5)
            for h in (wrong, missing)
        ]
        assert [a.status_code for a in answers] == [401, 401]
        samples = daemon.samples()
        assert sample(samples, WEBHOOKS, result="unauthorized") == 2
        assert sample(samples, WEBHOOKS, result="accepted") == 0
        assert sample(samples, "acceld_queue_depth", state="pending") == 0
        assert accessories_of(harbor, image) == []
        assert daemon.stop() == 0


def test_duplicate_deliveries_of_one_push_convert_it_once(
    registry: RunningRegistry, harbor: RunningHarbor, admin: requests.Session, tmp_path: Path
) -> None:
    with start_daemon(harbor, admin, tmp_path, "dup", workers=2) as daemon:
        daemon.wait_for_log('"scan finished"', timeout=20)
        harbor.emulator.drop_deliveries = True
        image = push_image(harbor.url, "dup/app", "v1", session=admin)
        (delivery,) = harbor.emulator.deliveries

        def deliver() -> int:
            return requests.post(
                daemon.url + "/webhooks/harbor",
                data=delivery.body,
                headers=delivery.headers,
                timeout=5,
            ).status_code

        assert [deliver() for _ in range(3)] == [202, 202, 202]
        daemon.wait_for_sample(CONVERSIONS, 1, format="estargz", result="success")
        seen = daemon.log_line_count()
        assert deliver() == 202
        daemon.wait_for_log("msg=reconciled", after=seen)
        samples = daemon.samples()
        assert sample(samples, WEBHOOKS, result="accepted") == 4
        assert sample(samples, CONVERSIONS, format="estargz", result="success") == 1
        (accessory,) = accessories_of(harbor, image)
        logged = parse_access_log(registry.log_text())
        for reference in (accessory, "v1-esgz"):
            assert len(writes_to_manifests(logged, image.repository, [reference])) == 1
        assert daemon.stop() == 0
