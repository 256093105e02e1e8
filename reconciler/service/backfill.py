"""`acceld backfill`: one full scan, then convert everything missing, and say how it went.

It shares the state directory with a running `acceld serve`: keys go through the same
persistent queue, so a key the daemon is working on is not worked here too, and what the daemon
finished counts as done.

`stop` ends it gently: no new key is taken, the conversions in hand finish. `abort` ends it at
once: the keys in hand go back to the queue as they were, with no attempt counted. Either way
the keys not settled stay queued, and the summary names them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from policies.diff import Plan
from policies.model import Policy
from reconciler.controller.controller import Controller, Worked
from reconciler.controller.scan import FULL, ScanReport
from reconciler.controller.scan_runner import ScanRunner, plan_key
from reconciler.service.runtime import Runtime, owner_id
from reconciler.state.keys import Key
from reconciler.state.workqueue import WorkQueue
from reconciler.state_config import renew_seconds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeyResult:
    key: Key
    ok: bool
    detail: str
    bytes_written: int = 0


@dataclass
class BackfillProgress:
    """Live counts for a progress display."""

    total: int = 0
    finished: int = 0
    failed: int = 0
    bytes_read: int = 0
    bytes_written: int = 0


@dataclass(frozen=True)
class BackfillSummary:
    plan: Plan
    scan: ScanReport
    results: tuple[KeyResult, ...] = field(default=())
    dry_run: bool = False
    left: tuple[Key, ...] = ()
    """Keys of this backfill still queued when it ended (stopped or aborted early)."""

    @property
    def failures(self) -> tuple[KeyResult, ...]:
        return tuple(r for r in self.results if not r.ok)

    @property
    def converged(self) -> bool:
        return (
            not self.failures
            and not self.scan.errors
            and (self.dry_run or len(self.results) == len(self.keys))
        )

    @property
    def keys(self) -> tuple[Key, ...]:
        return tuple(dict.fromkeys(plan_key(i) for i in self.plan.items))


def select_policies(policies: Sequence[Policy], name: str | None) -> tuple[Policy, ...]:
    if name is None:
        return tuple(policies)
    chosen = tuple(p for p in policies if p.name == name)
    if not chosen:
        known = ", ".join(p.name for p in policies) or "none"
        raise ValueError(f"no policy named {name!r} (policies: {known})")
    return chosen


class _Tracker:
    """Which of this backfill's keys are settled, and how."""

    def __init__(self, keys: Sequence[Key], max_attempts: int) -> None:
        self._open = set(keys)
        self._results: dict[Key, KeyResult] = {}
        self._max_attempts = max_attempts
        self._lock = threading.Lock()
        self.progress = BackfillProgress(total=len(self._open))

    @property
    def settled(self) -> bool:
        with self._lock:
            return not self._open

    def open_keys(self) -> list[Key]:
        with self._lock:
            return list(self._open)

    def record(self, worked: Worked) -> None:
        key = worked.lease.key
        if worked.status == "done" and worked.outcome is not None:
            converted = worked.outcome.conversion
            self._settle(
                KeyResult(
                    key,
                    True,
                    worked.outcome.kind,
                    converted.bytes_uploaded if converted else 0,
                ),
                converted.bytes_downloaded if converted else 0,
            )
        elif worked.status == "quarantined":
            self._settle(KeyResult(key, False, f"quarantined: {worked.error}"))
        elif worked.status == "retry" and worked.lease.attempts + 1 >= self._max_attempts:
            self._settle(
                KeyResult(key, False, f"failed {worked.lease.attempts + 1} times: {worked.error}")
            )

    def settle_from_store(self, runtime: Runtime) -> None:
        """Settle keys that another process finished, quarantined or keeps backing off."""
        now = runtime.clock.now()
        for key in self.open_keys():
            state = runtime.store.queue.key_state(key)
            if state is None:
                self._settle(KeyResult(key, True, "done by another acceld process"))
            elif state.state == "quarantined":
                self._settle(KeyResult(key, False, f"quarantined: {state.last_error}"))
            elif state.state == "pending" and state.attempts >= self._max_attempts:
                self._settle(
                    KeyResult(key, False, f"failed {state.attempts} times: {state.last_error}")
                )
            elif state.state == "pending" and state.due_at - now > 300:
                self._settle(
                    KeyResult(
                        key,
                        False,
                        f"backing off until {time.ctime(state.due_at)}: {state.last_error}",
                    )
                )

    def results(self) -> tuple[KeyResult, ...]:
        with self._lock:
            return tuple(self._results.values())

    def _settle(self, result: KeyResult, bytes_read: int = 0) -> None:
        with self._lock:
            if result.key not in self._open:
                return
            self._open.discard(result.key)
            self._results[result.key] = result
            self.progress.finished += 1
            self.progress.failed += 0 if result.ok else 1
            self.progress.bytes_read += bytes_read
            self.progress.bytes_written += result.bytes_written


def run_backfill(
    runtime: Runtime,
    *,
    policy: str | None = None,
    dry_run: bool = False,
    max_items: int | None = None,
    workers: int | None = None,
    max_attempts: int = 5,
    on_progress: Callable[[BackfillProgress], None] | None = None,
    stop: threading.Event | None = None,
    abort: threading.Event | None = None,
) -> BackfillSummary:
    policies = select_policies(runtime.config.policies, policy)
    runtime.source.verify()
    queue = WorkQueue(
        runtime.store.queue,
        owner_id("backfill"),
        runtime.clock,
        poll_seconds=0.5,
        heartbeat_seconds=renew_seconds(runtime.config.state),
    )
    scans = ScanRunner(
        runtime.store.scans,
        queue,
        runtime.metrics,
        safety_margin_seconds=runtime.config.scan.safety_margin_seconds,
        clock=runtime.clock,
    )
    report = scans.run(runtime.source, policies, runtime.referrer_formats, FULL, enqueue=False)
    items = report.plan.items
    if max_items is not None:
        keep = set(list(dict.fromkeys(plan_key(i) for i in items))[:max_items])
        items = tuple(i for i in items if plan_key(i) in keep)
    plan = Plan(items)
    if dry_run:
        return BackfillSummary(plan, report, dry_run=True)
    scans.enqueue(items, policies)
    keys = list(dict.fromkeys(plan_key(i) for i in items))
    tracker = _Tracker(keys, max_attempts)

    def worked(result: Worked) -> None:
        tracker.record(result)
        if on_progress is not None:
            on_progress(tracker.progress)

    controller = Controller(
        queue,
        runtime.store.queue,
        runtime.metrics,
        lambda: runtime.reconciler,
        workers=workers or runtime.config.workers,
        name="backfill",
        on_worked=worked,
        on_idle=lambda: tracker.settle_from_store(runtime),
        finished=lambda: tracker.settled or (stop is not None and stop.is_set()),
    )
    queue.start()
    try:
        controller.start()
        while not controller.join(timeout=0.2):
            if abort is not None and abort.is_set():
                break
    finally:
        controller.stop(time.monotonic())
    return BackfillSummary(
        plan, report, tracker.results(), left=tuple(sorted(tracker.open_keys(), key=str))
    )
