"""Convert one layer of an image inside its repository.

Look the source layer up in the layer cache first: a hit only needs the converted blob to be in
the target repository (it is, or it can be mounted from where it was converted). A miss, or a hit
whose blob is gone from the registry, downloads the source to a private directory under the work
dir, converts it there, uploads the result unless the registry already has it, records it in the
cache, and removes the directory.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from converters.estargz import EstargzOptions
from harbor_api.errors import Denied, NotFound
from harbor_api.oci import (
    CONVERTIBLE_LAYER_TYPES,
    NON_DISTRIBUTABLE_LAYER_TYPES,
    Descriptor,
    Platform,
)
from harbor_api.registry import RegistryClient
from harbor_api.version import ACCELD_VERSION
from policies.model import (
    DEFAULT_TAG_SUFFIX,
    ESTARGZ,
    LAYER_OPTIONS,
    SUPPORTED_FORMATS,
    LayerOptions,
)
from policies.outdated import options_settings, settings_digest
from reconciler.conversion.disk_budget import BudgetTooSmall, Reservation, unbounded
from reconciler.conversion.errors import NotAnImage, UnsupportedFormat, UnsupportedLayer
from reconciler.conversion.layer_process import convert_layer_file
from reconciler.state.store import CachedLayer, LayerCache


@dataclass(frozen=True)
class ConversionOptions:
    """How to convert one image: where the result is tagged, which platforms of an index, and
    the converter's own options, which alone decide the converted layers' bytes."""

    tag_suffix: str = DEFAULT_TAG_SUFFIX[ESTARGZ]
    platforms: tuple[Platform, ...] = ()
    """Platforms of an index to convert; empty converts every platform."""
    layer: LayerOptions = field(default_factory=EstargzOptions)


def layer_cache_key(format: str, options: LayerOptions) -> str:
    """Identifies the output bytes `options` give for `format`, for the layer cache.

    The acceld version is part of it: a new converter may write different bytes. A nydus
    `prefetch` list is not: it goes into the merged bootstrap only, not into any layer blob.
    """
    settings = options_settings(format, options)
    settings.pop("prefetch", None)
    settings["acceld"] = ACCELD_VERSION
    return settings_digest(settings)


@dataclass(frozen=True)
class LayerProgress:
    """One step of one layer, for a progress display."""

    platform: str
    index: int
    count: int
    source_digest: str
    source_size: int
    stage: str
    """`cached`, `downloading`, `converting`, `uploading` or `done`."""


ProgressCallback = Callable[[LayerProgress], None]


@dataclass(frozen=True)
class LayerResult:
    source: Descriptor
    converted: Descriptor
    """OCI gzip media type, with the format's annotations."""
    diff_id: str
    cached: bool
    """Reused from the layer cache, without downloading or converting."""
    seconds: float
    bytes_downloaded: int
    bytes_uploaded: int


@dataclass(frozen=True)
class LayerJob:
    """One layer to convert and where its progress goes."""

    repository: str
    source: Descriptor
    platform: str
    index: int
    count: int

    def progress(self, stage: str) -> LayerProgress:
        return LayerProgress(
            self.platform, self.index, self.count, self.source.digest, self.source.size, stage
        )


def check_convertible_layer(layer: Descriptor, where: str) -> None:
    """Refuse layers no converter may read: foreign, non-distributable, or not a tar layer."""
    if layer.media_type in NON_DISTRIBUTABLE_LAYER_TYPES or layer.urls:
        raise UnsupportedLayer(
            f"{where}: {layer.digest} is a non-distributable layer ({layer.media_type}); "
            "acceld does not convert images with foreign layers"
        )
    if layer.media_type not in CONVERTIBLE_LAYER_TYPES:
        raise NotAnImage(
            f"{where}: media type {layer.media_type!r} is not an image layer "
            "(expected tar, tar+gzip or tar+zstd)"
        )


