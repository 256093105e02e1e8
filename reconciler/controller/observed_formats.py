"""The accelerated formats an original already has, read from its referrers.

Each referrer is classified by content (`policies.observed`), and a digest's classification is
cached for ever in the classification cache: a manifest's content never changes. Harbor's
accessory list or a referrers descriptor often answers without reading the manifest; otherwise
the manifest is read once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from harbor_api.errors import NotFound
from harbor_api.harbor_models import NOT_ACCELERATED_ACCESSORY_TYPES, Accessory
from harbor_api.oci import Index, Manifest
from harbor_api.registry import RegistryClient
from policies.model import NYDUS
from policies.observed import classify_annotations, classify_index, classify_manifest
from policies.outdated import Producer, producer_of
from reconciler.state.store import MISSING, ClassificationCache


@dataclass(frozen=True)
class ReferrerCopy:
    """A referrer of an original in one format, and what made it (None: not acceld)."""

    digest: str
    producer: Producer | None


class ReferrerFormats:
    def __init__(self, registry: RegistryClient, classifications: ClassificationCache) -> None:
        self._registry = registry
        self._classifications = classifications
        self._seen: set[str] = set()
        self._seen_lock = threading.Lock()

    def drain_seen(self) -> set[str]:
        """The digests looked up since the last drain (a scan marks them seen, for retention)."""
        with self._seen_lock:
            seen, self._seen = self._seen, set()
        return seen

    def _saw(self, digest: str) -> None:
        with self._seen_lock:
            self._seen.add(digest)

    def observed(
        self, repository: str, digest: str, accessories: Iterable[Accessory] | None = None
    ) -> set[str | None]:
        """The format of each referrer of `repository@digest` (None: not accelerated).

        With `accessories` (from Harbor's artifact list) the referrers are not listed again.
        """
        if accessories is not None:
            return {self._accessory_format(repository, accessory) for accessory in accessories}
        found: set[str | None] = set()
        for descriptor in self._registry.referrers(repository, digest):
            self._saw(descriptor.digest)
            cached = self._classifications.get(descriptor.digest)
            if cached is not MISSING:
                found.add(cached)
                continue
            cheap = classify_annotations(descriptor.annotations)
            if cheap is None:
                found.add(self.classify(repository, descriptor.digest))
            else:
                # The descriptor carries the manifest's own annotations: remember the answer
                # so that Harbor's accessory list (which has none) needs no manifest read.
                self._classifications.put(descriptor.digest, cheap)
                found.add(cheap)
        return found

    def copies(self, repository: str, digest: str, fmt: str) -> list[ReferrerCopy]:
        """The referrers of `repository@digest` in `fmt`, with what made each.

        A referrers list (the API, or the fallback index) carries each manifest's annotations,
        so this costs one listing and no manifest read for a copy already classified.
        """
        return [
            ReferrerCopy(descriptor.digest, producer_of(descriptor.annotations, digest))
            for descriptor in self._registry.referrers(repository, digest)
            if self._descriptor_format(repository, descriptor.digest, descriptor.annotations) == fmt
        ]

    def _descriptor_format(
        self, repository: str, digest: str, annotations: Mapping[str, str]
    ) -> str | None:
        cached = self._classifications.get(digest)
        if cached is not MISSING:
            return cached
        return classify_annotations(annotations) or self.classify(repository, digest)

    def classify(self, repository: str, digest: str) -> str | None:
        """The format of the manifest `digest`, cached for ever."""
        self._saw(digest)
        cached = self._classifications.get(digest)
        if cached is not MISSING:
            return cached
        try:
            content = self._registry.get_manifest(repository, digest).content
        except NotFound:
            return None  # listed but gone: nothing to cache
        if isinstance(content, Manifest):
            fmt = classify_manifest(content)
        else:
            fmt = classify_index(content, self._child_formats(repository, content))
        self._classifications.put(digest, fmt)
        return fmt

    def remember(self, digest: str, fmt: str) -> None:
        """Record the format of a manifest acceld itself just pushed."""
        self._classifications.put(digest, fmt)

    def _accessory_format(self, repository: str, accessory: Accessory) -> str | None:
        if accessory.type == "accelerator.nydus":
            return NYDUS
        if accessory.type in NOT_ACCELERATED_ACCESSORY_TYPES:
            return None
        return self.classify(repository, accessory.digest)

    def _child_formats(self, repository: str, index: Index) -> dict[str, str | None]:
        return {child.digest: self.classify(repository, child.digest) for child in index.manifests}
