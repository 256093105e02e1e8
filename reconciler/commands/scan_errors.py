"""The parts a scan skipped, as `plan` and `backfill` show them."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.commands.wording import plural
from reconciler.state.store import ScanError


def scan_errors_json(errors: Sequence[ScanError]) -> list[dict[str, str]]:
    return [{"kind": e.kind, "where": e.where, "reason": e.reason} for e in errors]


def scan_errors_text(errors: Sequence[ScanError], total: int | None = None) -> list[str]:
    """One line per skipped part under a heading; nothing when the scan skipped nothing.
    `total` counts the parts skipped when `errors` holds only the first of them."""
    total = len(errors) if total is None else total
    if not total:
        return []
    more = total - len(errors)
    return [
        f"the scan skipped {plural(total, 'part')} it could not read:",
        *(f"  SKIPPED {e.kind} {e.where}: {e.reason}" for e in errors),
        *([f"  and {more} more (in the log)"] if more > 0 else []),
    ]
