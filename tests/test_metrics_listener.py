"""`server.metrics_listen`: a second listener with only `GET /metrics`; the work_dir gauge; and
`GET /api/v1/health` as Harbor's Go service answered it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import requests
from prometheus_client import CollectorRegistry
from werkzeug.test import Client

from reconciler.observability.metrics import Metrics
from reconciler.service.http_app import HttpApp
from tests.support.acceld_process import registry_config
from tests.support.daemon_process import DaemonProcess, parse_samples, sample, wait_until
from tests.support.registry_server import RunningRegistry, free_port


def _app(checks: Mapping[str, bool]) -> Client:
    metrics = Metrics(CollectorRegistry(), formats=("estargz",))
    return Client(
        HttpApp(webhook_secret="s", enqueue=len, readiness=lambda: checks, metrics=metrics)
    )


def test_go_health_endpoint_answers_ok_while_the_store_answers() -> None:
    answer = _app({"state_store": True, "source_reachable": False}).get("/api/v1/health")
    assert answer.status_code == 200
    assert answer.get_data(as_text=True) == "Ok"


def test_go_health_endpoint_answers_500_err_unhealthy_without_the_store() -> None:
    answer = _app({"state_store": False}).get("/api/v1/health")
    assert answer.status_code == 500
    assert answer.get_json()["code"] == "ERR_UNHEALTHY"


def test_metrics_listen_serves_only_metrics_with_the_work_dir_gauges(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    metrics_listen = f"127.0.0.1:{free_port()}"
    config = registry_config(
        tmp_path,
        registry.host,
        [{"name": "all", "formats": ["estargz"]}],
        server={
            "listen": listen,
            "metrics_listen": metrics_listen,
            "webhook_secret_env": "HOOK",
        },
        work_dir_budget="1GiB",
    )
    with DaemonProcess(config, listen, env={"HOOK": "Bearer h"}) as daemon:
        daemon.wait_ready()
        url = f"http://{metrics_listen}"

        def scraped() -> str | None:
            text = requests.get(url + "/metrics", timeout=5).text
            return text if "acceld_work_dir_budget_bytes 1.073741824e+09" in text else None

        text = wait_until(scraped, 20, "the work_dir gauges on the metrics listener")
        samples = parse_samples(text)
        assert sample(samples, "process_resident_memory_bytes") > 0
        assert sample(samples, "acceld_work_dir_used_bytes") >= 0
        assert requests.post(url + "/webhooks/harbor", timeout=5).status_code == 404
        assert requests.get(url + "/readyz", timeout=5).status_code == 404
        assert requests.get(f"http://{listen}/api/v1/health", timeout=5).text == "Ok"