def check_format(format: str, options: LayerOptions) -> None:
    """Refuse a format acceld does not write, or options of another format's converter."""
    if format not in SUPPORTED_FORMATS:
        expected = ", ".join(SUPPORTED_FORMATS)
        raise UnsupportedFormat(f"format {format!r} is not supported; expected one of {expected}")
    if not isinstance(options, LAYER_OPTIONS[format]):
        raise UnsupportedFormat(
            f"format {format!r} cannot be written with {type(options).__name__}"
        )


def convert_registry_layer(
    registry: RegistryClient,
    job: LayerJob,
    format: str,
    options: ConversionOptions,
    *,
    work_dir: Path,
    cache: LayerCache,
    progress: ProgressCallback | None = None,
    room: Reservation | None = None,
) -> LayerResult:
    """The converted descriptor of `job.source`, present in `job.repository` when this returns.

    Every byte written to `work_dir` (download, spill, output) is claimed from `room` first.
    """
    started = time.monotonic()
    report = progress or _ignore
    options_key = layer_cache_key(format, options.layer)
    hit = cache.get(job.source.digest, format, options_key)
    if hit is not None and _blob_present(registry, job.repository, hit):
        report(job.progress("cached"))
        return LayerResult(
            job.source, hit.descriptor, hit.diff_id, True, time.monotonic() - started, 0, 0
        )
    if hit is not None:
        # Its blob is gone (the registry's garbage collection): the row is stale, whatever
        # becomes of this conversion.
        cache.forget(job.source.digest, format, options_key)
    room = room if room is not None else unbounded()
    work_dir.mkdir(parents=True, exist_ok=True)
    with (
        _claims_of(room, job),
        tempfile.TemporaryDirectory(dir=work_dir, prefix="layer-") as private,
    ):
        source_path, converted_path = Path(private) / "source", Path(private) / "converted"
        report(job.progress("downloading"))
        downloaded = registry.download_blob(
            job.repository, job.source.digest, source_path, room.claim
        )
        report(job.progress("converting"))
        converted = convert_layer_file(
            source_path,
            converted_path,
            format,
            options.layer,
            Path(private),
            timeout=conversion_timeout(downloaded),
            source_digest=job.source.digest,
            room=room,
        )
        source_path.unlink()
        room.release(downloaded)
        report(job.progress("uploading"))
        uploaded = 0
        if not registry.blob_exists(job.repository, converted.digest):
            registry.upload_blob(job.repository, converted_path, converted.digest, converted.size)
            uploaded = converted.size
    descriptor = Descriptor(
        converted.media_type, converted.digest, converted.size, converted.annotations
    )
    cache.put(
        job.source.digest,
        format,
        options_key,
        CachedLayer(descriptor, converted.diff_id, job.repository),
    )
    report(job.progress("done"))
    return LayerResult(
        job.source,
        descriptor,
        converted.diff_id,
        False,
        time.monotonic() - started,
        downloaded,
        uploaded,
    )


@contextmanager
def _claims_of(room: Reservation, job: LayerJob) -> Iterator[None]:
    """What the layer's files claim of `room`, released when they are gone; a layer the whole
    budget cannot hold is named."""
    before = room.used
    try:
        yield
    except BudgetTooSmall as exc:
        raise BudgetTooSmall(f"{job.repository}@{job.source.digest}: {exc}") from None
    finally:
        room.release(room.used - before)


def conversion_timeout(source_bytes: int) -> float:
    """How long one layer may take: generous (1 MiB/s of source) but bounded, so a hung
    converter cannot hold a worker for ever."""
    return 600.0 + source_bytes / (1 << 20)


def _blob_present(registry: RegistryClient, repository: str, hit: CachedLayer) -> bool:
    """Whether the cached blob is in `repository`, mounting it from where it was converted."""
    digest = hit.descriptor.digest
    if registry.blob_exists(repository, digest):
        return True
    if not hit.repository or hit.repository == repository:
        return False
    try:
        return registry.mount_blob(repository, digest, hit.repository)
    except (NotFound, Denied):
        return False


def _ignore(_: LayerProgress) -> None:
    return None
