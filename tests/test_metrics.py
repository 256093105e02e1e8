from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from harbor_api.errors import NotFound, Unreachable
from harbor_api.transport import NO_RETRY, HttpSession, TlsOptions
from harbor_api.version import ACCELD_VERSION
from reconciler.observability.metrics import CONVERSION_RESULTS, WEBHOOK_RESULTS, Metrics
from tests.support.registry_server import RunningRegistry, free_port

FORMATS = ("estargz", "nydus")


def make_metrics(**kwargs: object) -> tuple[Metrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return Metrics(registry, formats=FORMATS, **kwargs), registry  # type: ignore[arg-type]


def test_every_bounded_label_value_exists_at_zero_before_first_use() -> None:
    _, registry = make_metrics(policies=("web", "batch"), endpoints=("manifest_get",))
    for fmt in FORMATS:
        for result in CONVERSION_RESULTS:
            labels = {"format": fmt, "result": result}
            assert registry.get_sample_value("acceld_conversions_total", labels) == 0
        for policy in ("web", "batch"):
            labels = {"policy": policy, "format": fmt}
            assert registry.get_sample_value("acceld_missing_conversions", labels) == 0
        assert registry.get_sample_value("acceld_layer_cache_hits_total", {"format": fmt}) == 0
    for result in WEBHOOK_RESULTS:
        labels = {"result": result}
        assert registry.get_sample_value("acceld_webhook_requests_total", labels) == 0
    for state in ("pending", "in_progress", "quarantined"):
        assert registry.get_sample_value("acceld_queue_depth", {"state": state}) == 0
    for kind in ("full", "incremental"):
        labels = {"kind": kind}
        assert registry.get_sample_value("acceld_scan_last_success_timestamp_seconds", labels) == 0
    labels = {"endpoint": "manifest_get"}
    assert registry.get_sample_value("acceld_source_request_duration_seconds_count", labels) == 0
    assert registry.get_sample_value("acceld_build_info", {"version": ACCELD_VERSION}) == 1


def test_scan_result_replaces_every_missing_conversions_value() -> None:
    metrics, registry = make_metrics(policies=("web", "batch"))
    metrics.set_missing_conversions({("web", "estargz"): 7, ("batch", "nydus"): 2})
    metrics.set_missing_conversions({("web", "estargz"): 3})
    sample = registry.get_sample_value
    assert sample("acceld_missing_conversions", {"policy": "web", "format": "estargz"}) == 3
    assert sample("acceld_missing_conversions", {"policy": "batch", "format": "nydus"}) == 0


def test_removed_policy_loses_its_series_on_reload() -> None:
    metrics, registry = make_metrics(policies=("web", "batch"))
    metrics.set_policies(("web", "ml"))
    sample = registry.get_sample_value
    assert sample("acceld_missing_conversions", {"policy": "batch", "format": "estargz"}) is None
    assert sample("acceld_missing_conversions", {"policy": "ml", "format": "nydus"}) == 0
    assert sample("acceld_missing_conversions", {"policy": "web", "format": "nydus"}) == 0


def test_conversion_counts_result_duration_and_bytes() -> None:
    metrics, registry = make_metrics()
    metrics.conversion_finished("estargz", "success", 42.0, bytes_read=1000, bytes_written=900)
    metrics.conversion_finished("estargz", "terminal", 0.5)
    sample = registry.get_sample_value
    assert sample("acceld_conversions_total", {"format": "estargz", "result": "success"}) == 1
    assert sample("acceld_conversions_total", {"format": "estargz", "result": "terminal"}) == 1
    assert sample("acceld_conversion_duration_seconds_count", {"format": "estargz"}) == 2
    assert sample("acceld_conversion_duration_seconds_sum", {"format": "estargz"}) == 42.5
    bucket = {"format": "estargz", "le": "1.0"}
    assert sample("acceld_conversion_duration_seconds_bucket", bucket) == 1
    bucket = {"format": "estargz", "le": "3600.0"}
    assert sample("acceld_conversion_duration_seconds_bucket", bucket) == 2
    read = {"format": "estargz", "direction": "read"}
    assert sample("acceld_conversion_bytes_total", read) == 1000
    written = {"format": "estargz", "direction": "written"}
    assert sample("acceld_conversion_bytes_total", written) == 900


def test_unknown_result_is_refused_rather_than_growing_a_label() -> None:
    metrics, registry = make_metrics()
    with pytest.raises(ValueError, match="'exploded' is not one of"):
        metrics.conversion_finished("estargz", "exploded", 1.0)
    with pytest.raises(ValueError, match="'maybe' is not one of"):
        metrics.webhook_answered("maybe")
    assert b"exploded" not in generate_latest(registry)


def test_scan_success_sets_timestamp_and_duration() -> None:
    metrics, registry = make_metrics()
    metrics.scan_succeeded("full", 1_700_000_000.0, 1_700_000_042.5)
    sample = registry.get_sample_value
    assert sample("acceld_scan_last_success_timestamp_seconds", {"kind": "full"}) == 1_700_000_042.5
    assert sample("acceld_scan_duration_seconds", {"kind": "full"}) == 42.5
    assert sample("acceld_scan_last_success_timestamp_seconds", {"kind": "incremental"}) == 0


def test_queue_depth_cache_and_retries() -> None:
    metrics, registry = make_metrics()
    metrics.set_queue_depth(pending=5, in_progress=2, quarantined=1)
    metrics.layer_cache_lookup("nydus", hit=True)
    metrics.layer_cache_lookup("nydus", hit=False)
    metrics.layer_cache_lookup("nydus", hit=False)
    metrics.queue_retried()
    sample = registry.get_sample_value
    assert sample("acceld_queue_depth", {"state": "pending"}) == 5
    assert sample("acceld_queue_depth", {"state": "in_progress"}) == 2
    assert sample("acceld_queue_depth", {"state": "quarantined"}) == 1
    assert sample("acceld_layer_cache_hits_total", {"format": "nydus"}) == 1
    assert sample("acceld_layer_cache_misses_total", {"format": "nydus"}) == 2
    assert sample("acceld_queue_retries_total") == 1


def test_request_observer_counts_real_registry_requests_by_endpoint_and_code(
    registry: RunningRegistry,
) -> None:
    metrics, prom = make_metrics()
    session = HttpSession(
        TlsOptions(plain_http=True), retry=NO_RETRY, observer=metrics.request_observer()
    )
    session.send("GET", f"{registry.url}/v2/", endpoint="ping")
    with pytest.raises(NotFound):
        session.send(
            "GET", f"{registry.url}/v2/metrics-test/manifests/none", endpoint="manifest_get"
        )
    with pytest.raises(Unreachable):
        session.send("GET", f"http://127.0.0.1:{free_port()}/v2/", endpoint="ping")
    sample = prom.get_sample_value
    assert sample("acceld_source_requests_total", {"endpoint": "ping", "code": "200"}) == 1
    assert sample("acceld_source_requests_total", {"endpoint": "manifest_get", "code": "404"}) == 1
    assert sample("acceld_source_requests_total", {"endpoint": "ping", "code": "error"}) == 1
    assert sample("acceld_source_request_duration_seconds_count", {"endpoint": "ping"}) == 2
    assert sample("acceld_source_request_duration_seconds_sum", {"endpoint": "ping"}) > 0


def test_exposition_never_carries_repository_tag_or_digest_labels() -> None:
    metrics, registry = make_metrics(policies=("web",))
    metrics.request_observer()("manifest_get", "200", 0.01)
    label_names: set[str] = set()
    for family in registry.collect():
        for sample in family.samples:
            label_names.update(sample.labels)
    allowed = {
        "policy",
        "format",
        "result",
        "endpoint",
        "code",
        "kind",
        "state",
        "direction",
        "reason",
        "table",
        "version",
        "le",
    }
    assert label_names <= allowed
    assert {"policy", "format", "result", "endpoint", "code"} <= label_names
