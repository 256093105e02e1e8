"""`acceld prune`: delete the accelerated copies whose original is gone (and, with
`--unwanted`, those no policy wants); `--dry-run` prints exactly what would be deleted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from harbor_api.errors import AcceldError
from reconciler import exit_codes
from reconciler.commands.config_option import config_option
from reconciler.commands.output_option import chosen_output, output_option
from reconciler.config import ConfigError, load_config
from reconciler.controller.prune import PruneReport
from reconciler.observability.logs import configure_logging
from reconciler.service.backfill import select_policies
from reconciler.service.prune import run_prune
from reconciler.service.runtime import open_runtime

_CASCADING_NOTE = (
    "Harbor deletes accelerated copies with their original: only what it leaves is pruned here"
)


def prune_json(report: PruneReport) -> dict[str, object]:
    return {
        "dry_run": report.dry_run,
        "cascading": report.cascading,
        "repositories": report.repositories,
        "removed": [
            {
                "repository": r.repository,
                "digest": r.digest,
                "subject": r.subject,
                "format": r.format,
                "reason": r.reason,
                "tags": list(r.tags),
                "manifest": r.exists,
            }
            for r in report.removals
        ],
        "failures": [
            {"repository": f.repository, "digest": f.digest, "error": f.error}
            for f in report.failures
        ],
    }


def prune_text(report: PruneReport) -> str:
    verb = "would delete" if report.dry_run else "deleted"
    lines = []
    if report.cascading:
        lines.append(_CASCADING_NOTE)
    for r in report.removals:
        what = "fallback entry of" if not r.exists else "copy"
        tags = f" tags {','.join(r.tags)}" if r.tags else ""
        lines.append(
            f"{verb} {what} {r.repository}@{r.digest} ({r.format}, {r.reason}, "
            f"of {r.subject}){tags}"
        )
    lines.append(
        f"{report.repositories} repositories; {verb} {len(report.removals)}; "
        f"{len(report.failures)} failed"
    )
    lines.extend(f"  FAILED {f.repository}@{f.digest}: {f.error}" for f in report.failures)
    return "\n".join(lines)


@click.command("prune")
@config_option
@click.option("--policy", help="Only the repositories and formats of this policy.")
@click.option("--unwanted", is_flag=True, help="Also copies that no enabled policy wants.")
@click.option("--dry-run", is_flag=True, help="Print what would be deleted; delete nothing.")
@output_option()
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text")
def prune_command(
    config_file: Path | None,
    policy: str | None,
    unwanted: bool,
    dry_run: bool,
    output: str | None,
    log_format: str,
) -> None:
    """Delete accelerated copies whose original is gone; never an original or another tool's
    referrer."""
    configure_logging("json" if log_format == "json" else "text", stream=sys.stderr)
    try:
        config = load_config(config_file)
        if policy is not None:
            select_policies(config.policies, policy)
    except (ConfigError, ValueError) as exc:
        click.echo(f"acceld: error: {exc}", err=True)
        sys.exit(exit_codes.USAGE)
    runtime = open_runtime(config)
    try:
        runtime.source.verify()
        report = run_prune(runtime, policy=policy, unwanted=unwanted, dry_run=dry_run)
    except AcceldError as exc:
        click.echo(f"acceld: error: {exc}", err=True)
        sys.exit(exit_codes.FAILED)
    finally:
        runtime.close()
    if chosen_output(output) == "json":
        click.echo(json.dumps(prune_json(report), indent=2))
    else:
        click.echo(prune_text(report))
    sys.exit(exit_codes.FAILED if report.failures else exit_codes.OK)
