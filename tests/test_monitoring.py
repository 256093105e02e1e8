"""Alert rules and dashboard: promtool's checks and unit tests, a lint of a real /metrics
scrape, and every metric they query present in that scrape."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from reconciler.observability.metrics import Metrics
from reconciler.service.http_app import HttpApp
from reconciler.service.http_server import HttpServer

MONITORING = Path(__file__).resolve().parents[1] / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
ALERTS = MONITORING / "alerts.yml"
METRIC_NAME = re.compile(r"\bacceld_[a-z_]+")

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool is not installed (Debian package prometheus)"
)


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=MONITORING,
    )


@pytest.fixture(scope="module")
def scrape() -> Iterator[str]:
    """/metrics of the real app behind the real server, after some of everything happened."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, formats=("estargz",), policies=("library",), endpoints=("ping",))
    metrics.conversion_finished("estargz", "success", 12.0, bytes_read=10, bytes_written=9)
    metrics.layer_cache_lookup("estargz", hit=True)
    metrics.scan_succeeded("full", 100.0, 160.0)
    metrics.request_observer()("artifacts_list", "200", 0.02)
    metrics.queue_retried()
    app = HttpApp(webhook_secret="s", enqueue=len, readiness=dict, metrics=metrics)
    server = HttpServer(app, host="127.0.0.1", port=0)
    server.start()
    try:
        answer = requests.get(server.url + "/metrics", timeout=5)
        answer.raise_for_status()
        yield answer.text
    finally:
        server.stop(grace_seconds=1)


def scraped_names(text: str) -> set[str]:
    return {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dashboard["panels"]:
        found += [target["expr"] for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found.append(variable["definition"])
    return found


def alert_expressions() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


@needs_promtool
def test_alert_rules_pass_promtool_check() -> None:
    done = promtool("check", "rules", ALERTS.name)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    done = promtool("test", "rules", "alerts_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    tests = yaml.safe_load((MONITORING / "alerts_test.yml").read_text())["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in tests:
        for case in test["alert_rule_test"]:
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    alerts = {
        rule["alert"]
        for group in yaml.safe_load(ALERTS.read_text())["groups"]
        for rule in group["rules"]
    }
    assert firing == alerts
    assert quiet == alerts


@needs_promtool
def test_real_scrape_passes_promtool_check_metrics(scrape: str) -> None:
    done = promtool("check", "metrics", stdin=scrape)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout + done.stderr == ""


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_queried_metric_exists_in_a_real_scrape(scrape: str, source: str) -> None:
    expressions = dashboard_expressions() if source == "dashboard" else alert_expressions()
    queried = {name for expr in expressions for name in METRIC_NAME.findall(expr)}
    assert len(queried) >= 6
    assert queried - scraped_names(scrape) == set()


def test_dashboard_is_a_grafana_dashboard_on_a_prometheus_datasource_variable() -> None:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    assert {"uid", "title", "panels", "schemaVersion", "templating", "time"} <= dashboard.keys()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys()
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


def test_dashboard_shows_what_operators_watch() -> None:
    queried = " ".join(dashboard_expressions())
    for metric in (
        "acceld_missing_conversions",
        "acceld_conversions_total",
        "acceld_conversion_duration_seconds_bucket",
        "acceld_queue_depth",
        "acceld_webhook_requests_total",
        "acceld_source_requests_total",
        "acceld_source_request_duration_seconds_bucket",
        "acceld_scan_errors_total",
    ):
        assert metric in queried


def test_an_alert_fires_when_acceld_is_down_or_its_metrics_are_absent() -> None:
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    down = [rule for rule in rules if "absent(" in rule["expr"] and "up{" in rule["expr"]]
    assert [rule["alert"] for rule in down] == ["AcceldDown"]
    tests = yaml.safe_load((MONITORING / "alerts_test.yml").read_text())["tests"]
    firing = [
        case
        for test in tests
        for case in test["alert_rule_test"]
        if case["alertname"] == "AcceldDown" and case["exp_alerts"]
    ]
    # One case for a failing scrape (labels of the target), one for no metrics at all.
    assert sorted(len(case["exp_alerts"][0]["exp_labels"]) for case in firing) == [1, 3]


def test_the_scrape_has_process_metrics_and_the_work_dir_gauges(scrape: str) -> None:
    names = scraped_names(scrape)
    for name in (
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
        "acceld_work_dir_used_bytes",
        "acceld_work_dir_budget_bytes",
    ):
        assert name in names


def test_dashboard_shows_the_process_and_its_disk() -> None:
    queried = " ".join(dashboard_expressions())
    for metric in (
        "up{",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "acceld_work_dir_used_bytes",
        "acceld_work_dir_budget_bytes",
    ):
        assert metric in queried


def test_dashboard_shows_prunes_replacements_and_trimmed_state_rows() -> None:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    lifecycle = {
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if re.search(
            r"acceld_(pruned_copies|replaced_copies|state_rows_trimmed)_total", target["expr"]
        )
    }
    assert len(lifecycle) == 3
    assert all('instance=~"$instance"' in expr for expr in lifecycle)
    (replaced,) = [expr for expr in lifecycle if "replaced" in expr]
    assert 'format=~"$format"' in replaced


def test_dashboard_counts_the_shared_gauges_once_whatever_the_number_of_instances() -> None:
    """Only the scan leader exports the queue depth and the missing conversions: their panels
    take the maximum over every instance (not a sum, not one chosen instance), and a panel
    shows which instance leads."""
    expressions = dashboard_expressions()
    shared = [e for e in expressions if re.search(r"acceld_(queue_depth|missing_conversions)", e)]
    assert len(shared) == 2
    assert all(e.startswith("max by (") and "$instance" not in e for e in shared)
    assert 'acceld_scan_leader{instance=~"$instance"}' in expressions
    per_instance = [e for e in expressions if "rate(acceld_conversions_total" in e]
    assert per_instance
    assert all('instance=~"$instance"' in e for e in per_instance)
