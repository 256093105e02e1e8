"""Which accelerated copies are outdated, for `acceld plan`: a walk of the originals a policy
wants, reading each one's referrers (their annotations say what made each copy).

It reads one referrers list per original that has a wanted format, so `plan` pays for it; the
reconcile step makes the same judgement for one key (`Reconciler._outdated`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from harbor_api.errors import AcceldError
from harbor_api.version import ACCELD_VERSION
from policies.desired import FormatWanted, desired_formats
from policies.model import Policy, Reconvert, ReconvertMode
from policies.outdated import first_outdated_reason, made_by_this_acceld, options_digest
from reconciler.controller.observed_formats import ReferrerFormats
from reconciler.controller.sources import Source, UnreadableImage

# What `plan` calls outdated: any difference, whatever the policy does about it.
_ANY_CHANGE = (
    Reconvert(ReconvertMode.OPTIONS_CHANGED),
    Reconvert(ReconvertMode.DRIVER_OLDER_THAN, ACCELD_VERSION),
)


@dataclass(frozen=True)
class OutdatedCopy:
    repository: str
    original: str
    copy: str
    format: str
    policies: tuple[str, ...]
    reason: str
    replaced: bool
    """Whether a wanting policy's `reconvert` rule replaces it (else it is only reported)."""


def outdated_copies(
    source: Source, policies: Sequence[Policy], referrer_formats: ReferrerFormats, now: datetime
) -> list[OutdatedCopy]:
    """Every outdated copy of an original some policy wants; what cannot be read is skipped
    (the plan's scan reports it)."""
    found: list[OutdatedCopy] = []
    for project in source.projects():
        try:
            for repository in list(source.repositories(project)):
                found.extend(_in_repository(source, repository, policies, referrer_formats, now))
        except AcceldError:
            continue
    return found


def _in_repository(
    source: Source,
    repository: str,
    policies: Sequence[Policy],
    referrer_formats: ReferrerFormats,
    now: datetime,
) -> list[OutdatedCopy]:
    found: list[OutdatedCopy] = []
    try:
        for candidate in source.candidates(repository, None):
            if isinstance(candidate, UnreadableImage):
                continue
            original = candidate.original
            wanted = desired_formats(policies, original, now)
            try:
                found.extend(_of(repository, original.digest, wanted, referrer_formats))
            except AcceldError:
                continue
    except AcceldError:
        pass
    return found


def _of(
    repository: str,
    digest: str,
    wanted: Mapping[str, FormatWanted],
    referrer_formats: ReferrerFormats,
) -> list[OutdatedCopy]:
    out = []
    for fmt, want in wanted.items():
        options = options_digest(fmt, want.options.layer)
        for copy in referrer_formats.copies(repository, digest, fmt):
            producer = copy.producer
            if producer is None or made_by_this_acceld(producer, options):
                continue
            reason = first_outdated_reason(_ANY_CHANGE, producer, options)
            if reason is None:
                continue
            replaced = first_outdated_reason(want.reconvert, producer, options) is not None
            out.append(
                OutdatedCopy(repository, digest, copy.digest, fmt, want.policies, reason, replaced)
            )
    return out


def replaced_formats(
    repository: str,
    digest: str,
    wanted: Mapping[str, FormatWanted],
    present: Iterable[str | None],
    referrer_formats: ReferrerFormats,
) -> tuple[FormatWanted, ...]:
    """The present formats whose copy a wanting policy's `reconvert` rule replaces: the scan
    enqueues their keys as it does missing ones. No read unless some rule is not `never`."""
    present = set(present)
    renewing = {
        fmt: want
        for fmt, want in wanted.items()
        if fmt in present and any(r.mode is not ReconvertMode.NEVER for r in want.reconvert)
    }
    if not renewing:
        return ()
    stale = {o.format for o in _of(repository, digest, renewing, referrer_formats) if o.replaced}
    return tuple(renewing[fmt] for fmt in sorted(stale))
