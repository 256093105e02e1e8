"""`acceld status`: the work queue, what is being worked on, what fails, and the last scans."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from reconciler.commands.output_option import output_option
from reconciler.commands.scan_errors import scan_errors_json, scan_errors_text
from reconciler.commands.state_location import existing_state_store, state_location_options
from reconciler.state.keys import Key
from reconciler.state.store import (
    FailingKey,
    InProgress,
    LeaderLease,
    QuarantinedKey,
    QueueCounts,
    ScanMark,
    StateStore,
)


@dataclass(frozen=True)
class StatusReport:
    counts: QueueCounts
    in_progress: tuple[InProgress, ...]
    failing: tuple[FailingKey, ...]
    quarantined: tuple[QuarantinedKey, ...]
    scans: tuple[ScanMark, ...]
    leaders: tuple[LeaderLease, ...]

    @classmethod
    def read(cls, store: StateStore) -> StatusReport:
        return cls(
            store.queue.counts(),
            tuple(store.queue.in_progress()),
            tuple(store.queue.failing()),
            tuple(store.queue.quarantined()),
            tuple(store.scans.scans()),
            tuple(store.leaders.leaders()),
        )


def _when(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def _key_json(key: Key) -> dict[str, str]:
    return {
        "key": str(key),
        "repository": key.repository,
        "digest": key.digest,
        "format": key.format,
    }


def status_json(report: StatusReport) -> dict[str, Any]:
    counts = report.counts
    return {
        "queue": {
            "pending": counts.pending,
            "in_progress": counts.in_progress,
            "quarantined": counts.quarantined,
        },
        "in_progress": [
            _key_json(item.key)
            | {
                "owner": item.owner,
                "host": item.host,
                "pid": item.pid,
                "started_at": _when(item.started_at),
                "lease_expires_at": _when(item.expires_at),
                "reconcile_id": item.reconcile_id,
            }
            for item in report.in_progress
        ],
        "failing": [
            _key_json(item.key)
            | {
                "attempts": item.attempts,
                "last_error": item.last_error,
                "next_attempt_at": _when(item.next_attempt_at),
            }
            for item in report.failing
        ],
        "quarantined": [
            _key_json(item.key)
            | {
                "reason": item.reason,
                "attempts": item.attempts,
                "quarantined_at": _when(item.quarantined_at),
                "policy_fingerprint": item.policy_fingerprint,
            }
            for item in report.quarantined
        ],
        "scans": [
            {
                "kind": mark.kind,
                "last_started_at": _when(mark.last_started_at),
                "last_success_started_at": _when(mark.last_success_started_at),
                "last_success_finished_at": _when(mark.last_success_finished_at),
                "missing": [
                    {"policy": policy, "format": fmt, "count": count}
                    for (policy, fmt), count in sorted(mark.missing.items())
                ],
                "skipped": scan_errors_json(mark.skipped),
                "skipped_total": mark.skipped_total,
            }
            for mark in report.scans
        ],
        "leaders": [
            {"name": lease.name, "holder": lease.holder, "expires_at": _when(lease.expires_at)}
            for lease in report.leaders
        ],
    }


def _age(at: float | None, now: float) -> str:
    if at is None:
        return "never"
    seconds = int(now - at)
    span = abs(seconds)
    if span < 120:
        text = f"{span}s"
    elif span < 7200:
        text = f"{span // 60}m"
    elif span < 172800:
        text = f"{span // 3600}h"
    else:
        text = f"{span // 86400}d"
    return f"{text} ago" if seconds >= 0 else f"in {text}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    return [
        "  " + "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]])
        for row in [header, *rows]
    ]


def status_text(report: StatusReport, now: float) -> str:
    counts = report.counts
    lines = [
        f"queue: {counts.pending} pending ({len(report.failing)} backing off), "
        f"{counts.in_progress} in progress, {counts.quarantined} quarantined"
    ]
    if report.in_progress:
        lines += ["", "in progress:"]
        lines += _table(
            ("KEY", "OWNER", "PROCESS", "SINCE", "RECONCILE ID"),
            [
                (str(i.key), i.owner, f"{i.pid}@{i.host}", _age(i.started_at, now), i.reconcile_id)
                for i in report.in_progress
            ],
        )
    if report.failing:
        lines += ["", "failing:"]
        lines += _table(
            ("KEY", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR"),
            [
                (str(f.key), str(f.attempts), _age(f.next_attempt_at, now), _one_line(f.last_error))
                for f in report.failing
            ],
        )
    if report.quarantined:
        lines += [
            "",
            "quarantined (a policy change releases them; acceld retry KEY or --all once the "
            "image or the setting named is fixed):",
        ]
        lines += _table(
            ("KEY", "SINCE", "ATTEMPTS", "REASON"),
            [
                (str(q.key), _age(q.quarantined_at, now), str(q.attempts), _one_line(q.reason))
                for q in report.quarantined
            ],
        )
    lines += ["", "scans:"]
    if not report.scans:
        lines.append("  none yet")
    for mark in report.scans:
        missing = ", ".join(
            f"{policy}/{fmt}={count}" for (policy, fmt), count in sorted(mark.missing.items())
        )
        lines.append(
            f"  {mark.kind}: last started {_age(mark.last_started_at, now)}, "
            f"last success {_age(mark.last_success_finished_at, now)}"
            + (f", that scan found missing {missing}" if missing else "")
        )
        lines += [f"    {line}" for line in scan_errors_text(mark.skipped, mark.skipped_total)]
    if report.leaders:
        lines += ["", "leaders:"]
    for lease in report.leaders:
        ends = "lease ends" if lease.expires_at >= now else "lease ended"
        lines.append(f"  {lease.name}: {lease.holder}, {ends} {_age(lease.expires_at, now)}")
    return "\n".join(lines)


@click.command("status")
@state_location_options
@output_option(default="text")
def status_command(config_file: Path | None, state_dir: Path | None, output: str) -> None:
    """Show the work queue, keys in progress (who holds each, since when), failures,
    quarantined keys, the last scans and which process leads the scans."""
    store = existing_state_store(config_file, state_dir)
    try:
        report = StatusReport.read(store)
    finally:
        store.close()
    if output == "json":
        click.echo(json.dumps(status_json(report), indent=2))
    else:
        click.echo(status_text(report, time.time()))
