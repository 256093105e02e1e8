"""`acceld backfill`: one full scan, convert everything missing, a summary; the exit status
says whether everything converged (0), something failed or was quarantined (1), the command or
config was wrong (2), or it was interrupted (130: Ctrl-C or SIGTERM; the first lets the
conversions in progress finish, a second aborts them; either way what is left stays queued and
is listed, and no attempt is counted against a key for the interrupt)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TextIO, cast

import click

from harbor_api.errors import AcceldError
from reconciler.commands.config_option import config_option
from reconciler.commands.output_option import chosen_output, output_option
from reconciler.commands.plan import plan_json, plan_table
from reconciler.commands.scan_errors import scan_errors_json, scan_errors_text
from reconciler.commands.status_line import StatusLine
from reconciler.commands.wording import human_size, plural
from reconciler.config import ConfigError, load_config
from reconciler.exit_codes import FAILED, INTERRUPTED, OK, USAGE
from reconciler.observability.logs import configure_logging
from reconciler.service.backfill import (
    BackfillProgress,
    BackfillSummary,
    run_backfill,
    select_policies,
)
from reconciler.service.runtime import open_runtime
from reconciler.state.keys import Key


class _Progress:
    """Items and bytes on the terminal's status line, redrawn as keys settle."""

    def __init__(self, line: StatusLine) -> None:
        self._line = line
        self._started = time.monotonic()

    def __call__(self, progress: BackfillProgress) -> None:
        seconds = time.monotonic() - self._started
        self._line.show(
            f"[{progress.finished}/{progress.total}] failed: {progress.failed}, "
            f"read {human_size(progress.bytes_read)}, "
            f"written {human_size(progress.bytes_written)}, {seconds:.0f}s"
        )


class _Interrupts:
    """SIGINT and SIGTERM: the first lets the conversions in hand finish, the second aborts.

    The handlers only set events and write one line: they run in the main thread between two
    bytecodes, and must not wait on a lock the interrupted code may hold.
    """

    def __init__(self, terminal: TextIO) -> None:
        self.stop = threading.Event()
        self.abort = threading.Event()
        self._terminal = terminal

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.stop.is_set():
            self.stop.set()
            self._say(
                "interrupted: the conversions in progress finish, no new one starts "
                "(Ctrl-C again to abort them)"
            )
        elif not self.abort.is_set():
            self.abort.set()
            self._say("aborting: the conversions in progress go back to the queue")

    def _say(self, text: str) -> None:
        self._terminal.write(f"acceld: {text}\n")
        self._terminal.flush()


def left_text(left: Sequence[Key]) -> list[str]:
    """What an interrupted backfill leaves in the queue, one key a line."""
    if not left:
        return []
    return [
        f"{plural(len(left), 'key')} left in the queue, not converted yet (acceld backfill "
        "again, or a running acceld serve, converts them):",
        *(f"  {key}" for key in left),
    ]


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
        "left_in_queue": [str(key) for key in summary.left],
        "results": [
            {"key": str(r.key), "ok": r.ok, "detail": r.detail, "bytes_written": r.bytes_written}
            for r in summary.results
        ],
    }


def summary_text(summary: BackfillSummary) -> str:
    ok = sum(1 for r in summary.results if r.ok)
    lines = [
        f"scanned {plural(summary.scan.projects, 'project')}, "
        f"{plural(summary.scan.repositories, 'repository')}, "
        f"{plural(summary.scan.candidates, 'candidate')}; "
        f"{plural(len(summary.keys), 'conversion')} missing",
        f"converged: {ok}, failed: {len(summary.failures)}",
    ]
    lines.extend(f"  FAILED {r.key}: {r.detail}" for r in summary.failures)
    lines.extend(scan_errors_text(summary.scan.errors))
    lines.extend(left_text(summary.left))
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
    terminal = StatusLine(sys.stderr) if sys.stderr.isatty() else None
    # Log lines go through the status line on a terminal, so they scroll above it.
    errors = cast(TextIO, terminal) if terminal is not None else sys.stderr
    configure_logging("json" if log_format == "json" else "text", stream=errors)
    try:
        config = load_config(config_file)
        select_policies(config.policies, policy)
    except (ConfigError, ValueError) as exc:
        click.echo(f"acceld: error: {exc}", err=True)
        sys.exit(USAGE)
    fmt = chosen_output(output)
    interrupts = _Interrupts(errors)
    interrupts.install()
    progress = _Progress(terminal) if terminal is not None else None
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
            stop=interrupts.stop,
            abort=interrupts.abort,
        )
    except AcceldError as exc:
        click.echo(f"acceld: error: {exc}", err=True)
        sys.exit(FAILED)
    finally:
        if terminal is not None:
            terminal.done()
    if interrupts.abort.is_set():
        # Worker threads may still be inside a conversion whose key went back to the queue:
        # leave without closing the store under them (the next start clears the work area).
        click.echo(summary_json_or_text(summary, fmt))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(INTERRUPTED)
    runtime.close()
    policies = select_policies(config.policies, policy)
    if dry_run:
        planned = dataclasses.replace(summary.scan, plan=summary.plan)
        if fmt == "json":
            click.echo(json.dumps(plan_json(planned, policies), indent=2))
        else:
            click.echo(plan_table(planned, policies))
        return
    click.echo(summary_json_or_text(summary, fmt))
    if interrupts.stop.is_set():
        sys.exit(INTERRUPTED)
    sys.exit(OK if summary.converged else FAILED)


def summary_json_or_text(summary: BackfillSummary, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(summary_json(summary), indent=2)
    return summary_text(summary)
