"""Desired minus observed, and the plan that sums it up per policy and format. Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from policies.desired import FormatWanted
from policies.model import Policy


def missing_formats(
    desired: Mapping[str, FormatWanted], observed: Iterable[str | None]
) -> tuple[FormatWanted, ...]:
    """The wanted formats that no observed referrer provides, ordered by format name.

    `observed` holds the classification of each referrer of the original (None for referrers
    that are not accelerated images, such as signatures).
    """
    present = set(observed)
    return tuple(desired[fmt] for fmt in sorted(desired) if fmt not in present)


@dataclass(frozen=True)
class PlanItem:
    """One conversion to do: `format` of `repository@digest`, wanted by `policies`."""

    repository: str
    digest: str
    format: str
    policies: tuple[str, ...]
    tags: tuple[str, ...]


def plan_items(
    repository: str, digest: str, missing: Iterable[FormatWanted]
) -> tuple[PlanItem, ...]:
    return tuple(
        PlanItem(repository, digest, want.format, want.policies, want.tags) for want in missing
    )


@dataclass(frozen=True)
class Plan:
    """What a scan found missing."""

    items: tuple[PlanItem, ...]

    def missing_by_policy_format(
        self, policies: Iterable[Policy] = ()
    ) -> dict[tuple[str, str], int]:
        """(policy, format) → conversions missing; an item wanted by two policies counts in both.

        Every format of every enabled policy in `policies` is present, with 0 when nothing is
        missing, so a gauge drops to zero instead of keeping its last value.
        """
        counts: Counter[tuple[str, str]] = Counter(
            {(p.name, fmt): 0 for p in policies if p.enabled for fmt in p.formats}
        )
        for item in self.items:
            for policy in item.policies:
                counts[(policy, item.format)] += 1
        return dict(sorted(counts.items()))
