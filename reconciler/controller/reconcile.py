"""The reconcile step: one function decides, from the live state, what one key needs.

It re-reads the original (gone → forget), re-checks what the policies want of it now, re-reads
its referrers (the format is there → done), and otherwise converts, then checks that the new
referrer is visible. It never trusts the event that enqueued the key, so running it twice
converts nothing twice.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from converters.limits import LayerLimits
from harbor_api.errors import AcceldError, DigestMismatch, PermanentError, RegistryError
from harbor_api.oci import Index, Manifest, Platform
from policies.desired import FormatWanted, desired_formats, is_never_original, next_due
from policies.model import Policy
from reconciler.controller.observed_formats import ReferrerFormats
from reconciler.controller.sources import Source
from reconciler.conversion.disk_budget import DiskBudget, space_needed
from reconciler.conversion.image_conversion import ConversionResult, convert_image
from reconciler.conversion.layer_conversion import ConversionOptions
from reconciler.conversion.layer_process import ConverterCrashed
from reconciler.state.keys import Key
from reconciler.state.store import LayerCache

log = logging.getLogger(__name__)


class NotVisibleYet(AcceldError):
    """The converted image was pushed but is not among the original's referrers yet."""


@dataclass(frozen=True)
class Outcome:
    """What a reconcile found or did. `requeue_after` is set for an expected wait."""

    kind: Literal["converted", "present", "gone", "unwanted", "wait"]
    reason: str = ""
    requeue_after: float | None = None
    conversion: ConversionResult | None = None
    """What was converted and pushed, when `kind` is `converted`."""


def is_terminal(error: BaseException) -> bool:
    """Whether retrying `error` cannot help: the image itself is refused or broken."""
    return isinstance(error, PermanentError)


def is_transient(error: BaseException) -> bool:
    return isinstance(
        error, RegistryError | DigestMismatch | NotVisibleYet | ConverterCrashed | OSError
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


class Reconciler:
    def __init__(
        self,
        source: Source,
        policies: Sequence[Policy],
        formats: ReferrerFormats,
        layer_cache: LayerCache,
        *,
        work_dir: Path,
        budget: DiskBudget,
        limits: LayerLimits,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.source = source
        self.policies = tuple(policies)
        self.formats = formats
        self.layer_cache = layer_cache
        self.work_dir = work_dir
        self.budget = budget
        self.limits = limits
        self.now = now

    def reconcile(self, key: Key) -> Outcome:
        original = self.source.describe(key.repository, key.digest)
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
        if key.format in self.formats.observed(key.repository, key.digest):
            return Outcome("present", f"a {key.format} referrer exists")
        result = self._convert(key, want)
        self.formats.remember(result.converted.digest, key.format)
        for manifest in result.manifests:
            self.formats.remember(manifest.digest, key.format)
        if result.converted.digest not in {
            d.digest for d in self.source.registry.referrers(key.repository, key.digest)
        }:
            raise NotVisibleYet(
                f"{key.repository}@{result.converted.digest} was pushed but is not listed among "
                f"the referrers of {key.digest} yet"
            )
        return Outcome("converted", "converted and pushed", conversion=result)

    def _convert(self, key: Key, want: FormatWanted) -> ConversionResult:
        options = ConversionOptions(
            tag_suffix=want.options.tag_suffix,
            platforms=_platforms(self.policies, want),
            layer=dataclasses.replace(want.options.layer, limits=self.limits),
        )
        largest = self._largest_layer(key, options.platforms)
        with self.budget.reserve(space_needed(largest)):
            return convert_image(
                self.source.registry,
                key.repository,
                key.digest,
                key.format,
                options,
                work_dir=self.work_dir,
                layer_cache=self.layer_cache,
                source_tags=want.tags,
            )

    def _largest_layer(self, key: Key, platforms: tuple[Platform, ...]) -> int:
        registry = self.source.registry
        content = registry.get_manifest(key.repository, key.digest).content
        manifests: list[Manifest] = []
        if isinstance(content, Index):
            for child in content.image_manifests(platforms):
                child_content = registry.get_manifest(key.repository, child.digest).content
                if isinstance(child_content, Manifest):
                    manifests.append(child_content)
        else:
            manifests.append(content)
        return max((layer.size for m in manifests for layer in m.layers), default=0)
