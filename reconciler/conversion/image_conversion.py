"""Convert an original image (manifest or index) and push the result as its referrer.

The output lives in the original's repository: OCI media types, `subject` = the original
manifest (platform omitted), acceld's driver and source annotations, and a tag
`<original tag><suffix>` only when the original has a tag. The same input and options give the
same digests, and what the registry already has is not pushed again.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from converters.nydus import NydusOptions
from harbor_api.annotations import (
    DRIVER_NAME,
    DRIVER_OPTIONS_DIGEST,
    DRIVER_VERSION,
    SOURCE_DIGEST,
)
from harbor_api.errors import NotFound
from harbor_api.oci import (
    IMAGE_CONFIG_TYPES,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Index,
    Manifest,
    Platform,
    is_digest,
    sha256_digest,
)
from harbor_api.reference import is_valid_tag
from harbor_api.registry import RegistryClient
from harbor_api.version import ACCELD_VERSION
from policies.desired import original_of, why_not_an_image, why_not_an_original
from policies.model import LayerOptions
from policies.outdated import options_digest
from reconciler.conversion.config_rewrite import config_platform, rewrite_config
from reconciler.conversion.disk_budget import Reservation, unbounded
from reconciler.conversion.errors import (
    InvalidTarget,
    NoMatchingPlatform,
    NotAnImage,
    NotAnOriginal,
)
from reconciler.conversion.layer_conversion import (
    ConversionOptions,
    LayerJob,
    LayerProgress,
    LayerResult,
    ProgressCallback,
    check_convertible_layer,
    check_format,
    convert_registry_layer,
)
from reconciler.conversion.nydus_bootstrap import push_bootstrap
from reconciler.state.store import LayerCache

__all__ = [
    "ConversionOptions",
    "ConversionResult",
    "ConvertedManifest",
    "LayerCache",
    "LayerProgress",
    "LayerResult",
    "convert_image",
    "target_tags",
]


_MAX_CONFIG_BYTES = 8 << 20


@dataclass(frozen=True)
class ConvertedManifest:
    """One converted image manifest (a platform of an index, or the whole image)."""

    platform: Platform | None
    original: Descriptor
    digest: str
    size: int
    config_digest: str
    layers: tuple[LayerResult, ...]
    metadata_bytes_uploaded: int
    """The config's bytes (and a nydus bootstrap's) uploaded beside the converted layers."""
    pushed: bool
    """False when the registry already had it, linked to its subject."""

    @property
    def bytes_downloaded(self) -> int:
        return sum(layer.bytes_downloaded for layer in self.layers)

    @property
    def bytes_uploaded(self) -> int:
        return self.metadata_bytes_uploaded + sum(layer.bytes_uploaded for layer in self.layers)


@dataclass(frozen=True)
class ConversionResult:
    repository: str
    format: str
    original: Descriptor
    converted: Descriptor
    tags: tuple[str, ...]
    """Tags given to the converted image; empty when the original was named by digest only."""
    manifests: tuple[ConvertedManifest, ...]
    """The converted image manifests (one per converted platform of an index)."""
    pushed: bool
    """False when the registry already had the converted image and its tags: nothing new."""
    seconds: float

    @property
    def original_digest(self) -> str:
        return self.original.digest

    @property
    def converted_digest(self) -> str:
        return self.converted.digest

    @property
    def tag(self) -> str | None:
        return self.tags[0] if self.tags else None

    @property
    def bytes_downloaded(self) -> int:
        """Blob bytes read from the registry (source layers that were not in the cache)."""
        return sum(m.bytes_downloaded for m in self.manifests)

    @property
    def bytes_uploaded(self) -> int:
        """Blob bytes written to the registry (converted layers and configs it lacked)."""
        return sum(m.bytes_uploaded for m in self.manifests)


class RegistryImages:
    """Image conversion against one registry, as the reconcile step uses it."""

    def __init__(self, registry: RegistryClient, *, work_dir: Path, layer_cache: LayerCache):
        self.registry = registry
        self.work_dir = work_dir
        self.layer_cache = layer_cache

    def largest_layer(self, repository: str, digest: str, platforms: Sequence[Platform]) -> int:
        """The compressed size of the largest layer conversion would read."""
        content = self.registry.get_manifest(repository, digest).content
        manifests: list[Manifest] = []
        if isinstance(content, Index):
            for child in content.image_manifests(platforms):
                child_content = self.registry.get_manifest(repository, child.digest).content
                if isinstance(child_content, Manifest):
                    manifests.append(child_content)
        else:
            manifests.append(content)
        return max((layer.size for m in manifests for layer in m.layers), default=0)

    def convert(
        self,
        repository: str,
        digest: str,
        format: str,
        options: ConversionOptions,
        source_tags: Sequence[str],
        room: Reservation | None = None,
    ) -> ConversionResult:
        return convert_image(
            self.registry,
            repository,
            digest,
            format,
            options,
            work_dir=self.work_dir,
            layer_cache=self.layer_cache,
            source_tags=source_tags,
            room=room,
        )

    def referrer_digests(self, repository: str, digest: str) -> list[str]:
        return [d.digest for d in self.registry.referrers(repository, digest)]

    def retire(self, repository: str, subject_digest: str, digest: str) -> None:
        """Delete an outdated copy, then its fallback-index entry (none on a registry with the
        referrers API). Its platform copies stay for `acceld prune`: another converted index
        of the repository may list them too."""
        with contextlib.suppress(NotFound):
            self.registry.delete_manifest(repository, digest)
        self.registry.remove_from_fallback_index(repository, subject_digest, (digest,))


def target_tags(source_tags: Sequence[str], suffix: str) -> tuple[str, ...]:
    """`<tag><suffix>` for each source tag, refusing results that are not valid tags."""
    if not suffix:
        raise InvalidTarget("the tag suffix is empty: the converted tag would replace the original")
    out = []
    for tag in source_tags:
        target = tag + suffix
        if not is_valid_tag(target):
            raise InvalidTarget(
                f"target tag {target!r} (tag {tag!r} + suffix {suffix!r}) is not a valid tag: "
                "at most 128 of letters, digits, _ . - and not starting with . or -"
            )
        out.append(target)
    return tuple(dict.fromkeys(out))


def convert_image(
    registry: RegistryClient,
    repository: str,
    reference: str,
    format: str,
    options: ConversionOptions,
    *,
    work_dir: Path,
    layer_cache: LayerCache,
    progress: ProgressCallback | None = None,
    source_tags: Sequence[str] | None = None,
    room: Reservation | None = None,
) -> ConversionResult:
    """Convert `repository` at `reference` (a tag or a digest) to `format` and push it.

    The converted image is tagged `<tag><suffix>` for each of `source_tags`, which defaults to
    `reference` when that is a tag and to none when it is a digest. A reconciler that works by
    digest passes the original's tags here. Every byte written to `work_dir` is claimed from
    `room` (unbounded when None) before it is written.
    """
    started = time.monotonic()
    check_format(format, options.layer)
    if source_tags is None:
        source_tags = () if is_digest(reference) else (reference,)
    tags = target_tags(source_tags, options.tag_suffix)
    fetched = registry.get_manifest(repository, reference)
    original = fetched.descriptor
    where = f"{repository}@{fetched.digest}"
    content = fetched.content
    _refuse_non_original(content, where)
    for tag in tags:
        _check_tag_is_ours_to_move(registry, repository, tag)
    context = _Context(
        registry,
        repository,
        format,
        options,
        work_dir,
        layer_cache,
        progress,
        room if room is not None else unbounded(),
    )
    converted_content: Manifest | Index
    if isinstance(content, Index):
        manifests = tuple(
            context.convert_manifest(child, where)
            for child in _select_platforms(content, options.platforms, where)
        )
        converted_content = Index(
            manifests=tuple(
                Descriptor(OCI_MANIFEST, m.digest, m.size, platform=m.platform) for m in manifests
            ),
            media_type=OCI_INDEX,
            subject=original.without_platform(),
            annotations=_annotations(content.annotations, format, options.layer, original.digest),
        )
        pushed = _push(registry, repository, converted_content, original.digest, tags)
    else:
        single = context.convert_single(content, original, where)
        converted_content = single.content
        pushed = _push(registry, repository, converted_content, original.digest, tags)
        manifests = (single.result(pushed),)
    return ConversionResult(
        repository=repository,
        format=format,
        original=original,
        converted=_descriptor(converted_content),
        tags=tags,
        manifests=manifests,
        pushed=pushed or any(m.pushed or m.bytes_uploaded for m in manifests),
        seconds=time.monotonic() - started,
    )


@dataclass(frozen=True)
class _Single:
    """A converted image manifest not yet pushed."""

    platform: Platform | None
    original: Descriptor
    content: Manifest
    config_digest: str
    metadata_bytes_uploaded: int
    layers: tuple[LayerResult, ...]

    def result(self, pushed: bool) -> ConvertedManifest:
        descriptor = _descriptor(self.content)
        return ConvertedManifest(
            platform=self.platform,
            original=self.original,
            digest=descriptor.digest,
            size=descriptor.size,
            config_digest=self.config_digest,
            layers=self.layers,
            metadata_bytes_uploaded=self.metadata_bytes_uploaded,
            pushed=pushed,
        )


@dataclass(frozen=True)
class _Context:
    registry: RegistryClient
    repository: str
    format: str
    options: ConversionOptions
    work_dir: Path
    cache: LayerCache
    progress: ProgressCallback | None
    room: Reservation

    def convert_manifest(self, child: Descriptor, index_where: str) -> ConvertedManifest:
        """Convert one platform manifest of an index and push it, untagged, as a referrer."""
        fetched = self.registry.get_manifest(self.repository, child.digest)
        where = f"{index_where} platform {child.platform}"
        content = fetched.content
        if not isinstance(content, Manifest):
            raise NotAnImage(f"{where}: {child.digest} is a nested index, not an image manifest")
        _refuse_non_original(content, where)
        original = fetched.descriptor
        single = self.convert_single(content, original, where, child.platform)
        pushed = _push(self.registry, self.repository, single.content, original.digest, ())
        return single.result(pushed)

    def convert_single(
        self,
        manifest: Manifest,
        original: Descriptor,
        where: str,
        platform: Platform | None = None,
    ) -> _Single:
        """Convert the layers and config of an image manifest; the manifest is not pushed."""
        if manifest.config.media_type not in IMAGE_CONFIG_TYPES:
            raise NotAnImage(
                f"{where}: config media type {manifest.config.media_type!r} is not an image "
                f"config (artifact type {manifest.effective_artifact_type!r}); "
                "only container images are converted"
            )
        for i, layer in enumerate(manifest.layers):
            check_convertible_layer(layer, f"{where}: layers[{i}]")
        config_raw = self.registry.read_blob(
            self.repository, manifest.config.digest, _MAX_CONFIG_BYTES
        )
        if platform is None:
            platform = config_platform(config_raw)
            _check_platform(platform, self.options.platforms, where)
        label = str(platform) if platform else ""
        layers = tuple(
            convert_registry_layer(
                self.registry,
                LayerJob(self.repository, layer, label, i, len(manifest.layers)),
                self.format,
                self.options,
                work_dir=self.work_dir,
                cache=self.cache,
                progress=self.progress,
                room=self.room,
            )
            for i, layer in enumerate(manifest.layers)
        )
        descriptors = [layer.converted for layer in layers]
        diff_ids = [layer.diff_id for layer in layers]
        added_history: list[dict[str, str]] = []
        uploaded = 0
        if isinstance(self.options.layer, NydusOptions):
            bootstrap = push_bootstrap(
                self.registry,
                self.repository,
                descriptors,
                self.options.layer,
                self.work_dir,
                self.room,
            )
            descriptors.append(bootstrap.descriptor)
            diff_ids.append(bootstrap.diff_id)
            added_history.append(bootstrap.history())
            uploaded += bootstrap.bytes_uploaded
        config = rewrite_config(
            config_raw,
            diff_ids,
            added_history=added_history,
            keep_parent_image=isinstance(self.options.layer, NydusOptions),
        )
        config_digest = sha256_digest(config)
        if not self.registry.blob_exists(self.repository, config_digest):
            self.registry.upload_blob(self.repository, config, config_digest, len(config))
            uploaded += len(config)
        content = Manifest(
            config=Descriptor(OCI_CONFIG, config_digest, len(config)),
            layers=tuple(descriptors),
            media_type=OCI_MANIFEST,
            subject=original.without_platform(),
            annotations=_annotations(
                manifest.annotations, self.format, self.options.layer, original.digest
            ),
        )
        return _Single(platform, original, content, config_digest, uploaded, layers)


def _refuse_non_original(content: Manifest | Index, where: str) -> None:
    """The loop guard, as the reconcile step applies it: referrers and accelerated copies are
    never originals, and only container images are converted."""
    original = original_of("", "", content, tags=(), push_time=datetime.fromtimestamp(0, UTC))
    copy = why_not_an_original(original)
    if copy is not None:
        raise NotAnOriginal(f"{where}: {copy}, not an original image")
    other = why_not_an_image(original)
    if other is not None:
        raise NotAnImage(f"{where}: {other}; only container images are converted")


def _select_platforms(
    index: Index, wanted: Sequence[Platform], where: str
) -> tuple[Descriptor, ...]:
    candidates = index.image_manifests(wanted)
    if not candidates:
        available = ", ".join(str(c.platform) for c in index.manifests if c.platform) or "none"
        asked = ", ".join(str(w) for w in wanted) or "any"
        raise NoMatchingPlatform(
            f"{where}: no image manifest for platforms {asked} (the index has: {available})"
        )
    return candidates


def _annotations(
    original: Mapping[str, str], format: str, options: LayerOptions, source_digest: str
) -> dict[str, str]:
    """The original's annotations, with acceld's driver and source annotations over them:
    what made the copy (driver, version, options digest), so it can be found outdated."""
    return {
        **original,
        DRIVER_NAME: format,
        DRIVER_VERSION: ACCELD_VERSION,
        DRIVER_OPTIONS_DIGEST: options_digest(format, options),
        SOURCE_DIGEST: source_digest,
    }


def _push(
    registry: RegistryClient,
    repository: str,
    content: Manifest | Index,
    subject_digest: str,
    tags: Sequence[str],
) -> bool:
    """Push `content` as a referrer of `subject_digest` under `tags`; False if all was there."""
    digest = _descriptor(content).digest
    held = registry.head_manifest(repository, digest) is not None
    listed = held and any(
        referrer.digest == digest for referrer in registry.referrers(repository, subject_digest)
    )
    missing_tags = [tag for tag in tags if not _tag_points_at(registry, repository, tag, digest)]
    if listed and not missing_tags:
        return False
    # An earlier run may have died between its push and the fallback index: list what the
    # registry holds rather than push it again (a registry with the referrers API needs a push).
    if not listed and not (held and registry.link_referrer(repository, content)):
        registry.push_referrer(repository, content, missing_tags[0] if missing_tags else "")
        missing_tags = missing_tags[1:]
    for tag in missing_tags:
        registry.put_manifest(repository, tag, content)
    return True


def _descriptor(content: Manifest | Index) -> Descriptor:
    raw = content.encode()
    return Descriptor(content.media_type, sha256_digest(raw), len(raw))


def _check_tag_is_ours_to_move(registry: RegistryClient, repository: str, tag: str) -> None:
    """Refuse a target tag that names something other than an accelerated copy.

    Moving `v1-esgz` from the copy of an older `v1` to the new one is the point of the tag; but
    a user's own image that happens to be called `v1-esgz` is an original and is never touched.
    """
    if registry.head_manifest(repository, tag) is None:
        return
    existing = registry.get_manifest(repository, tag)
    content = existing.content
    if content.subject is None and SOURCE_DIGEST not in content.annotations:
        raise InvalidTarget(
            f"{repository}:{tag} already names {existing.digest}, which is not an accelerated "
            "copy (no subject, no source annotation); refusing to move the tag of an original"
        )


def _tag_points_at(registry: RegistryClient, repository: str, tag: str, digest: str) -> bool:
    found = registry.head_manifest(repository, tag)
    return found is not None and found.digest == digest


def _check_platform(platform: Platform | None, wanted: Sequence[Platform], where: str) -> None:
    if wanted and (platform is None or not platform.is_one_of(wanted)):
        asked = ", ".join(str(w) for w in wanted)
        raise NoMatchingPlatform(f"{where}: the image is for {platform}, not for {asked}")
