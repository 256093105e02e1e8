"""Scans: walk the source, compare desired with observed for every original a policy can
match, and enqueue what is missing. A scan never converts.

A full scan walks everything; an incremental one only what was pushed since the start of the
last successful scan, minus a safety margin (clocks and slow pushes).

One bad part never stops the rest: a project whose repositories cannot be listed, a repository
whose images cannot be listed (a tag list answering 404 after an interrupted push), an image
whose manifest or referrers cannot be read (a sha512 layer digest) is logged, reported in
`ScanReport.errors` and skipped. Only an error about the source as a whole (no answer, 401,
429, 5xx) ends the scan, since every later step would fail the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

from harbor_api.errors import AcceldError, RegistryError, Unauthorized
from policies.desired import desired_formats, is_never_original, matching_policies
from policies.diff import Plan, PlanItem, missing_formats, plan_items
from policies.glob import any_match
from policies.match import policy_matches_project
from policies.model import Policy
from reconciler.controller.observed_formats import ReferrerFormats
from reconciler.controller.outdated import replaced_formats
from reconciler.controller.sources import Candidate, Source, UnreadableImage
from reconciler.observability.metrics import SCAN_ERROR_KINDS
from reconciler.state.clock import Clock, SystemClock
from reconciler.state.store import ScanError

log = logging.getLogger(__name__)

_T = TypeVar("_T")

FULL = "full"
INCREMENTAL = "incremental"


PROJECT, REPOSITORY, IMAGE = SCAN_ERROR_KINDS


@dataclass(frozen=True)
class AlreadyAccelerated:
    """An image a policy covers whose own layers are accelerated already: converted by another
    tool and pushed without a subject. It is left alone."""

    repository: str
    digest: str
    format: str


@dataclass(frozen=True)
class ScanReport:
    kind: str
    plan: Plan
    projects: int
    repositories: int
    candidates: int
    started_at: float
    finished_at: float
    errors: tuple[ScanError, ...] = ()
    matched: Mapping[str, int] = field(default_factory=dict)
    """Enabled policy → originals it covers, converted or not (0: it matches nothing)."""
    accelerated: tuple[AlreadyAccelerated, ...] = ()


def _about_the_whole_source(error: AcceldError) -> bool:
    """Errors every later request would meet too: those end the scan instead of one part."""
    return isinstance(error, Unauthorized) or (isinstance(error, RegistryError) and error.transient)


class _Skipped:
    """Collects the parts a scan skipped, logging each as it happens."""

    def __init__(self, scan_kind: str) -> None:
        self._scan_kind = scan_kind
        self.errors: list[ScanError] = []

    def add(self, kind: str, where: str, error: AcceldError) -> None:
        if _about_the_whole_source(error):
            raise error
        self.errors.append(ScanError(kind, where, str(error)))
        log.warning(
            "scan skipped a part it could not read",
            extra={"scan": self._scan_kind, "part": kind, "where": where, "error": str(error)},
        )

    def listed(self, kind: str, where: str, items: Callable[[], Iterator[_T]]) -> Iterator[_T]:
        """The items `items()` yields; a failure while listing skips the rest of `where`."""
        try:
            yield from items()
        except AcceldError as error:
            self.add(kind, where, error)


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
    matched = dict.fromkeys((p.name for p in policies if p.enabled), 0)
    accelerated: list[AlreadyAccelerated] = []
    skipped = _Skipped(kind)
    projects = repositories = candidates = 0
    for project in source.projects():
        if not _wanted_project(policies, project):
            continue
        projects += 1
        for repository in skipped.listed(PROJECT, project, partial(source.repositories, project)):
            if not _wanted_repository(policies, repository):
                continue
            repositories += 1
            for candidate in skipped.listed(
                REPOSITORY, repository, partial(source.candidates, repository, pushed_since)
            ):
                candidates += 1
                if isinstance(candidate, UnreadableImage):
                    skipped.add(IMAGE, f"{repository}:{candidate.reference}", candidate.error)
                    continue
                try:
                    judged = _judge(policies, referrer_formats, candidate, moment)
                except AcceldError as error:
                    skipped.add(IMAGE, f"{repository}@{candidate.original.digest}", error)
                    continue
                if judged.accelerated is not None:
                    accelerated.append(judged.accelerated)
                for name in judged.policies:
                    matched[name] = matched.get(name, 0) + 1
                found = judged.missing
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
            "skipped": len(skipped.errors),
            "seconds": round(finished - started, 3),
        },
    )
    return ScanReport(
        kind,
        Plan(tuple(items)),
        projects,
        repositories,
        candidates,
        started,
        finished,
        tuple(skipped.errors),
        matched,
        tuple(accelerated),
    )


@dataclass(frozen=True)
class _Judged:
    """What a scan makes of one candidate."""

    missing: tuple[PlanItem, ...] = ()
    policies: tuple[str, ...] = ()
    """The enabled policies that cover it, when it is an original."""
    accelerated: AlreadyAccelerated | None = None


def _judge(
    policies: Sequence[Policy],
    referrer_formats: ReferrerFormats,
    candidate: Candidate,
    moment: datetime,
) -> _Judged:
    original = candidate.original
    covering = matching_policies(policies, original)
    if not covering:
        return _Judged()
    if original.accelerated_as is not None:
        made = AlreadyAccelerated(original.repository, original.digest, original.accelerated_as)
        return _Judged(accelerated=made)
    if is_never_original(original) is not None:
        return _Judged()
    desired = desired_formats(policies, original, moment)
    if not desired:
        return _Judged(policies=covering)
    observed = referrer_formats.observed(
        original.repository, original.digest, candidate.accessories
    )
    missing = missing_formats(desired, observed) + replaced_formats(
        original.repository, original.digest, desired, observed, referrer_formats
    )
    if missing and candidate.accessories is not None:
        # Harbor's list does not show layers: read the manifest of an image that would be
        # converted, once (its classification is cached for ever), to leave alone one that
        # another tool accelerated already.
        own = referrer_formats.classify(original.repository, original.digest)
        if own is not None:
            found = AlreadyAccelerated(original.repository, original.digest, own)
            return _Judged(accelerated=found)
    return _Judged(plan_items(original.repository, original.digest, missing), covering)
