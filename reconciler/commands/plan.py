"""`acceld plan`: what is missing, per policy and format. Changes nothing in the registry."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from policies.model import Policy
from reconciler.commands.config_option import config_option
from reconciler.commands.output_option import chosen_output, output_option
from reconciler.commands.scan_errors import scan_errors_json, scan_errors_text
from reconciler.commands.wording import plural
from reconciler.config import load_config
from reconciler.controller.outdated import OutdatedCopy, outdated_copies
from reconciler.controller.scan import FULL, ScanReport, scan
from reconciler.service.backfill import select_policies
from reconciler.service.runtime import open_runtime


def plan_json(report: ScanReport, policies: tuple[Policy, ...]) -> dict[str, Any]:
    plan = report.plan
    return {
        "missing": [
            {"policy": policy, "format": fmt, "count": count}
            for (policy, fmt), count in plan.missing_by_policy_format(policies).items()
        ],
        "items": [
            {
                "repository": item.repository,
                "digest": item.digest,
                "format": item.format,
                "policies": list(item.policies),
                "tags": list(item.tags),
            }
            for item in plan.items
        ],
        "matched": [{"policy": name, "images": count} for name, count in report.matched.items()],
        "already_accelerated": [
            {"repository": a.repository, "digest": a.digest, "format": a.format}
            for a in report.accelerated
        ],
        "scan_errors": scan_errors_json(report.errors),
    }


def outdated_json(outdated: list[OutdatedCopy]) -> dict[str, Any]:
    """Copies made by an older acceld or with other options; `replaced` when a policy's
    `reconvert` makes the reconciler replace them."""
    return {
        "outdated": [
            {
                "repository": o.repository,
                "digest": o.original,
                "copy": o.copy,
                "format": o.format,
                "policies": list(o.policies),
                "reason": o.reason,
                "replaced": o.replaced,
            }
            for o in outdated
        ]
    }


def outdated_text(outdated: list[OutdatedCopy]) -> list[str]:
    if not outdated:
        return []
    lines = ["", f"{'OUTDATED COPY':<40} {'FORMAT':<10} {'REPLACED':<9} REASON"]
    for o in outdated:
        where = f"{o.repository}@{o.copy[:19]}"
        lines.append(f"{where:<40} {o.format:<10} {'yes' if o.replaced else 'no':<9} {o.reason}")
    return lines


def plan_table(report: ScanReport, policies: tuple[Policy, ...]) -> str:
    plan = report.plan
    lines = [f"{'POLICY':<24} {'FORMAT':<14} {'MATCHED':>8} {'MISSING':>8}"]
    for (policy, fmt), count in plan.missing_by_policy_format(policies).items():
        matched = report.matched.get(policy, 0)
        lines.append(f"{policy:<24} {fmt:<14} {matched:>8} {count:>8}")
    unmatched = [name for name, count in report.matched.items() if count == 0]
    if unmatched:
        lines.append("")
        lines += [
            f"policy {name} matches no image: check its projects, repositories and tags"
            for name in unmatched
        ]
    if report.accelerated:
        lines.append("")
        lines.append(
            f"left alone, already accelerated by another tool (no subject): "
            f"{plural(len(report.accelerated), 'image')}"
        )
        lines += [f"  {a.repository}@{a.digest} ({a.format})" for a in report.accelerated]
    if plan.items:
        lines.append("")
        lines.append(f"{'REPOSITORY':<40} {'FORMAT':<10} {'TAGS':<24} DIGEST")
        for item in plan.items:
            tags = ",".join(item.tags) or "(untagged)"
            lines.append(f"{item.repository:<40} {item.format:<10} {tags:<24} {item.digest}")
    skipped = scan_errors_text(report.errors)
    if skipped:
        lines += ["", *skipped]
    return "\n".join(lines)


@click.command("plan")
@config_option
@click.option("--policy", help="Only this policy.")
@output_option()
def plan_command(config_file: Path | None, policy: str | None, output: str | None) -> None:
    """Show what is missing per policy and format, without changing anything."""
    config = load_config(config_file)
    try:
        policies = select_policies(config.policies, policy)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    runtime = open_runtime(config)
    try:
        runtime.source.verify()
        report = scan(runtime.source, policies, runtime.referrer_formats, kind=FULL)
        outdated = outdated_copies(
            runtime.source, policies, runtime.referrer_formats, datetime.now(UTC)
        )
    finally:
        runtime.close()
    if chosen_output(output) == "json":
        click.echo(json.dumps({**plan_json(report, policies), **outdated_json(outdated)}, indent=2))
    else:
        click.echo("\n".join([plan_table(report, policies), *outdated_text(outdated)]))
