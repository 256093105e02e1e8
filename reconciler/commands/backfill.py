"""`acceld backfill`: one full scan, convert everything missing, a summary; the exit status
says whether everything converged (0), something failed or was quarantined (1), or the
command or config was wrong (2)."""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TextIO

import click

from harbor_api.errors import AcceldError
from reconciler.commands.config_option import config_option
from reconciler.commands.output_option import chosen_output, output_option
from reconciler.commands.plan import plan_json, plan_table
from reconciler.commands.scan_errors import scan_errors_json, scan_errors_text
from reconciler.config import ConfigError, load_config
from reconciler.observability.logs import configure_logging
from reconciler.service.backfill import (
    BackfillProgress,
    BackfillSummary,
    run_backfill,
    select_policies,
)
from reconciler.service.runtime import open_runtime


class _ProgressLine:
    """One line on a terminal, redrawn: items and bytes."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._started = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, progress: BackfillProgress) -> None:
        seconds = time.monotonic() - self._started
        text = (
            f"\r[{progress.finished}/{progress.total}] failed={progress.failed} "
            f"read={progress.bytes_read / 1e6:.1f} MB "
            f"written={progress.bytes_written / 1e6:.1f} MB "
            f"elapsed={seconds:.0f}s"
        )
        with self._lock:
            self._stream.write(text)
            self._stream.flush()

    def close(self) -> None:
        self._stream.write("\n")


def summary_json(summary: BackfillSummary) -> dict[str, object]:
    return {
        "converged": summary.converged,
        "scanned": {
            "projects": summary.scan.projects,
            "repositories": summary.scan.repositories,
            "candidates": summary.scan.candidates,
        },
        "scan_errors": scan_errors_json(summary.scan.errors),
        "missing": len(summary.keys),
        "results": [
            {"key": str(r.key), "ok": r.ok, "detail": r.detail, "bytes_written": r.bytes_written}
            for r in summary.results
        ],
    }


def summary_text(summary: BackfillSummary) -> str:
    ok = sum(1 for r in summary.results if r.ok)
    lines = [
        f"scanned {summary.scan.projects} projects, {summary.scan.repositories} repositories, "
        f"{summary.scan.candidates} candidates; {len(summary.keys)} conversions missing",
        f"converged: {ok}, failed: {len(summary.failures)}",
    ]
    lines.extend(f"  FAILED {r.key}: {r.detail}" for r in summary.failures)
    lines.extend(scan_errors_text(summary.scan.errors))
    return "\n".join(lines)


@click.command("backfill")
@config_option
@click.option("--policy", help="Only this policy.")
@click.option("--dry-run", is_flag=True, help="Print the plan; convert nothing.")
@click.option("--max-items", type=click.IntRange(min=1), help="Convert at most N keys.")
@click.option("--workers", type=click.IntRange(min=1), help="Default: workers of the config.")
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Give up on a key (it stays queued) after this many failed attempts.",
)
@output_option()
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text")
def backfill_command(
    config_file: Path | None,
    policy: str | None,
    dry_run: bool,
    max_items: int | None,
    workers: int | None,
    max_attempts: int,
    output: str | None,
    log_format: str,
) -> None:
    """Scan everything once and convert all that is missing."""
    configure_logging("json" if log_format == "json" else "text", stream=sys.stderr)
    try:
        config = load_config(config_file)
        select_policies(config.policies, policy)
    except (ConfigError, ValueError) as exc:
        click.echo(f"acceld: error: {exc}", err=True)
        sys.exit(2)
    fmt = chosen_output(output)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    progress = _ProgressLine(sys.stderr) if sys.stderr.isatty() else None
    runtime = open_runtime(config)
    try:
        summary = run_backfill(
            runtime,
            policy=policy,
            dry_run=dry_run,
            max_items=max_items,
            workers=workers,
            max_attempts=max_attempts,
            on_progress=progress,
            stop=stop,
        )
    except AcceldError as exc:
        click.echo(f"acceld: error: {exc}", err=True)
        sys.exit(1)
    finally:
        runtime.close()
        if progress is not None:
            progress.close()
    policies = select_policies(config.policies, policy)
    if dry_run:
        planned = dataclasses.replace(summary.scan, plan=summary.plan)
        if fmt == "json":
            click.echo(json.dumps(plan_json(planned, policies), indent=2))
        else:
            click.echo(plan_table(planned, policies))
        return
    if fmt == "json":
        click.echo(json.dumps(summary_json(summary), indent=2))
    else:
        click.echo(summary_text(summary))
    sys.exit(0 if summary.converged else 1)
