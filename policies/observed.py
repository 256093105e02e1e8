"""Observed state: which accelerated format a referrer is, judged by its content.

Layer annotations decide (nydus: last layer is the bootstrap; eStargz: TOC digests; zstd:chunked:
manifest checksums). The driver annotation that acceld and Harbor's Go service put on their
outputs is a cheap first look when only a descriptor is at hand. The classification of a digest
never changes, so callers cache it; this module only decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from harbor_api.annotations import (
    DRIVER_NAME,
    NYDUS_BOOTSTRAP,
    STARGZ_TOC_DIGEST,
    ZSTD_CHUNKED_CHECKSUMS,
)
from harbor_api.oci import Descriptor, Index, Manifest
from policies.model import ESTARGZ, NYDUS, ZSTD_CHUNKED

_DRIVER_FORMATS = {
    "estargz": ESTARGZ,
    "nydus": NYDUS,
    "zstd-chunked": ZSTD_CHUNKED,
    "zstdchunked": ZSTD_CHUNKED,
}


def classify_annotations(annotations: Mapping[str, str]) -> str | None:
    """The format named by a driver annotation, or None when there is none we know."""
    return _DRIVER_FORMATS.get(annotations.get(DRIVER_NAME, "").strip().lower())


def classify_manifest(manifest: Manifest) -> str | None:
    """The format of an image manifest by its layers, else by its driver annotation."""
    layers = manifest.layers
    if layers and NYDUS_BOOTSTRAP in layers[-1].annotations:
        return NYDUS
    # zstd:chunked written by stargz-snapshotter also carries the eStargz TOC key, so the
    # zstd:chunked checksum is looked for first.
    if any(key in layer.annotations for layer in layers for key in ZSTD_CHUNKED_CHECKSUMS):
        return ZSTD_CHUNKED
    if any(STARGZ_TOC_DIGEST in layer.annotations for layer in layers):
        return ESTARGZ
    return classify_annotations(manifest.annotations)


def classify_index(index: Index, child_formats: Mapping[str, str | None]) -> str | None:
    """The format shared by every child of `index`, or None.

    `child_formats` maps child digests to their formats as far as the caller knows them;
    a child missing from it is judged by its descriptor's annotations.
    """
    by_annotation = classify_annotations(index.annotations)
    if by_annotation is not None:
        return by_annotation
    formats = {
        child_formats[child.digest]
        if child.digest in child_formats
        else classify_annotations(child.annotations)
        for child in index.manifests
    }
    return _single(formats)


def classify_referrer(
    item: Manifest | Index | Descriptor, child_formats: Mapping[str, str | None] | None = None
) -> str | None:
    """The format of a referrer.

    For a descriptor (from a referrers list) this is only the cheap look at its annotations:
    None then means "read the manifest", not "not accelerated".
    """
    if isinstance(item, Manifest):
        return classify_manifest(item)
    if isinstance(item, Index):
        return classify_index(item, child_formats or {})
    return classify_annotations(item.annotations)


def _single(formats: Iterable[str | None]) -> str | None:
    found = set(formats)
    if len(found) == 1:
        return found.pop()
    return None
