"""Running a scan with its bookkeeping, the same for `serve`'s schedule and for `backfill`.

The walk itself is `scan.scan`; around it this module picks the window (an incremental scan
reaches back to the start of the last successful one, minus a safety margin; without one it
becomes a full scan), records the scan marks, enqueues each missing key with the fingerprint of
the policies that want it, keeps the missing tracker and sets the scan metrics.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta

from policies.desired import Original
from policies.diff import PlanItem
from policies.model import Policy
from reconciler.controller.missing_tracker import MissingTracker
from reconciler.controller.observed_formats import ReferrerFormats
from reconciler.controller.policy_fingerprint import policy_fingerprint
from reconciler.controller.scan import FULL, INCREMENTAL, ScanReport, scan
from reconciler.controller.sources import Candidate, Source, UnreadableImage
from reconciler.observability.metrics import Metrics
from reconciler.state.clock import Clock
from reconciler.state.keys import Key
from reconciler.state.store import Retention, ScanMarks
from reconciler.state.workqueue import WorkQueue

log = logging.getLogger(__name__)


class ScanStopped(Exception):
    """The process is stopping: a running scan gives up at its next step."""


class StoppableSource:
    """`source` as a scan walks it, giving up (ScanStopped) at the next project, repository
    or candidate once `stopping` is set: otherwise SIGTERM would wait for a whole scan, which
    takes minutes on a large Harbor, because the scheduler's threads are joined at exit."""

    def __init__(self, source: Source, stopping: threading.Event) -> None:
        self.registry = source.registry
        self._source = source
        self._stopping = stopping

    def _step(self) -> None:
        if self._stopping.is_set():
            raise ScanStopped

    def verify(self) -> None:
        self._source.verify()

    def projects(self) -> Iterator[str]:
        for project in self._source.projects():
            self._step()
            yield project

    def repositories(self, project: str) -> Iterator[str]:
        for repository in self._source.repositories(project):
            self._step()
            yield repository

    def candidates(
        self, repository: str, pushed_since: datetime | None
    ) -> Iterator[Candidate | UnreadableImage]:
        for candidate in self._source.candidates(repository, pushed_since):
            self._step()
            yield candidate

    def describe(self, repository: str, digest: str) -> Original | None:
        return self._source.describe(repository, digest)


def plan_key(item: PlanItem) -> Key:
    return Key(item.repository, item.digest, item.format)


class ScanRunner:
    """Scans with marks, enqueueing, the missing tracker and metrics."""

    def __init__(
        self,
        marks: ScanMarks,
        queue: WorkQueue,
        metrics: Metrics,
        *,
        safety_margin_seconds: float,
        missing: MissingTracker | None = None,
        clock: Clock,
        retention: Retention | None = None,
    ) -> None:
        self._marks = marks
        self._queue = queue
        self._metrics = metrics
        self._margin = timedelta(seconds=safety_margin_seconds)
        self.missing = missing if missing is not None else MissingTracker()
        self._clock = clock
        self._retention = retention

    def window(self, kind: str) -> tuple[str, datetime | None]:
        """The kind of scan to run and the push time it starts from (None: everything)."""
        if kind == FULL:
            return FULL, None
        marks = [m for m in (self._marks.last_scan(FULL), self._marks.last_scan(INCREMENTAL)) if m]
        starts = [m.last_success_started_at for m in marks if m.last_success_started_at]
        if not starts:
            return FULL, None
        return INCREMENTAL, datetime.fromtimestamp(max(starts), UTC) - self._margin

    def run(
        self,
        source: Source,
        policies: Sequence[Policy],
        referrer_formats: ReferrerFormats,
        kind: str,
        *,
        enqueue: bool = True,
    ) -> ScanReport:
        """Scan, enqueueing each missing key as it is found unless `enqueue` is False."""
        kind, since = self.window(kind)
        self._marks.scan_started(kind, self._clock.now())

        def found(item: PlanItem) -> None:
            self.enqueue((item,), policies)

        report = scan(
            source,
            policies,
            referrer_formats,
            kind=kind,
            pushed_since=since,
            on_missing=found if enqueue else None,
            clock=self._clock,
        )
        self._marks.scan_finished(
            kind,
            report.started_at,
            report.finished_at,
            report.plan.missing_by_policy_format(policies),
            report.errors,
        )
        self._trim_classifications(referrer_formats, report)
        if kind == FULL:
            self.missing.replace(report.plan.items)
        else:
            self.missing.add(report.plan.items)
        self._metrics.set_missing_conversions(self.missing.counts(policies))
        self._metrics.scan_skipped(error.kind for error in report.errors)
        self._metrics.scan_succeeded(kind, report.started_at, report.finished_at)
        return report

    def _trim_classifications(self, referrer_formats: ReferrerFormats, report: ScanReport) -> None:
        """Mark what the scan saw; after a full scan that skipped nothing, drop the rest."""
        if self._retention is None:
            return
        self._retention.mark_seen(referrer_formats.drain_seen(), report.started_at)
        if report.kind == FULL and not report.errors:
            dropped = self._retention.trim_classifications(report.started_at)
            self._metrics.trimmed({"classification": dropped})

    def enqueue(self, items: Iterable[PlanItem], policies: Sequence[Policy]) -> None:
        """Make each item's key pending, with the fingerprint of the policies wanting it."""
        for item in items:
            self._queue.add(plan_key(item), None, policy_fingerprint(policies, item.format))

    def settled(self, key: Key, policies: Sequence[Policy]) -> None:
        """A worker settled `key`: it is no longer missing."""
        self.missing.settled(key)
        self._metrics.set_missing_conversions(self.missing.counts(policies))
