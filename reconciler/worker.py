"""Work one leased key: reconcile it, then move it on in the queue by how that went.

The queue owns retries of a whole conversion (per-key backoff); a terminal error quarantines
the key with its reason. Shared by `acceld serve`'s worker threads and `acceld backfill`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

from reconciler.logs import log_context
from reconciler.metrics import Metrics
from reconciler.reconcile import Outcome, Reconciler, is_terminal, is_transient
from reconciler.state_store import Lease, StateStore

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
        log.info("event=reconcile_started attempts=%d", lease.attempts)
        try:
            outcome = reconciler.reconcile(key)
        except Exception as exc:  # every failure must leave the key in the queue
            return _failed(lease, exc, store, metrics, time.monotonic() - started)
        seconds = time.monotonic() - started
        if outcome.kind == "wait" and outcome.requeue_after is not None:
            kept = store.requeue_after(lease, outcome.requeue_after)
            log.info(
                "event=reconcile_wait reason=%r seconds=%.0f", outcome.reason, outcome.requeue_after
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
                "event=converted converted=%s tags=%s seconds=%.2f bytes_read=%d bytes_written=%d",
                result.converted.digest,
                ",".join(result.tags),
                seconds,
                result.bytes_downloaded,
                result.bytes_uploaded,
            )
        else:
            log.info("event=reconciled outcome=%s reason=%r", outcome.kind, outcome.reason)
        return Worked(lease, "done" if kept else "lost", outcome, seconds=seconds)


def _failed(
    lease: Lease, exc: Exception, store: StateStore, metrics: Metrics, seconds: float
) -> Worked:
    reason = f"{type(exc).__name__}: {exc}"
    fmt = lease.key.format
    if is_terminal(exc):
        kept = store.quarantine(lease, reason)
        metrics.conversion_finished(fmt, "terminal", seconds)
        log.error("event=quarantined reason=%r", reason)
        return Worked(lease, "quarantined" if kept else "lost", error=reason, seconds=seconds)
    if not is_transient(exc):
        log.exception("event=reconcile_bug error=%r", reason)
    else:
        log.warning("event=reconcile_failed attempts=%d error=%r", lease.attempts + 1, reason)
    kept = store.retry_later(lease, reason)
    metrics.queue_retried()
    metrics.conversion_finished(fmt, "error", seconds)
    return Worked(lease, "retry" if kept else "lost", error=reason, seconds=seconds)
