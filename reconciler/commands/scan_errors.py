"""The parts a scan skipped, as `plan` and `backfill` show them."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.commands.wording import plural
from reconciler.controller.scan import ScanError


def scan_errors_json(errors: Sequence[ScanError]) -> list[dict[str, str]]:
    return [{"kind": e.kind, "where": e.where, "reason": e.reason} for e in errors]


def scan_errors_text(errors: Sequence[ScanError]) -> list[str]:
    """One line per skipped part under a heading; nothing when the scan skipped nothing."""
    if not errors:
        return []
    return [
        f"the scan skipped {plural(len(errors), 'part')} it could not read:",
        *(f"  SKIPPED {e.kind} {e.where}: {e.reason}" for e in errors),
    ]
