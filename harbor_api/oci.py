"""OCI image and distribution models: media types, descriptors, manifests, indexes.

Values are frozen dataclasses. `parse_*` take the registry's bytes (OCI or Docker schema2) and
`encode()` gives canonical bytes: compact JSON with a fixed field order, so the same model always
hashes to the same digest.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harbor_api.errors import InvalidManifest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST_TAR = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

# Layers a converter reads; layers that name foreign URLs and must not be copied elsewhere.
CONVERTIBLE_LAYER_TYPES = frozenset(
    {OCI_LAYER_TAR, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, DOCKER_LAYER_GZIP}
)
NON_DISTRIBUTABLE_LAYER_TYPES = frozenset(
    {DOCKER_LAYER_FOREIGN, OCI_LAYER_NONDIST_TAR, OCI_LAYER_NONDIST_GZIP, OCI_LAYER_NONDIST_ZSTD}
)
IMAGE_LAYER_TYPES = CONVERTIBLE_LAYER_TYPES | NON_DISTRIBUTABLE_LAYER_TYPES

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
IMAGE_CONFIG_TYPES = (OCI_CONFIG, DOCKER_CONFIG)
# Sent on every manifest GET/HEAD, most preferred first.
MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST))

# BuildKit stores provenance and SBOM attestations as index entries of platform unknown/unknown.
_ATTESTATION_REFERENCE_TYPE = "vnd.docker.reference.type"

EMPTY_JSON_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


def sha256_digest(data: bytes) -> str:
    """The `sha256:<hex>` digest of some bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(value: str) -> bool:
    """Whether `value` is a well-formed sha256 digest (the only algorithm acceld handles)."""
    return bool(_DIGEST.match(value))


def check_digest(value: str, where: str) -> str:
    if not is_digest(value):
        raise InvalidManifest(f"{where}: expected a sha256 digest, got {value!r}")
    return value


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        """`os/arch[/variant]`, as on the command line and in policies."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"invalid platform {text!r}: expected OS/ARCH[/VARIANT]")
        return cls(os=parts[0], architecture=parts[1], variant=parts[2] if len(parts) == 3 else "")

    def matches(self, wanted: Platform) -> bool:
        """Whether this platform satisfies `wanted` (a wanted variant of "" accepts any)."""
        return (
            self.os == wanted.os
            and self.architecture == wanted.architecture
            and (not wanted.variant or self.variant == wanted.variant)
        )

    def is_one_of(self, wanted: Sequence[Platform]) -> bool:
        """Whether this platform satisfies one of `wanted`; an empty `wanted` accepts all."""
        return not wanted or any(self.matches(w) for w in wanted)

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.variant:
            out["variant"] = self.variant
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Platform:
        return cls(
            os=str(data.get("os", "")),
            architecture=str(data.get("architecture", "")),
            variant=str(data.get("variant", "")),
            os_version=str(data.get("os.version", "")),
        )


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    artifact_type: str = ""
    urls: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        out["digest"] = self.digest
        out["size"] = self.size
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        return out

    @classmethod
    def from_json(cls, data: Any, where: str) -> Descriptor:
        if not isinstance(data, Mapping):
            raise InvalidManifest(f"{where}: expected a descriptor object")
        media_type = data.get("mediaType")
        size = data.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise InvalidManifest(f"{where}.mediaType: expected a string")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidManifest(f"{where}.size: expected a non-negative integer")
        platform = data.get("platform")
        annotations = data.get("annotations") or {}
        if not isinstance(annotations, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise InvalidManifest(f"{where}.annotations: expected a map of strings")
        return cls(
            media_type=media_type,
            digest=check_digest(str(data.get("digest", "")), f"{where}.digest"),
            size=size,
            annotations=dict(annotations),
            platform=Platform.from_json(platform) if isinstance(platform, Mapping) else None,
            artifact_type=str(data.get("artifactType") or ""),
            urls=tuple(str(u) for u in data.get("urls") or ()),
        )

    def without_platform(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size)


def _annotations(data: Mapping[str, Any], where: str) -> dict[str, str]:
    annotations = data.get("annotations") or {}
    if not isinstance(annotations, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise InvalidManifest(f"{where}.annotations: expected a map of strings")
    return dict(annotations)


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _document(
    media_type: str,
    artifact_type: str,
    body: dict[str, Any],
    subject: Descriptor | None,
    annotations: Mapping[str, str],
) -> dict[str, Any]:
    """A manifest or index in the spec's field order, optional fields left out when empty."""
    out: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    if artifact_type:
        out["artifactType"] = artifact_type
    out.update(body)
    if subject is not None:
        out["subject"] = subject.to_json()
    if annotations:
        out["annotations"] = dict(annotations)
    return out


