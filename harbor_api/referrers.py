"""Referrers without a registry: the descriptor a referrer is listed under, the fallback tag index.

Pure functions; `RegistryClient` does the I/O. The rules are those of the OCI distribution spec
1.1 for registries without the referrers API.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from typing import Any

from harbor_api.errors import InvalidManifest
from harbor_api.oci import OCI_INDEX, Descriptor, Index, Manifest, canonical_json


def referrer_descriptor(content: Manifest | Index, digest: str, size: int) -> Descriptor:
    """How `content` appears in a referrers list: artifactType and all its annotations."""
    artifact_type = (
        content.effective_artifact_type if isinstance(content, Manifest) else content.artifact_type
    )
    return Descriptor(
        media_type=content.media_type,
        digest=digest,
        size=size,
        annotations=dict(content.annotations),
        artifact_type=artifact_type,
    )


def subject_of(content: Manifest | Index) -> Descriptor:
    if content.subject is None:
        raise InvalidManifest("a referrer needs a subject: this manifest has none")
    return content.subject


def fallback_index_with(current: Manifest | Index | None, descriptor: Descriptor) -> Index | None:
    """The fallback index with `descriptor` appended; None when it is already listed.

    `current` is what the fallback tag holds (None when the tag does not exist).
    """
    if isinstance(current, Manifest):
        raise InvalidManifest("the referrers fallback tag holds an image manifest, not an index")
    manifests = current.manifests if current is not None else ()
    if any(m.digest == descriptor.digest for m in manifests):
        return None
    annotations = current.annotations if current is not None else {}
    return Index(manifests=(*manifests, descriptor), media_type=OCI_INDEX, annotations=annotations)


def filter_by_artifact_type(
    descriptors: Iterable[Descriptor], artifact_type: str
) -> list[Descriptor]:
    """The descriptors of `artifact_type` (all of them when it is empty)."""
    return [d for d in descriptors if not artifact_type or d.artifact_type == artifact_type]


def fallback_index_without(raw: bytes, digests: Collection[str]) -> bytes | None:
    """The fallback index `raw` without the entries for `digests`; b"" when nothing is left,
    None when none of them is listed.

    Works on the JSON itself, so every other entry keeps each of its fields as written, even
    fields this client does not model (another tool's entries are never changed).
    """
    try:
        document: Any = json.loads(raw)
    except ValueError:
        raise InvalidManifest("the referrers fallback tag does not hold JSON") from None
    entries = document.get("manifests") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise InvalidManifest("the referrers fallback tag does not hold an index")
    kept = [e for e in entries if not (isinstance(e, dict) and e.get("digest") in digests)]
    if len(kept) == len(entries):
        return None
    if not kept:
        return b""
    return canonical_json({**document, "manifests": kept})
