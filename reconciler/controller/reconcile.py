"""The reconcile step: one function decides, from the live state, what one key needs.

It re-reads the original (gone → forget), re-checks what the policies want of it now, re-reads
its referrers (the format is there → done), and otherwise converts, then checks that the new
referrer is visible. It never trusts the event that enqueued the key, so running it twice
converts nothing twice.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from converters.limits import LayerLimits
from harbor_api.errors import AcceldError, DigestMismatch, PermanentError, RegistryError
from harbor_api.oci import Platform
from policies.desired import FormatWanted, Original, desired_formats, is_never_original, next_due
from policies.model import Policy, ReconvertMode
from policies.outdated import first_outdated_reason, made_by_this_acceld, options_digest
from reconciler.controller.observed_formats import ReferrerCopy
from reconciler.conversion.disk_budget import DiskBudget, Reservation, WorkDirBusy, space_needed
from reconciler.conversion.image_conversion import ConversionResult
from reconciler.conversion.layer_conversion import ConversionOptions
from reconciler.conversion.layer_process import ConverterCrashed
from reconciler.state.keys import Key

log = logging.getLogger(__name__)


class NotVisibleYet(AcceldError):
    """The converted image was pushed but is not among the original's referrers yet."""


@dataclass(frozen=True)
class Outcome:
    """What a reconcile found or did. `requeue_after` is set for an expected wait."""

    kind: Literal["converted", "replaced", "present", "gone", "unwanted", "wait"]
    reason: str = ""
    requeue_after: float | None = None
    conversion: ConversionResult | None = None
    """What was converted and pushed, when `kind` is `converted` or `replaced`."""
    retired: tuple[str, ...] = ()
    """The outdated copies deleted once their replacement was listed (`replaced`)."""


def is_terminal(error: BaseException) -> bool:
    """Whether retrying `error` cannot help: the image itself is refused or broken."""
    return isinstance(error, PermanentError)


def is_transient(error: BaseException) -> bool:
    """Whether `error` is an expected failure that a later attempt may not meet."""
    return not is_terminal(error) and isinstance(
        error,
        RegistryError | DigestMismatch | NotVisibleYet | ConverterCrashed | WorkDirBusy | OSError,
    )


def _platforms(policies: Sequence[Policy], want: FormatWanted) -> tuple[Platform, ...]:
    """The union of the wanting policies' platforms; empty (all) if any of them wants all."""
    chosen: list[Platform] = []
    for policy in policies:
        if policy.name not in want.policies:
            continue
        if not policy.platforms:
            return ()
        chosen.extend(p for p in policy.platforms if p not in chosen)
    return tuple(chosen)


class Originals(Protocol):
    """Where the reconcile step reads an original afresh."""

    def describe(self, repository: str, digest: str) -> Original | None:
        """The original as it is now; None when it is gone."""


class ObservedFormats(Protocol):
    """Which accelerated formats an original's referrers are."""

    def observed(self, repository: str, digest: str) -> set[str | None]: ...

    def remember(self, digest: str, format: str) -> None:
        """Record the format of a manifest acceld just pushed (no read needed later)."""

    def copies(self, repository: str, digest: str, fmt: str) -> Sequence[ReferrerCopy]:
        """The referrers of the original in `fmt`, with what made each."""


class Images(Protocol):
    """The registry as the reconcile step needs it: convert, and see what was pushed."""

    def largest_layer(self, repository: str, digest: str, platforms: Sequence[Platform]) -> int: ...

    def convert(
        self,
        repository: str,
        digest: str,
        format: str,
        options: ConversionOptions,
        source_tags: Sequence[str],
        room: Reservation,
    ) -> ConversionResult:
        """Convert and push; every byte written to the work directory is claimed from `room`."""

    def referrer_digests(self, repository: str, digest: str) -> Iterable[str]: ...

    def retire(self, repository: str, subject_digest: str, digest: str) -> None:
        """Delete the copy `digest` of `subject_digest` and its fallback-index entry."""


