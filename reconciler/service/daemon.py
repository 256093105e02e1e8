"""`acceld serve`: the webhook server, the scheduled scans and the worker threads in one process.

Webhooks and scans only enqueue keys; worker threads lease keys from the persistent queue and
run the reconcile step. SIGTERM stops intake, lets running conversions finish within a grace
period and gives the rest back to the queue; SIGHUP reloads the config and keeps the old one if
the new one is broken. Under systemd the process speaks sd_notify (READY, STATUS, WATCHDOG,
RELOADING, STOPPING).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import select
import signal
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CollectorRegistry

from harbor_api.errors import AcceldError
from harbor_api.webhook_events import ArtifactEvent
from reconciler.config import Config, load_config
from reconciler.controller.controller import Controller, Worked
from reconciler.controller.intake import enqueue_events
from reconciler.controller.retention import StateRetention
from reconciler.controller.scan import FULL, INCREMENTAL
from reconciler.controller.scan_runner import ScanRunner, ScanStopped, StoppableSource
from reconciler.observability.disk_usage import disk_usage_bytes
from reconciler.service import sd_notify
from reconciler.service.http_app import HttpApp
from reconciler.service.http_server import HttpServer, ServerLimits, ServerTls
from reconciler.service.metrics_app import MetricsOnlyApp
from reconciler.service.prune import run_prune
from reconciler.service.runtime import Runtime, open_runtime, owner_id, reconfigured
from reconciler.state.leader_election import LeaderElection
from reconciler.state.workqueue import WorkQueue
from reconciler.state_config import lease_seconds, renew_seconds

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)

# The source counts as reachable while its last successful call is younger than this.
REACHABLE_WINDOW_SECONDS = 300.0
PROBE_INTERVAL_SECONDS = 60
SCAN_LEADER = "scan"
RETENTION_INTERVAL_SECONDS = 3600


def settings_needing_restart(running: Config, loaded: Config) -> list[str]:
    """The settings that differ between the two configs but that a reload cannot apply: the
    listener, the directories, the worker threads and the scan schedule are set up once."""
    pairs = {
        "state_dir": (running.state_dir, loaded.state_dir),
        "work_dir": (running.work_dir, loaded.work_dir),
        "work_dir_budget": (running.work_dir_budget_bytes, loaded.work_dir_budget_bytes),
        "workers": (running.workers, loaded.workers),
        "prune.interval": (running.prune.interval_seconds, loaded.prune.interval_seconds),
        "scan.full_interval/incremental_interval": (
            (running.scan.full_interval_seconds, running.scan.incremental_interval_seconds),
            (loaded.scan.full_interval_seconds, loaded.scan.incremental_interval_seconds),
        ),
        "server.listen": (
            (running.server.listen_host, running.server.listen_port),
            (loaded.server.listen_host, loaded.server.listen_port),
        ),
        "server.metrics_listen": (running.server.metrics_listen, loaded.server.metrics_listen),
        "server.tls_cert/tls_key": (
            (running.server.tls_cert, running.server.tls_key),
            (loaded.server.tls_cert, loaded.server.tls_key),
        ),
    }
    return [name for name, (before, after) in pairs.items() if before != after]


class Daemon:
    """`acceld serve`: the HTTP intake, the scheduled scans and the controller's workers.

    It owns the lifecycle: start, the main loop that pings the watchdog, SIGHUP (a reload
    rebuilds every config-dependent part through `reconfigured`; a broken config keeps the
    running one) and SIGTERM (intake stops, running conversions get `grace_seconds`, the rest
    goes back to the queue).
    """

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None,
        collector: CollectorRegistry | None = None,
        grace_seconds: float = 30.0,
    ) -> None:
        self.config_path = config_path
        self.grace_seconds = grace_seconds
        self.runtime: Runtime = open_runtime(config, collector)
        self.metrics = self.runtime.metrics
        renew = renew_seconds(config.state)
        self.queue = WorkQueue(
            self.runtime.store.queue,
            owner_id("serve"),
            self.runtime.clock,
            heartbeat_seconds=renew,
        )
        # Several hosts may share one state database: one of them at a time runs the scans.
        self.scan_leader = LeaderElection(
            self.runtime.store.leaders,
            SCAN_LEADER,
            self.queue.owner,
            lease_seconds=lease_seconds(config.state),
            renew_seconds=renew,
            on_lead=self._took_scan_lead,
        )
        self.scans = ScanRunner(
            self.runtime.store.scans,
            self.queue,
            self.metrics,
            safety_margin_seconds=config.scan.safety_margin_seconds,
            clock=self.runtime.clock,
            retention=self.runtime.store.retention,
        )
        self.controller = Controller(
            self.queue,
            self.runtime.store.queue,
            self.metrics,
            lambda: self.runtime.reconciler,
            workers=config.workers,
            on_worked=self._worked,
        )
        self._stopping = threading.Event()
        # Set from signal handlers, so plain flags and a pipe: an Event takes a lock that the
        # interrupted main thread may be holding, and the handler would wait on it forever.
        self._stop_requested = False
        self._reload_requested = False
        self._wake_reader, self._wake_writer = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._last_source_ok = 0.0
        self._scan_lock = threading.Lock()
        self.scheduler = BackgroundScheduler(timezone=UTC)
        self.app = self._http_app(config)
        tls = (
            ServerTls(config.server.tls_cert, config.server.tls_key)
            if config.server.tls_cert is not None and config.server.tls_key is not None
            else None
        )
        self.http = HttpServer(
            self._serve_http,
            host=config.server.listen_host,
            port=config.server.listen_port,
            tls=tls,
            limits=ServerLimits(
                max_request_body_bytes=max(config.server.max_body_bytes * 2, 1 << 20)
            ),
        )
        metrics_listen = config.server.metrics_listen
        self.metrics_http = (
            HttpServer(MetricsOnlyApp(self.metrics), host=metrics_listen[0], port=metrics_listen[1])
            if metrics_listen is not None
            else None
        )

    @property
    def config(self) -> Config:
        return self.runtime.config

    def _http_app(self, config: Config) -> HttpApp:
        secret = config.server.webhook_secret
        return HttpApp(
            webhook_secret=secret.reveal() if secret is not None else None,
            enqueue=self.enqueue_events,
            readiness=self.readiness,
            metrics=self.metrics,
            max_body_bytes=config.server.max_body_bytes,
        )

    def _serve_http(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        # Through whichever app is current: a reload replaces it (a rotated webhook secret).
        return self.app(environ, start_response)

    # --- intake -------------------------------------------------------------------------

    def enqueue_events(self, events: tuple[ArtifactEvent, ...]) -> int:
        runtime = self.runtime
        return enqueue_events(events, runtime.config.policies, self.queue, runtime.store.queue)

    def run_scan(self, kind: str) -> None:
        """A scheduled scan: enqueue what is missing. Never converts."""
        if not self.scan_leader.leading():
            log.info("scan left to the leader", extra={"scan": kind})
            return
        if not self._scan_lock.acquire(blocking=False):
            log.info("scan skipped", extra={"scan": kind, "reason": "another scan is running"})
            return
        try:
            self._scan(kind)
        except ScanStopped:
            log.info("scan stopped", extra={"scan": kind, "reason": "shutting down"})
        except AcceldError as exc:
            log.error("scan failed", extra={"scan": kind, "error": str(exc)})
        finally:
            self._scan_lock.release()

    def _scan(self, kind: str) -> None:
        runtime = self.runtime
        self.scans.run(
            StoppableSource(runtime.source, self._stopping),
            runtime.config.policies,
            runtime.referrer_formats,
            kind,
        )
        self._last_source_ok = time.time()

    def run_prune(self) -> None:
        """A scheduled prune (`prune.interval`), never beside a scan of this process."""
        with self._scan_lock:
            try:
                run_prune(self.runtime, unwanted=self.config.prune.unwanted)
            except AcceldError as exc:
                log.error("prune failed", extra={"error": str(exc)})

    def trim_state(self) -> None:
        """Drop layer-cache rows unused for `state.cache_ttl` and quarantined keys of
        originals that are gone."""
        runtime = self.runtime
        registry = runtime.source.registry
        try:
            StateRetention(
                runtime.store.retention,
                runtime.store.queue,
                lambda repository, digest: registry.head_manifest(repository, digest) is not None,
                self.metrics,
                runtime.clock,
                cache_ttl_seconds=runtime.config.cache_ttl_seconds,
            ).run()
        except AcceldError as exc:
            log.error("state retention failed", extra={"error": str(exc)})

    def _took_scan_lead(self) -> None:
        """Another host led the scans until now: catch up at once rather than at the next
        scheduled scan (at start the scheduled full scan does it)."""
        if self.scheduler.running:
            self.scheduler.add_job(
                self.run_scan, args=[INCREMENTAL], id="took-scan-lead", replace_existing=True
            )

    def probe_source(self) -> None:
        try:
            self.runtime.source.verify()
        except AcceldError as exc:
            log.warning("source unreachable", extra={"error": str(exc)})
        else:
            self._last_source_ok = time.time()

    # --- workers ------------------------------------------------------------------------

    def _worked(self, worked: Worked) -> None:
        if worked.status == "done":
            self.scans.settled(worked.lease.key, self.config.policies)

    # --- health -------------------------------------------------------------------------

    def readiness(self) -> Mapping[str, bool]:
        try:
            self.runtime.store.queue.counts()
            store_ok = True
        except AcceldError:
            store_ok = False
        return {
            "state_store": store_ok,
            "source_reachable": time.time() - self._last_source_ok < REACHABLE_WINDOW_SECONDS,
            "scheduler": bool(self.scheduler.running),
            "workers": self.controller.alive(),
        }

    def healthy(self) -> bool:
        return bool(self.scheduler.running) and self.controller.alive()

    def _refresh_status(self) -> None:
        self.metrics.set_leading(self.scan_leader.leading())
        counts = self.runtime.store.queue.counts()
        self.metrics.set_queue_depth(
            pending=counts.pending, in_progress=counts.in_progress, quarantined=counts.quarantined
        )
        sd_notify.status(
            f"queue: {counts.pending} pending, {counts.in_progress} in progress, "
            f"{counts.quarantined} quarantined"
        )
        self.metrics.set_work_dir_usage(
            disk_usage_bytes(self.config.work_dir), self.config.work_dir_budget_bytes
        )

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self.queue.start()
        self.http.start()
        if self.metrics_http is not None:
            self.metrics_http.start()
        scan_config = self.config.scan
        now = datetime.now(UTC)
        self._add_scan_job(FULL, scan_config.full_interval_seconds, now, 60)
        self._add_scan_job(
            INCREMENTAL,
            scan_config.incremental_interval_seconds,
            now + timedelta(seconds=scan_config.incremental_interval_seconds),
            10,
        )
        if self.config.prune.interval_seconds is not None:
            interval = self.config.prune.interval_seconds
            self.scheduler.add_job(
                self.run_prune,
                "interval",
                id="prune",
                seconds=interval,
                next_run_time=now + timedelta(seconds=interval),
                max_instances=1,
                coalesce=True,
                jitter=max(1, interval // 20),
            )
        self.scheduler.add_job(
            self.trim_state,
            "interval",
            id="trim-state",
            seconds=RETENTION_INTERVAL_SECONDS,
            next_run_time=now + timedelta(seconds=RETENTION_INTERVAL_SECONDS / 60),
            max_instances=1,
            coalesce=True,
        )
        self.scheduler.add_job(
            self.probe_source,
            "interval",
            id="probe",
            seconds=PROBE_INTERVAL_SECONDS,
            next_run_time=now,
            max_instances=1,
            coalesce=True,
        )
        self.scan_leader.start()
        self.scheduler.start()
        self.controller.start()
        log.info("serving", extra={"url": self.http.url, "workers": self.config.workers})
        sd_notify.ready("serving")

    def _add_scan_job(self, kind: str, interval: int, first_run: datetime, slack: int) -> None:
        """A scan every `interval` s, never two at once, a missed run coalesced; up to `slack` s
        of jitter (a twentieth of the interval at most) so that many daemons do not scan Harbor
        in step."""
        self.scheduler.add_job(
            self.run_scan,
            "interval",
            args=[kind],
            id=f"{kind}-scan",
            seconds=interval,
            next_run_time=first_run,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(slack, interval // 2),
            jitter=min(slack, max(1, interval // 20)),
        )

    def request_stop(self) -> None:
        self._stop_requested = True
        self._wake()

    def request_reload(self) -> None:
        self._reload_requested = True
        self._wake()

    def _wake(self) -> None:
        # A full pipe holds wake-ups the loop has not read yet: it wakes anyway.
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_writer, b"\0")

    def _sleep(self, seconds: float) -> None:
        """Until `seconds` pass or a stop or reload is requested."""
        readable, _, _ = select.select([self._wake_reader], [], [], seconds)
        if readable:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_reader, 4096)

    def install_signal_handlers(self) -> None:
        def on_term(signum: int, frame: FrameType | None) -> None:
            self.request_stop()

        def on_hup(signum: int, frame: FrameType | None) -> None:
            self.request_reload()

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, on_hup)

    def run(self) -> int:
        """The main loop until SIGTERM; returns the exit status."""
        interval = sd_notify.watchdog_interval()
        tick = min(5.0, interval / 2) if interval else 5.0
        while not self._stop_requested:
            self._sleep(tick * random.uniform(0.9, 1.0))
            if self._stop_requested:
                break
            if self._reload_requested:
                self._reload_requested = False
                self.reload()
            self._refresh_status()
            if self.healthy():
                sd_notify.watchdog()
            else:
                log.error(
                    "unhealthy: no watchdog ping",
                    extra={
                        "scheduler_running": self.scheduler.running,
                        "workers_alive": self.controller.alive_count(),
                    },
                )
        self.shutdown()
        return 0

    def reload(self) -> None:
        sd_notify.reloading()
        try:
            config = load_config(self.config_path)
        except AcceldError as exc:
            log.error("reload failed; keeping the running config", extra={"error": str(exc)})
            sd_notify.ready("reload failed; running with the previous config")
            return
        ignored = settings_needing_restart(self.config, config)
        if ignored:
            log.warning(
                "reload cannot change these settings; restart to apply them",
                extra={"settings": ",".join(ignored)},
            )
        self.runtime = reconfigured(self.runtime, config)
        self.app = self._http_app(config)
        self.metrics.set_policies(p.name for p in config.policies if p.enabled)
        log.info("reloaded", extra={"policies": len(config.policies)})
        sd_notify.ready("serving")

    def shutdown(self) -> None:
        sd_notify.stopping()
        log.info("stopping", extra={"grace_seconds": self.grace_seconds})
        self._stopping.set()
        self.http.stop()
        if self.metrics_http is not None:
            self.metrics_http.stop()
        self.scheduler.shutdown(wait=False)
        self.scan_leader.stop()
        deadline = time.monotonic() + self.grace_seconds
        unfinished = self.controller.stop(deadline)
        scan_over = self._scan_lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
        if scan_over and not unfinished:
            self.runtime.close()
        else:
            # A thread still using the store would fail on a closed one; the exit closes it.
            log.warning("state store left open for the exit", extra={"scan_running": not scan_over})
        log.info("stopped")
