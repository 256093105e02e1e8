"""Work one leased key: reconcile it, then move it on in the queue by how that went.

The queue owns retries of a whole conversion (per-key backoff); a terminal error quarantines
the key with its reason. Shared by `acceld serve`'s worker threads and `acceld backfill`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

from reconciler.controller.reconcile import Outcome, Reconciler, is_terminal, is_transient
from reconciler.observability.logs import log_context
from reconciler.observability.metrics import Metrics
from reconciler.state.store import Lease, StateStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Worked:
    lease: Lease
    result: Literal["done", "wait", "retry", "quarantined", "lost"]
    outcome: Outcome | None = None
    error: str = ""
    seconds: float = 0.0


def work(lease: Lease, reconciler: Reconciler, store: StateStore, metrics: Metrics) -> Worked:
    key = lease.key
    started = time.monotonic()
    with log_context(reconcile_id=lease.reconcile_id, key=str(key)):
        log.info("reconcile started", extra={"attempts": lease.attempts})
        try:
            outcome = reconciler.reconcile(key)
        except Exception as exc:  # every failure must leave the key in the queue
            return _failed(lease, exc, store, metrics, time.monotonic() - started)
        seconds = time.monotonic() - started
        if outcome.kind == "wait" and outcome.requeue_after is not None:
            kept = store.requeue_after(lease, outcome.requeue_after)
            log.info(
                "waiting",
                extra={"reason": outcome.reason, "seconds": round(outcome.requeue_after)},
            )
            return Worked(lease, "wait" if kept else "lost", outcome, seconds=seconds)
        kept = store.done(lease)
        if outcome.result is not None:
            result = outcome.result
            for manifest in result.manifests:
                for layer in manifest.layers:
                    metrics.layer_cache_lookup(key.format, hit=layer.cached)
            metrics.conversion_finished(
                key.format,
                "success",
                seconds,
                bytes_read=result.bytes_downloaded,
                bytes_written=result.bytes_uploaded,
            )
            log.info(
                "converted",
                extra={
                    "converted": result.converted.digest,
                    "tags": ",".join(result.tags),
                    "seconds": round(seconds, 3),
                    "bytes_read": result.bytes_downloaded,
                    "bytes_written": result.bytes_uploaded,
                },
            )
        else:
            log.info("reconciled", extra={"outcome": outcome.kind, "reason": outcome.reason})
        return Worked(lease, "done" if kept else "lost", outcome, seconds=seconds)


def _failed(
    lease: Lease, exc: Exception, store: StateStore, metrics: Metrics, seconds: float
) -> Worked:
    reason = f"{type(exc).__name__}: {exc}"
    fmt = lease.key.format
    if is_terminal(exc):
        kept = store.quarantine(lease, reason)
        metrics.conversion_finished(fmt, "terminal", seconds)
        log.error("quarantined", extra={"reason": reason})
        return Worked(lease, "quarantined" if kept else "lost", error=reason, seconds=seconds)
    if not is_transient(exc):
        log.exception("reconcile failed unexpectedly", extra={"error": reason})
    else:
        log.warning("reconcile failed", extra={"attempts": lease.attempts + 1, "error": reason})
    kept = store.retry_later(lease, reason)
    metrics.queue_retried()
    metrics.conversion_finished(fmt, "error", seconds)
    return Worked(lease, "retry" if kept else "lost", error=reason, seconds=seconds)