class Reconciler:
    """Decides and does what one key `(repository, digest, format)` needs, from live state.

    It holds no state of its own between calls: the original, the policies' wishes and the
    referrers are read afresh each time, so a duplicate or stale key costs one cheap look.
    Conversions reserve room in the work directory's `budget` for their largest layer and
    grow it by what they really write.
    """

    def __init__(
        self,
        originals: Originals,
        policies: Sequence[Policy],
        referrer_formats: ObservedFormats,
        images: Images,
        *,
        budget: DiskBudget,
        limits: LayerLimits,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.originals = originals
        self.policies = tuple(policies)
        self.referrer_formats = referrer_formats
        self.images = images
        self.budget = budget
        self.limits = limits
        self.now = now

    def reconcile(self, key: Key) -> Outcome:
        """What `key` needed: an `Outcome`, or an error (`is_terminal` ones quarantine it)."""
        original = self.originals.describe(key.repository, key.digest)
        if original is None:
            return Outcome("gone", "the original no longer exists")
        refused = is_never_original(original)
        if refused is not None:
            return Outcome("unwanted", f"not an original: {refused}")
        moment = self.now()
        want = desired_formats(self.policies, original, moment).get(key.format)
        if want is None:
            due = next_due(self.policies, original, moment)
            if due is not None:
                return Outcome("wait", "younger than min_age", (due - moment).total_seconds())
            return Outcome("unwanted", f"no enabled policy wants {key.format} for it")
        if key.format in self.referrer_formats.observed(key.repository, key.digest):
            outdated = self._outdated(key, want)
            if outdated:
                return self._replace(key, want, outdated)
            return Outcome("present", f"a referrer in {key.format} exists")
        result = self._convert(key, want)
        self._remember(key, result)
        self._check_visible(key, result)
        return Outcome("converted", "converted and pushed", conversion=result)

    def _outdated(self, key: Key, want: FormatWanted) -> dict[str, str]:
        """The copies of `key` some wanting policy's `reconvert` rule replaces, with why.

        Nothing is read while every rule is `never`. Only copies acceld made can be outdated,
        never what this acceld would make again (the rule might otherwise never be met).
        """
        if all(rule.mode is ReconvertMode.NEVER for rule in want.reconvert):
            return {}
        wanted = options_digest(key.format, want.options.layer)
        outdated: dict[str, str] = {}
        for copy in self.referrer_formats.copies(key.repository, key.digest, key.format):
            reason = None
            if copy.producer is not None and not made_by_this_acceld(copy.producer, wanted):
                reason = first_outdated_reason(want.reconvert, copy.producer, wanted)
            if reason is not None:
                outdated[copy.digest] = reason
        return outdated

    def _replace(self, key: Key, want: FormatWanted, outdated: dict[str, str]) -> Outcome:
        """Push the new copy (tags moved to it), check it is listed, then delete the old:
        the original has an accelerated copy at every moment. A replacement killed half way
        is finished by the next reconcile, which finds the old copies still outdated."""
        result = self._convert(key, want)
        self._remember(key, result)
        self._check_visible(key, result)
        retired = tuple(d for d in outdated if d != result.converted.digest)
        for digest in retired:
            self.images.retire(key.repository, key.digest, digest)
            log.info(
                "replaced an outdated copy",
                extra={
                    "old": digest,
                    "new": result.converted.digest,
                    "reason": outdated[digest],
                },
            )
        reason = "; ".join(dict.fromkeys(outdated.values()))
        return Outcome("replaced", reason, conversion=result, retired=retired)

    def _remember(self, key: Key, result: ConversionResult) -> None:
        self.referrer_formats.remember(result.converted.digest, key.format)
        for manifest in result.manifests:
            self.referrer_formats.remember(manifest.digest, key.format)

    def _check_visible(self, key: Key, result: ConversionResult) -> None:
        if result.converted.digest not in set(
            self.images.referrer_digests(key.repository, key.digest)
        ):
            raise NotVisibleYet(
                f"{key.repository}@{result.converted.digest} was pushed but is not listed among "
                f"the referrers of {key.digest} yet"
            )

    def _convert(self, key: Key, want: FormatWanted) -> ConversionResult:
        options = ConversionOptions(
            tag_suffix=want.options.tag_suffix,
            platforms=_platforms(self.policies, want),
            layer=dataclasses.replace(want.options.layer, limits=self.limits),
        )
        largest = self.images.largest_layer(key.repository, key.digest, options.platforms)
        with self.budget.reserve(space_needed(largest)) as room:
            return self.images.convert(
                key.repository, key.digest, key.format, options, want.tags, room
            )
