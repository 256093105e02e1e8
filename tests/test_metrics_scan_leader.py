"""With several processes on one state database, only the scan leader exports the gauges of the
shared state, so a sum over instances counts the queue and the missing conversions once."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from reconciler.observability.metrics import Metrics
from tests.support.daemon_process import parse_samples, sample

SHARED = ("acceld_queue_depth", "acceld_missing_conversions")


def _exported(metrics: Metrics) -> set[str]:
    samples = parse_samples(generate_latest(metrics.collector).decode())
    return {name for name, _ in samples}


def test_only_the_scan_leader_exports_the_shared_gauges() -> None:
    metrics = Metrics(CollectorRegistry(), formats=["estargz"], policies=["web"])
    metrics.set_queue_depth(pending=7, in_progress=2, quarantined=1)
    metrics.set_missing_conversions({("web", "estargz"): 9})
    assert set(SHARED) <= _exported(metrics)

    metrics.set_leading(False)
    metrics.set_queue_depth(pending=5, in_progress=0, quarantined=0)
    metrics.set_missing_conversions({("web", "estargz"): 4})
    metrics.set_policies(["web", "api"])
    assert not set(SHARED) & _exported(metrics)
    samples = parse_samples(generate_latest(metrics.collector).decode())
    assert sample(samples, "acceld_scan_leader") == 0
    assert sample(samples, "acceld_conversions_total", format="estargz", result="success") == 0

    metrics.set_leading(True)
    samples = parse_samples(generate_latest(metrics.collector).decode())
    assert sample(samples, "acceld_scan_leader") == 1
    assert sample(samples, "acceld_queue_depth", state="pending") == 0
    for policy in ("web", "api"):
        key = (
            "acceld_missing_conversions",
            frozenset({"policy": policy, "format": "estargz"}.items()),
        )
        assert samples[key] == 0
