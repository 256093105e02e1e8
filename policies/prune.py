"""Which accelerated copies to delete from one repository. Pure: an inventory in, removals out.

A copy is a manifest (or index) acceld made: its annotations name a driver, a version and its
source, and the source is its subject (`policies.outdated.producer_of`). Nothing else — an
original, a signature, an SBOM, another tool's referrer — is ever in an inventory, so nothing
else is ever removed. A copy goes when:

- `orphan`: its subject no longer exists;
- `unwanted` (only when asked): its subject exists but no enabled policy wants its format
  for it (nor will once `min_age` has passed);
- `leftover`: a platform copy that no remaining converted index lists, whose subject is a
  platform manifest of an original index rather than an original of its own (what a replaced
  or deleted converted index leaves behind), unless a conversion of that index is running;
- `stale`: its fallback-index entry is left though the manifest is gone (after an interrupted
  prune, or the registry's garbage collection): only the entry is removed.

Platform copies are removed before the converted indexes that list them, so a prune killed
half way leaves the index, from which the next prune finds them again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from policies.desired import Original, desired_formats, next_due
from policies.model import Policy
from policies.outdated import Producer

Reason = Literal["orphan", "unwanted", "leftover", "stale"]
REASONS: tuple[Reason, ...] = ("orphan", "unwanted", "leftover", "stale")


@dataclass(frozen=True)
class ConvertedCopy:
    """A copy acceld made, as found in the registry or in a fallback index."""

    digest: str
    media_type: str
    subject: str
    producer: Producer
    tags: tuple[str, ...] = ()
    children: tuple[str, ...] = ()
    """The platform copies a converted index lists."""
    exists: bool = True
    """False when only a fallback-index entry is left of it."""


@dataclass(frozen=True)
class RepositoryInventory:
    """What a prune needs to know of one repository."""

    repository: str
    copies: Mapping[str, ConvertedCopy]
    """Every copy found, by digest."""
    subjects: Mapping[str, Original | None]
    """Each copy's subject as an original (with its tags), None when it no longer exists."""
    index_children: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Platform manifests of each original index that exists, by the index's digest."""
    busy: frozenset[str] = frozenset()
    """Originals with a conversion running now (their new copies may not be listed yet)."""


@dataclass(frozen=True)
class Removal:
    repository: str
    digest: str
    subject: str
    format: str
    reason: Reason
    tags: tuple[str, ...] = ()
    exists: bool = True
    """False: only the fallback-index entry is to go (the manifest is gone already)."""


Scope = Callable[[str, str], bool]
"""Whether a prune covers copies in (repository, format)."""


def prune_plan(
    inventory: RepositoryInventory,
    policies: Sequence[Policy],
    *,
    now: datetime,
    unwanted: bool = False,
    scope: Scope = lambda repository, fmt: True,
) -> tuple[Removal, ...]:
    """The removals for `inventory`, platform copies before the indexes that list them."""
    repository = inventory.repository
    copies = {d: c for d, c in inventory.copies.items() if scope(repository, c.producer.format)}
    listed = {child for copy in inventory.copies.values() for child in copy.children}
    platform_of = {
        child: index for index, children in inventory.index_children.items() for child in children
    }
    top: list[Removal] = []
    for copy in copies.values():
        if copy.digest in listed or _is_platform_copy(copy, inventory.subjects, platform_of):
            continue
        why = _top_reason(copy, inventory.subjects, policies, now, unwanted=unwanted)
        if why is not None:
            top.append(_removal(repository, copy, why))
    going = {removal.digest for removal in top}
    still_listed = {
        child
        for copy in inventory.copies.values()
        if copy.digest not in going and copy.exists
        for child in copy.children
    }
    platforms: list[Removal] = []
    for copy in copies.values():
        if copy.digest in going or copy.digest in still_listed:
            continue
        if copy.digest not in listed and not _is_platform_copy(
            copy, inventory.subjects, platform_of
        ):
            continue
        subject = inventory.subjects.get(copy.subject)
        if subject is None:
            reason: Reason = "orphan" if copy.exists else "stale"
        elif platform_of.get(copy.subject) in inventory.busy:
            continue
        else:
            reason = "leftover" if copy.exists else "stale"
        platforms.append(_removal(repository, copy, reason))
    return (*sorted(platforms, key=_order), *sorted(top, key=_order))


def _is_platform_copy(
    copy: ConvertedCopy, subjects: Mapping[str, Original | None], platform_of: Mapping[str, str]
) -> bool:
    """Whether `copy` was made for a platform of an original index, not for an original."""
    subject = subjects.get(copy.subject)
    return copy.subject in platform_of and (subject is None or not subject.tags)


def _top_reason(
    copy: ConvertedCopy,
    subjects: Mapping[str, Original | None],
    policies: Sequence[Policy],
    now: datetime,
    *,
    unwanted: bool,
) -> Reason | None:
    subject = subjects.get(copy.subject)
    if subject is None:
        return "orphan" if copy.exists else "stale"
    if not copy.exists:
        return "stale"
    if unwanted and _unwanted(copy.producer.format, subject, policies, now):
        return "unwanted"
    return None


def _unwanted(fmt: str, original: Original, policies: Iterable[Policy], now: datetime) -> bool:
    policies = tuple(policies)
    return (
        fmt not in desired_formats(policies, original, now)
        and next_due(policies, original, now) is None
    )


def _removal(repository: str, copy: ConvertedCopy, reason: Reason) -> Removal:
    return Removal(
        repository,
        copy.digest,
        copy.subject,
        copy.producer.format,
        reason,
        copy.tags,
        copy.exists,
    )


def _order(removal: Removal) -> tuple[str, str]:
    return (removal.subject, removal.digest)