@dataclass(frozen=True)
class Manifest:
    """An image manifest (OCI, or Docker schema2 as input)."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str = OCI_MANIFEST
    subject: Descriptor | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str = ""

    def to_json(self) -> dict[str, Any]:
        return _document(
            self.media_type,
            self.artifact_type,
            {
                "config": self.config.to_json(),
                "layers": [layer.to_json() for layer in self.layers],
            },
            self.subject,
            self.annotations,
        )

    def encode(self) -> bytes:
        return canonical_json(self.to_json())

    @property
    def effective_artifact_type(self) -> str:
        """`artifactType`, else the config media type: what referrers lists show."""
        return self.artifact_type or self.config.media_type


@dataclass(frozen=True)
class Index:
    """An image index (OCI, or Docker manifest list as input)."""

    manifests: tuple[Descriptor, ...]
    media_type: str = OCI_INDEX
    subject: Descriptor | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str = ""

    def to_json(self) -> dict[str, Any]:
        return _document(
            self.media_type,
            self.artifact_type,
            {"manifests": [m.to_json() for m in self.manifests]},
            self.subject,
            self.annotations,
        )

    def encode(self) -> bytes:
        return canonical_json(self.to_json())

    def image_manifests(self, wanted: Sequence[Platform] = ()) -> tuple[Descriptor, ...]:
        """The children that are platform images of one of `wanted` (all when empty), leaving
        out BuildKit's provenance and SBOM attestations (platform unknown/unknown)."""
        return tuple(
            child
            for child in self.manifests
            if child.platform is not None
            and child.platform.os != "unknown"
            and _ATTESTATION_REFERENCE_TYPE not in child.annotations
            and child.platform.is_one_of(wanted)
        )


def _load(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidManifest(f"manifest is not JSON: {exc}") from exc
    except RecursionError:
        raise InvalidManifest("manifest JSON is nested too deep to parse") from None
    if not isinstance(data, dict):
        raise InvalidManifest("manifest is not a JSON object")
    return data


def _media_type(data: Mapping[str, Any], content_type: str) -> str:
    media_type = data.get("mediaType") or content_type.split(";")[0].strip()
    if not media_type:
        media_type = OCI_INDEX if "manifests" in data else OCI_MANIFEST
    if data.get("schemaVersion") == 1:
        raise InvalidManifest("Docker schema1 manifests are not supported")
    return str(media_type)


def parse_manifest_or_index(raw: bytes, content_type: str = "") -> Manifest | Index:
    """Parse registry bytes into a `Manifest` or an `Index`."""
    data = _load(raw)
    media_type = _media_type(data, content_type)
    if media_type in INDEX_TYPES or ("manifests" in data and "layers" not in data):
        return _parse_index(data, media_type)
    if media_type in MANIFEST_TYPES:
        return _parse_manifest(data, media_type)
    raise InvalidManifest(f"unsupported manifest media type {media_type!r}")


def _parse_manifest(data: Mapping[str, Any], media_type: str) -> Manifest:
    layers = data.get("layers")
    if not isinstance(layers, list):
        raise InvalidManifest("layers: expected a list")
    subject = data.get("subject")
    return Manifest(
        config=Descriptor.from_json(data.get("config"), "config"),
        layers=tuple(Descriptor.from_json(layer, f"layers[{i}]") for i, layer in enumerate(layers)),
        media_type=media_type,
        subject=Descriptor.from_json(subject, "subject") if subject is not None else None,
        annotations=_annotations(data, "manifest"),
        artifact_type=str(data.get("artifactType") or ""),
    )


def _parse_index(data: Mapping[str, Any], media_type: str) -> Index:
    manifests = data.get("manifests")
    if not isinstance(manifests, list):
        raise InvalidManifest("manifests: expected a list")
    subject = data.get("subject")
    return Index(
        manifests=tuple(
            Descriptor.from_json(m, f"manifests[{i}]") for i, m in enumerate(manifests)
        ),
        media_type=OCI_INDEX if media_type not in INDEX_TYPES else media_type,
        subject=Descriptor.from_json(subject, "subject") if subject is not None else None,
        annotations=_annotations(data, "index"),
        artifact_type=str(data.get("artifactType") or ""),
    )


def parse_manifest(raw: bytes, content_type: str = "") -> Manifest:
    parsed = parse_manifest_or_index(raw, content_type)
    if not isinstance(parsed, Manifest):
        raise InvalidManifest("expected an image manifest, got an index")
    return parsed


def parse_index(raw: bytes, content_type: str = "") -> Index:
    parsed = parse_manifest_or_index(raw, content_type)
    if not isinstance(parsed, Index):
        raise InvalidManifest("expected an index, got an image manifest")
    return parsed


# Referrers fallback tags and the tags legacy cosign gives signatures, attestations and SBOMs.
_REFERRER_TAG = re.compile(r"^sha256-[0-9a-f]{64}(\.(sig|att|sbom))?$")


def is_referrer_tag(tag: str) -> bool:
    """Whether `tag` only links referrers (`sha256-<hex>`, `sha256-<hex>.sig`, …): what it
    names is never an original."""
    return bool(_REFERRER_TAG.match(tag))


def fallback_tag(digest: str) -> str:
    """The referrers fallback tag of a subject digest (`sha256:abc…` → `sha256-abc…`)."""
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm[:32]}-{encoded[:64]}"
