"""The controller: worker threads that lease a key, reconcile it and record how it went.

One loop serves `acceld serve` (workers run until the daemon stops) and `acceld backfill`
(workers run until its keys are settled). The queue owns retries of a whole conversion
(per-key backoff); a terminal error quarantines the key with its reason. On stop, workers
finish within a grace period and the leases still held are given back to the queue.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from reconciler.controller.quarantine_hints import quarantine_reason
from reconciler.controller.reconcile import Outcome, Reconciler, is_terminal, is_transient
from reconciler.observability.logs import log_context
from reconciler.observability.metrics import Metrics
from reconciler.state.store import KeyQueue, Lease, StateError
from reconciler.state.workqueue import WorkQueue

log = logging.getLogger(__name__)

STATE_RETRY_SECONDS = 1.0
"""How long a worker waits before it tries an unreachable state database again."""

Status = Literal["done", "wait", "retry", "quarantined", "lost"]


@dataclass(frozen=True)
class Worked:
    """How one leased key was worked and where the queue now has it."""

    lease: Lease
    status: Status
    """`lost` when the lease had expired and another worker owns the key now."""
    outcome: Outcome | None = None
    """What the reconcile step returned; None when it raised."""
    error: str = ""
    seconds: float = 0.0


class Controller:
    """`workers` threads over `queue`, each working one key at a time.

    `reconciler()` is asked for the current reconciler before each key, so a reloaded config
    applies from the next key on. `on_worked` sees every result; `on_idle` runs when a worker
    waited for a key in vain; `finished()` ends the loop early (backfill: all keys settled).
    """

    def __init__(
        self,
        queue: WorkQueue,
        keys: KeyQueue,
        metrics: Metrics,
        reconciler: Callable[[], Reconciler],
        *,
        workers: int,
        name: str = "worker",
        on_worked: Callable[[Worked], None] | None = None,
        on_idle: Callable[[], None] | None = None,
        finished: Callable[[], bool] = lambda: False,
    ) -> None:
        self._queue = queue
        self._keys = keys
        self._metrics = metrics
        self._reconciler = reconciler
        self._on_worked = on_worked
        self._on_idle = on_idle
        self._finished = finished
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._current: dict[str, Lease] = {}
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{n}", daemon=True)
            for n in range(max(1, workers))
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def alive(self) -> bool:
        """Whether every worker thread still runs."""
        return all(thread.is_alive() for thread in self._threads)

    def alive_count(self) -> int:
        return sum(thread.is_alive() for thread in self._threads)

    def join(self, timeout: float | None = None) -> bool:
        """Until every worker has left its loop (finished, or stopped), or `timeout` seconds
        have passed; whether they all have."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def stop(self, deadline: float) -> list[Lease]:
        """Stop taking keys, wait for running ones until `deadline` (monotonic), then give
        back the leases still held; those are returned."""
        self._stopping.set()
        self._queue.shut_down()
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            unfinished = list(self._current.values())
        for lease in unfinished:
            self._keys.release(lease)
            log.warning(
                "released unfinished key",
                extra={"key": str(lease.key), "reason": "grace period over"},
            )
        return unfinished

    def _loop(self) -> None:
        # Ctrl-C on a terminal reaches the whole process group. Blocked here, SIGINT goes to the
        # main thread only, and the converter children, which inherit this thread's mask, keep
        # converting: the command decides whether the work in hand finishes.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        name = threading.current_thread().name
        while not self._stopping.is_set() and not self._finished():
            # An unreachable state database (a restart, a failover) must not end the worker.
            try:
                self._work_next(name)
            except StateError as exc:
                log.warning("worker waits for the state database", extra={"error": str(exc)})
                self._stopping.wait(STATE_RETRY_SECONDS)

    def _work_next(self, name: str) -> None:
        lease = self._queue.get(timeout=1.0)
        if lease is None:
            if self._on_idle is not None:
                self._on_idle()
            return
        with self._lock:
            self._current[name] = lease
        try:
            worked = self.work(lease, self._reconciler())
        finally:
            with self._lock:
                self._current.pop(name, None)
        if self._on_worked is not None:
            self._on_worked(worked)

    def _recorded(self, record: Callable[[], bool]) -> bool:
        """`record()`, a move of a held key in the queue, retried while the state database
        cannot be reached: the key must not stay leased to this live process for ever. On stop
        it is given up (False); the lease then runs out and the key comes back."""
        while True:
            try:
                return record()
            except StateError as exc:
                if self._stopping.is_set():
                    return False
                log.warning("queue not updated yet; retrying", extra={"error": str(exc)})
                self._stopping.wait(STATE_RETRY_SECONDS)

    def work(self, lease: Lease, reconciler: Reconciler) -> Worked:
        """Reconcile one leased key and move it on in the queue by how that went."""
        key = lease.key
        started = time.monotonic()
        with log_context(reconcile_id=lease.reconcile_id, key=str(key)):
            log.info("reconcile started", extra={"attempts": lease.attempts})
            try:
                outcome = reconciler.reconcile(key)
            except Exception as exc:  # every failure must leave the key in the queue
                return self._failed(lease, exc, time.monotonic() - started)
            seconds = time.monotonic() - started
            if outcome.kind == "wait" and outcome.requeue_after is not None:
                wait_seconds = outcome.requeue_after
                kept = self._recorded(lambda: self._keys.requeue_after(lease, wait_seconds))
                log.info(
                    "waiting",
                    extra={"reason": outcome.reason, "seconds": round(outcome.requeue_after)},
                )
                return Worked(lease, "wait" if kept else "lost", outcome, seconds=seconds)
            kept = self._recorded(lambda: self._keys.done(lease))
            self._report(outcome, key.format, seconds)
            return Worked(lease, "done" if kept else "lost", outcome, seconds=seconds)

    def _report(self, outcome: Outcome, fmt: str, seconds: float) -> None:
        conversion = outcome.conversion
        if conversion is None:
            log.info("reconciled", extra={"outcome": outcome.kind, "reason": outcome.reason})
            return
        for manifest in conversion.manifests:
            for layer in manifest.layers:
                self._metrics.layer_cache_lookup(fmt, hit=layer.cached)
        for _ in outcome.retired:
            self._metrics.replaced(fmt)
        self._metrics.conversion_finished(
            fmt,
            "success",
            seconds,
            bytes_read=conversion.bytes_downloaded,
            bytes_written=conversion.bytes_uploaded,
        )
        log.info(
            "converted",
            extra={
                "converted": conversion.converted.digest,
                "tags": ",".join(conversion.tags),
                "seconds": round(seconds, 3),
                "bytes_read": conversion.bytes_downloaded,
                "bytes_written": conversion.bytes_uploaded,
            },
        )

    def _failed(self, lease: Lease, exc: Exception, seconds: float) -> Worked:
        reason = f"{type(exc).__name__}: {exc}"
        fmt = lease.key.format
        if is_terminal(exc):
            reason = quarantine_reason(exc)
            kept = self._recorded(lambda: self._keys.quarantine(lease, reason))
            self._metrics.conversion_finished(fmt, "terminal", seconds)
            log.error("quarantined", extra={"reason": reason})
            return Worked(lease, "quarantined" if kept else "lost", error=reason, seconds=seconds)
        if not is_transient(exc):
            log.exception("reconcile failed unexpectedly", extra={"error": reason})
        else:
            log.warning("reconcile failed", extra={"attempts": lease.attempts + 1, "error": reason})
        kept = self._recorded(lambda: self._keys.retry_later(lease, reason))
        self._metrics.queue_retried()
        self._metrics.conversion_finished(fmt, "error", seconds)
        return Worked(lease, "retry" if kept else "lost", error=reason, seconds=seconds)
