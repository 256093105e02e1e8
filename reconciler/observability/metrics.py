"""Every Prometheus metric acceld exports, owned by one `Metrics` object.

Labels stay bounded (policy, format, result, endpoint, code, kind, state, direction, reason,
table): a repository, tag or digest never becomes a label value, those go in the logs. Every
label value known at start is created up front so `rate()` and the alerts see a zero, not an
absent series.

Several hosts may share one state database. Counters and per-process gauges stay per process
(Prometheus adds `instance`); the gauges of the shared state (queue depth, missing conversions)
are exported by the scan leader only (`acceld_scan_leader` 1), so summing over instances counts
them once; the other processes export no series of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector

from harbor_api.transport import RequestObserver
from harbor_api.version import ACCELD_VERSION
from policies.prune import REASONS as PRUNE_REASONS

SCAN_KINDS = ("full", "incremental")
SCAN_ERROR_KINDS = ("project", "repository", "image")
"""The parts of a source a scan can skip: a project's repository list, a repository's image
list, one image."""
CONVERSION_RESULTS = ("success", "error", "terminal")
BYTE_DIRECTIONS = ("read", "written")
QUEUE_STATES = ("pending", "in_progress", "quarantined")
WEBHOOK_RESULTS = ("accepted", "ignored", "unauthorized", "invalid", "unavailable")
STATE_TABLES = ("layer_cache", "classification", "queue")
"""The state tables retention trims."""

# A layer conversion takes from about a second (a small layer) to an hour (many GB at level 9).
CONVERSION_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
SOURCE_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The metric families of one acceld process, registered in `collector`.

    `formats` and `policies` are the values known at start (from the configuration);
    `endpoints` the source API endpoints whose latency series should exist before the first
    request. A value outside them is still accepted: it just appears on first use.
    """

    def __init__(
        self,
        collector: CollectorRegistry,
        *,
        formats: Iterable[str],
        policies: Iterable[str] = (),
        endpoints: Iterable[str] = (),
    ) -> None:
        self.collector = collector
        self._formats = tuple(formats)
        self._policies: tuple[str, ...] = ()
        self._leading = True
        self.scan_leader = Gauge(
            "acceld_scan_leader",
            "1 while this process leads the scans and exports the shared gauges (queue depth, "
            "missing conversions); 0 while another process does.",
            registry=collector,
        )
        self.scan_leader.set(1)
        self.missing_conversions = Gauge(
            "acceld_missing_conversions",
            "Accelerated copies the policies want that do not exist yet, as of the last scan.",
            ["policy", "format"],
            registry=collector,
        )
        self.scan_last_success = Gauge(
            "acceld_scan_last_success_timestamp_seconds",
            "Unix time at which the last scan of this kind finished without error.",
            ["kind"],
            registry=collector,
        )
        self.scan_duration = Gauge(
            "acceld_scan_duration_seconds",
            "How long the last successful scan of this kind took.",
            ["kind"],
            registry=collector,
        )
        self.scan_errors = Counter(
            "acceld_scan_errors",
            "Parts of the source scans skipped because they could not be read, by kind of part.",
            ["kind"],
            registry=collector,
        )
        self.conversions = Counter(
            "acceld_conversions_total",
            "Conversions of one original image to one format, by result.",
            ["format", "result"],
            registry=collector,
        )
        self.conversion_duration = Histogram(
            "acceld_conversion_duration_seconds",
            "Wall time of one conversion, whatever its result.",
            ["format"],
            buckets=CONVERSION_BUCKETS,
            registry=collector,
        )
        self.conversion_bytes = Counter(
            "acceld_conversion_bytes_total",
            "Layer bytes read from and written to the registry by conversions.",
            ["format", "direction"],
            registry=collector,
        )
        self.layer_cache_hits = Counter(
            "acceld_layer_cache_hits_total",
            "Layers whose converted copy was already known, so they were not converted again.",
            ["format"],
            registry=collector,
        )
        self.layer_cache_misses = Counter(
            "acceld_layer_cache_misses_total",
            "Layers that had to be converted.",
            ["format"],
            registry=collector,
        )
        self.queue_depth = Gauge(
            "acceld_queue_depth",
            "Keys in the work queue, by state.",
            ["state"],
            registry=collector,
        )
        self.queue_retries = Counter(
            "acceld_queue_retries_total",
            "Keys put back in the queue with backoff after a transient failure.",
            registry=collector,
        )
        self.webhook_requests = Counter(
            "acceld_webhook_requests_total",
            "Webhook requests received, by how they were answered.",
            ["result"],
            registry=collector,
        )
        self.source_requests = Counter(
            "acceld_source_requests_total",
            "Requests to Harbor and its registry, by endpoint and status (code error: no answer).",
            ["endpoint", "code"],
            registry=collector,
        )
        self.source_request_duration = Histogram(
            "acceld_source_request_duration_seconds",
            "Latency of requests to Harbor and its registry.",
            ["endpoint"],
            buckets=SOURCE_REQUEST_BUCKETS,
            registry=collector,
        )
        self.pruned_copies = Counter(
            "acceld_pruned_copies",
            "Accelerated copies prune deleted, by reason (orphan, unwanted, leftover; stale: "
            "only a fallback-index entry was left).",
            ["reason"],
            registry=collector,
        )
        self.replaced_copies = Counter(
            "acceld_replaced_copies",
            "Outdated accelerated copies deleted after their replacement was pushed.",
            ["format"],
            registry=collector,
        )
        self.state_rows_trimmed = Counter(
            "acceld_state_rows_trimmed",
            "Rows the state retention deleted, by table.",
            ["table"],
            registry=collector,
        )
        self.build_info = Info("acceld_build", "The acceld version running.", registry=collector)
        self.build_info.info({"version": ACCELD_VERSION})
        self.work_dir_used = Gauge(
            "acceld_work_dir_used_bytes",
            "Bytes the files under work_dir take on disk (layers spooled while converting).",
            registry=collector,
        )
        self.work_dir_budget = Gauge(
            "acceld_work_dir_budget_bytes",
            "How much of work_dir conversions may use at once (work_dir_budget).",
            registry=collector,
        )
        # process_resident_memory_bytes, process_cpu_seconds_total, process_open_fds,
        # process_start_time_seconds, … of this process.
        ProcessCollector(registry=collector)
        self._create_label_values(tuple(endpoints))
        self.set_policies(policies)

    def _create_label_values(self, endpoints: tuple[str, ...]) -> None:
        for kind in SCAN_KINDS:
            self.scan_last_success.labels(kind=kind)
            self.scan_duration.labels(kind=kind)
        for part in SCAN_ERROR_KINDS:
            self.scan_errors.labels(kind=part)
        for fmt in self._formats:
            for result in CONVERSION_RESULTS:
                self.conversions.labels(format=fmt, result=result)
            self.conversion_duration.labels(format=fmt)
            for direction in BYTE_DIRECTIONS:
                self.conversion_bytes.labels(format=fmt, direction=direction)
            self.layer_cache_hits.labels(format=fmt)
            self.layer_cache_misses.labels(format=fmt)
        self._create_queue_depth()
        for reason in PRUNE_REASONS:
            self.pruned_copies.labels(reason=reason)
        for fmt in self._formats:
            self.replaced_copies.labels(format=fmt)
        for table in STATE_TABLES:
            self.state_rows_trimmed.labels(table=table)
        for result in WEBHOOK_RESULTS:
            self.webhook_requests.labels(result=result)
        for endpoint in endpoints:
            self.source_request_duration.labels(endpoint=endpoint)

    def _create_queue_depth(self) -> None:
        for state in QUEUE_STATES:
            self.queue_depth.labels(state=state)

    def set_policies(self, policies: Iterable[str]) -> None:
        """Start the missing-conversions series of these policies at 0; drop removed ones.

        Called at start and after a configuration reload.
        """
        names = tuple(policies)
        for policy in self._policies:
            if policy not in names and self._leading:
                for fmt in self._formats:
                    self.missing_conversions.remove(policy, fmt)
        self._policies = names
        if self._leading:
            for policy in names:
                for fmt in self._formats:
                    self.missing_conversions.labels(policy=policy, format=fmt)

    def set_leading(self, leading: bool) -> None:
        """Whether this process leads the scans: only the leader exports the shared gauges.

        A process that loses the lead drops their series; one that takes it starts them at 0
        until its next scan and queue count set them.
        """
        if leading == self._leading:
            return
        self._leading = leading
        self.scan_leader.set(1 if leading else 0)
        if leading:
            self._create_queue_depth()
            self.set_policies(self._policies)
        else:
            self.queue_depth.clear()
            self.missing_conversions.clear()

    def set_missing_conversions(self, missing: Mapping[tuple[str, str], int]) -> None:
        """The result of a scan: `(policy, format) -> count`; pairs not named are now 0."""
        if not self._leading:
            return
        for policy in self._policies:
            for fmt in self._formats:
                self.missing_conversions.labels(policy=policy, format=fmt).set(0)
        for (policy, fmt), count in missing.items():
            self.missing_conversions.labels(policy=policy, format=fmt).set(count)

    def scan_succeeded(self, kind: str, started_at: float, finished_at: float) -> None:
        """A scan of `kind` ran from `started_at` to `finished_at` (Unix seconds) without error."""
        self.scan_last_success.labels(kind=kind).set(finished_at)
        self.scan_duration.labels(kind=kind).set(max(0.0, finished_at - started_at))

    def scan_skipped(self, kinds: Iterable[str]) -> None:
        """A scan skipped one part of each kind listed (a kind repeats per part)."""
        for kind in kinds:
            self.scan_errors.labels(kind=kind).inc()

    def conversion_finished(
        self,
        fmt: str,
        result: str,
        seconds: float,
        *,
        bytes_read: int = 0,
        bytes_written: int = 0,
    ) -> None:
        """One conversion of an original to `fmt` ended with `result` (see CONVERSION_RESULTS)."""
        if result not in CONVERSION_RESULTS:
            raise ValueError(f"conversion result {result!r} is not one of {CONVERSION_RESULTS}")
        self.conversions.labels(format=fmt, result=result).inc()
        self.conversion_duration.labels(format=fmt).observe(seconds)
        self.conversion_bytes.labels(format=fmt, direction="read").inc(bytes_read)
        self.conversion_bytes.labels(format=fmt, direction="written").inc(bytes_written)

    def layer_cache_lookup(self, fmt: str, *, hit: bool) -> None:
        (self.layer_cache_hits if hit else self.layer_cache_misses).labels(format=fmt).inc()

    def set_queue_depth(self, *, pending: int, in_progress: int, quarantined: int) -> None:
        if not self._leading:
            return
        self.queue_depth.labels(state="pending").set(pending)
        self.queue_depth.labels(state="in_progress").set(in_progress)
        self.queue_depth.labels(state="quarantined").set(quarantined)

    def pruned(self, reason: str) -> None:
        """Prune deleted one copy (or, `stale`, one fallback-index entry) for `reason`."""
        self.pruned_copies.labels(reason=reason).inc()

    def replaced(self, fmt: str) -> None:
        """An outdated copy in `fmt` was deleted after its replacement was pushed."""
        self.replaced_copies.labels(format=fmt).inc()

    def trimmed(self, rows: Mapping[str, int]) -> None:
        """The state retention deleted `rows[table]` rows of each table."""
        for table, count in rows.items():
            self.state_rows_trimmed.labels(table=table).inc(count)

    def set_work_dir_usage(self, used: int, budget: int) -> None:
        self.work_dir_used.set(used)
        self.work_dir_budget.set(budget)

    def queue_retried(self) -> None:
        self.queue_retries.inc()

    def webhook_answered(self, result: str) -> None:
        if result not in WEBHOOK_RESULTS:
            raise ValueError(f"webhook result {result!r} is not one of {WEBHOOK_RESULTS}")
        self.webhook_requests.labels(result=result).inc()

    def request_observer(self) -> RequestObserver:
        """The `(endpoint, code, seconds)` callback the `harbor_api` clients take."""

        def observe(endpoint: str, code: str, seconds: float) -> None:
            self.source_requests.labels(endpoint=endpoint, code=code).inc()
            self.source_request_duration.labels(endpoint=endpoint).observe(seconds)

        return observe
