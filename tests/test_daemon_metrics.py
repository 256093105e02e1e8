"""What a running `acceld serve` shows the outside: its /metrics after real work (every metric
the design names, and promtool's lint), and no secret anywhere an operator or another local
user can read."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.daemon_process import (
    ROBOT_SECRET,
    WEBHOOK_SECRET,
    DaemonProcess,
    estargz_policy,
    parse_samples,
    sample,
    set_up_serving,
)
from tests.support.harbor_emulator import RunningHarbor
from tests.support.images import Entry, push_image
from tests.support.secret_scan import find_secrets, find_secrets_in_command_line

pytest_plugins = ("tests.support.harbor_fixtures",)

# Metric family → its label names: what DESIGN.md's metrics section asks for.
EXPECTED_FAMILIES = {
    "acceld_missing_conversions": {"policy", "format"},
    "acceld_scan_last_success_timestamp_seconds": {"kind"},
    "acceld_scan_duration_seconds": {"kind"},
    "acceld_conversions": {"format", "result"},
    "acceld_conversion_duration_seconds": {"format"},
    "acceld_conversion_bytes": {"format", "direction"},
    "acceld_queue_depth": {"state"},
    "acceld_queue_retries": set(),
    "acceld_webhook_requests": {"result"},
    "acceld_source_requests": {"endpoint", "code"},
    "acceld_source_request_duration_seconds": {"endpoint"},
    "acceld_layer_cache_hits": {"format"},
    "acceld_layer_cache_misses": {"format"},
    "acceld_build_info": {"version"},
}


def converted_daemon(
    harbor: RunningHarbor, admin: requests.Session, tmp: Path, *args: str
) -> DaemonProcess:
    """A running daemon that has converted one image it heard of by webhook."""
    policies = [estargz_policy("watched", "watched")]
    daemon = set_up_serving(harbor, admin, tmp, ["watched"], policies).start(args=args)
    daemon.wait_for_log("scan finished")
    push_image(harbor.url, "watched/app", "v1", session=admin)
    daemon.wait_for_sample("acceld_conversions_total", 1, format="estargz", result="success")
    return daemon


@pytest.fixture
def scrape(harbor: RunningHarbor, admin: requests.Session, tmp_path: Path) -> str:
    """/metrics of a daemon that converted an image, then stopped cleanly."""
    with converted_daemon(harbor, admin, tmp_path) as daemon:
        text = daemon.metrics_text()
        assert daemon.stop() == 0
    return text


def test_scrape_of_a_working_daemon_has_every_designed_metric_with_its_labels(
    scrape: str,
) -> None:
    families = {family.name: family for family in text_string_to_metric_families(scrape)}
    for name, labels in EXPECTED_FAMILIES.items():
        assert name in families, f"{name} missing from the scrape"
        for found in families[name].samples:
            assert set(found.labels) - {"le"} == labels, found
    samples = parse_samples(scrape)
    assert sample(samples, "acceld_scan_last_success_timestamp_seconds", kind="full") > 0
    assert (
        "acceld_missing_conversions",
        frozenset({"policy": "watched", "format": "estargz"}.items()),
    ) in samples
    assert sample(samples, "acceld_conversion_bytes_total", format="estargz", direction="read") > 0
    assert (
        sample(samples, "acceld_conversion_bytes_total", format="estargz", direction="written") > 0
    )
    assert sample(samples, "acceld_conversion_duration_seconds_count", format="estargz") == 1
    codes = {
        dict(labels)["code"] for name, labels in samples if name == "acceld_source_requests_total"
    }
    assert "200" in codes


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool is not installed (Debian package prometheus)"
)
def test_scrape_of_a_working_daemon_passes_promtool_check_metrics(scrape: str) -> None:
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=scrape, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""


def test_robot_and_webhook_secrets_never_show_in_log_metrics_or_command_line(
    harbor: RunningHarbor, admin: requests.Session, tmp_path: Path
) -> None:
    secrets = (ROBOT_SECRET, WEBHOOK_SECRET)
    with converted_daemon(harbor, admin, tmp_path, "--log-format", "json") as daemon:
        refused = requests.post(
            daemon.url + "/webhooks/harbor",
            data=b"{}",
            headers={"Authorization": WEBHOOK_SECRET[:-1], "Content-Type": "application/json"},
            timeout=5,
        )
        assert refused.status_code == 401
        seen = daemon.log_line_count()
        daemon.send(signal.SIGHUP)
        daemon.wait_for_log('"reloaded"', after=seen)
        assert find_secrets_in_command_line(daemon.pid, secrets) == []
        pages = {path: daemon.get(path).text for path in ("/metrics", "/readyz", "/healthz")}
        assert daemon.stop() == 0
    log = daemon.log_text()
    assert '"msg": "converted"' in log
    assert find_secrets({"daemon log": log, **pages}, secrets) == []


def test_missing_conversions_gauge_shrinks_as_conversions_land_without_another_full_scan(
    harbor: RunningHarbor, admin: requests.Session, tmp_path: Path
) -> None:
    setup = set_up_serving(harbor, admin, tmp_path, ["gauge"], [estargz_policy("gauge", "gauge")])
    harbor.emulator.drop_deliveries = True
    push_image(harbor.url, "gauge/app", "v1", session=admin)
    push_image(harbor.url, "gauge/app", "v2", [[Entry("v2", data=b"two")]], session=admin)
    with setup.start() as daemon:
        daemon.wait_for_log('"scan finished"', timeout=20)
        assert "scan=full" in daemon.log_text()
        assert "missing=2" in daemon.log_text()
        done = daemon.wait_for_sample(
            "acceld_conversions_total", 2, format="estargz", result="success"
        )
        deadline = time.monotonic() + 10
        while sample(done, "acceld_missing_conversions", policy="gauge", format="estargz") != 0:
            assert time.monotonic() < deadline, "the gauge did not drop to 0"
            time.sleep(0.2)
            done = daemon.samples()
        assert daemon.log_text().count('msg="scan finished" scan=full') == 1
        assert daemon.stop() == 0
