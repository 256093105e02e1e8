"""Scans: walk the source, compare desired with observed for every original a policy can
match, and enqueue what is missing. A scan never converts.

A full scan walks everything; an incremental one only what was pushed since the start of the
last successful scan, minus a safety margin (clocks and slow pushes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from policies.desired import desired_formats
from policies.diff import Plan, PlanItem, missing_formats, plan_items
from policies.glob import any_match
from policies.match import policy_matches_project
from policies.model import Policy
from reconciler.controller.observed_formats import ReferrerFormats
from reconciler.controller.sources import Source
from reconciler.state.clock import Clock, SystemClock

log = logging.getLogger(__name__)

FULL = "full"
INCREMENTAL = "incremental"


@dataclass(frozen=True)
class ScanReport:
    kind: str
    plan: Plan
    projects: int
    repositories: int
    candidates: int
    started_at: float
    finished_at: float


def _wanted_project(policies: Sequence[Policy], project: str) -> bool:
    return any(p.enabled and policy_matches_project(p, project) for p in policies)


def _wanted_repository(policies: Sequence[Policy], repository: str) -> bool:
    project = repository.split("/", 1)[0]
    return any(
        p.enabled and policy_matches_project(p, project) and any_match(p.repositories, repository)
        for p in policies
    )


def scan(
    source: Source,
    policies: Sequence[Policy],
    referrer_formats: ReferrerFormats,
    *,
    kind: str = FULL,
    pushed_since: datetime | None = None,
    on_missing: Callable[[PlanItem], None] | None = None,
    clock: Clock | None = None,
) -> ScanReport:
    """Walk `source` and return what is missing; `on_missing` sees each item as it is found."""
    clock = clock or SystemClock()
    started = clock.now()
    moment = datetime.fromtimestamp(started, UTC)
    items: list[PlanItem] = []
    projects = repositories = candidates = 0
    for project in source.projects():
        if not _wanted_project(policies, project):
            continue
        projects += 1
        for repository in source.repositories(project):
            if not _wanted_repository(policies, repository):
                continue
            repositories += 1
            for candidate in source.candidates(repository, pushed_since):
                candidates += 1
                desired = desired_formats(policies, candidate.original, moment)
                if not desired:
                    continue
                observed = referrer_formats.observed(
                    repository, candidate.original.digest, candidate.accessories
                )
                found = plan_items(
                    repository, candidate.original.digest, missing_formats(desired, observed)
                )
                for item in found:
                    log.info(
                        "missing",
                        extra={
                            "scan": kind,
                            "key": f"{item.repository}@{item.digest}#{item.format}",
                            "policies": ",".join(item.policies),
                        },
                    )
                    if on_missing is not None:
                        on_missing(item)
                items.extend(found)
    finished = clock.now()
    log.info(
        "scan finished",
        extra={
            "scan": kind,
            "projects": projects,
            "repositories": repositories,
            "candidates": candidates,
            "missing": len(items),
            "seconds": round(finished - started, 3),
        },
    )
    return ScanReport(
        kind, Plan(tuple(items)), projects, repositories, candidates, started, finished
    )
