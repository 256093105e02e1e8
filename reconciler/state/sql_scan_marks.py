"""The scan marks in SQL (`sql_database`): one row per kind of scan, with the parts its last
success skipped (the first `MAX_SKIPPED_KEPT`, and how many in all)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from reconciler.state.sql_database import SqlDatabase
from reconciler.state.store import MAX_SKIPPED_KEPT, ScanError, ScanMark


class SqlScanMarks:
    """`ScanMarks` in SQL; the missing counts are kept as a sorted JSON list."""

    def __init__(self, database: SqlDatabase) -> None:
        self._database = database

    def scan_started(self, kind: str, at: float) -> None:
        with self._database.write() as conn:
            conn.execute(
                "INSERT INTO scan_marks (kind, last_started_at) VALUES (?, ?) "
                "ON CONFLICT (kind) DO UPDATE SET last_started_at = excluded.last_started_at",
                (kind, at),
            )

    def scan_finished(
        self,
        kind: str,
        started_at: float,
        finished_at: float,
        missing_by_policy_format: Mapping[tuple[str, str], int],
        skipped: Sequence[ScanError] = (),
    ) -> None:
        kept = json.dumps([[e.kind, e.where, e.reason] for e in skipped[:MAX_SKIPPED_KEPT]])
        missing = json.dumps(
            sorted(
                [policy, fmt, count] for (policy, fmt), count in missing_by_policy_format.items()
            )
        )
        with self._database.write() as conn:
            conn.execute(
                "INSERT INTO scan_marks (kind, last_started_at, last_success_started_at, "
                "last_success_finished_at, missing, skipped, skipped_total) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (kind) DO UPDATE SET "
                "last_success_started_at = excluded.last_success_started_at, "
                "last_success_finished_at = excluded.last_success_finished_at, "
                "missing = excluded.missing, skipped = excluded.skipped, "
                "skipped_total = excluded.skipped_total",
                (kind, started_at, started_at, finished_at, missing, kept, len(skipped)),
            )

    def last_scan(self, kind: str) -> ScanMark | None:
        marks = [mark for mark in self.scans() if mark.kind == kind]
        return marks[0] if marks else None

    def scans(self) -> list[ScanMark]:
        rows = self._database.read(
            "SELECT kind, last_started_at, last_success_started_at, last_success_finished_at, "
            "missing, skipped, skipped_total FROM scan_marks ORDER BY kind"
        )
        return [
            ScanMark(
                kind,
                started,
                success_started,
                success_finished,
                {(policy, fmt): count for policy, fmt, count in json.loads(missing)},
                tuple(ScanError(*part) for part in json.loads(skipped)),
                total,
            )
            for kind, started, success_started, success_finished, missing, skipped, total in rows
        ]
