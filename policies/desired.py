"""Desired state: which accelerated formats an original image should have, and with what.

The loop guard lives here too: our own pushes fire PUSH_ARTIFACT like any other, and so do
signatures and SBOMs, so anything with a `subject`, anything carrying an acceleration
annotation, and anything that is not an image is never an original. Nor is an image whose own
layers are already accelerated (eStargz or zstd:chunked layer annotations, a nydus bootstrap):
another tool converted it and pushed it without a subject, and converting it again would only
stack a second copy on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from harbor_api.annotations import ACCELERATION_ANNOTATIONS
from harbor_api.oci import (
    IMAGE_CONFIG_TYPES,
    IMAGE_LAYER_TYPES,
    INDEX_TYPES,
    MANIFEST_TYPES,
    Index,
    Manifest,
    Platform,
)
from policies.match import matching_tags, policy_matches, policy_matches_platform
from policies.model import FormatOptions, Policy, Reconvert
from policies.observed import classify_annotations, classify_manifest

HARBOR_IMAGE_TYPE = "IMAGE"


@dataclass(frozen=True)
class Original:
    """A candidate original image: one manifest or index in one repository.

    For a platform manifest of an index, `tags` are the index's tags and `platform` its
    platform. `artifact_type` is the manifest's `artifactType`, else its config media type
    ("" for an index without one). `harbor_type` is Harbor's artifact `type` when known.
    """

    repository: str
    digest: str
    media_type: str
    artifact_type: str
    tags: tuple[str, ...]
    push_time: datetime
    platform: Platform | None = None
    has_subject: bool = False
    annotations: Mapping[str, str] = field(default_factory=dict)
    harbor_type: str = ""
    layer_media_types: tuple[str, ...] = ()
    """Of a manifest's layers, when the manifest was read (a scan may not read it)."""
    accelerated_as: str | None = None
    """The accelerated format its own layers are in, when the manifest was read: an image
    converted by another tool (ctr-remote, nerdctl, nydusify) and pushed without a subject."""

    @property
    def project(self) -> str:
        return self.repository.split("/", 1)[0]


def original_of(
    repository: str,
    digest: str,
    content: Manifest | Index,
    *,
    tags: tuple[str, ...],
    push_time: datetime,
    platform: Platform | None = None,
    harbor_type: str = "",
) -> Original:
    """The `Original` of a manifest or index that was read from the registry."""
    if isinstance(content, Manifest):
        artifact_type = content.effective_artifact_type
        layer_media_types = tuple(layer.media_type for layer in content.layers)
        accelerated_as = classify_manifest(content)
    else:
        artifact_type, layer_media_types = content.artifact_type, ()
        accelerated_as = classify_annotations(content.annotations)
    return Original(
        repository=repository,
        digest=digest,
        media_type=content.media_type,
        artifact_type=artifact_type,
        tags=tags,
        push_time=push_time,
        platform=platform,
        has_subject=content.subject is not None,
        annotations=content.annotations,
        harbor_type=harbor_type,
        layer_media_types=layer_media_types,
        accelerated_as=accelerated_as,
    )


@dataclass(frozen=True)
class FormatWanted:
    """One format an original should have: the options, and who wants it for which tags."""

    format: str
    options: FormatOptions
    policies: tuple[str, ...]
    tags: tuple[str, ...]
    """Source tags that qualified under at least one of `policies` (suffixed on push)."""
    reconvert: tuple[Reconvert, ...] = ()
    """The `reconvert` rules of `policies`: a copy any of them finds outdated is replaced."""


def why_not_an_original(original: Original) -> str | None:
    """Why `original` is a referrer or an accelerated copy of another image (the loop guard:
    our own pushes fire webhooks too), or None."""
    if original.has_subject:
        return "it has a subject (a referrer such as a signature, an SBOM or a converted image)"
    for key in ACCELERATION_ANNOTATIONS:
        if key in original.annotations:
            return f"it carries the annotation {key} (an accelerated image)"
    if original.accelerated_as is not None:
        return (
            f"it is already accelerated ({original.accelerated_as} layers, made by another tool "
            "without a subject)"
        )
    return None


def why_not_an_image(original: Original) -> str | None:
    """Why `original` is not a container image (a chart, a signature, an SBOM…), or None."""
    if original.harbor_type and original.harbor_type != HARBOR_IMAGE_TYPE:
        return f"Harbor types it {original.harbor_type}, not IMAGE"
    if original.media_type in INDEX_TYPES:
        if original.artifact_type:
            return f"it is an index of artifact type {original.artifact_type}, not of images"
        return None
    if original.media_type not in MANIFEST_TYPES:
        return f"its media type {original.media_type} is not an image manifest or index"
    if original.artifact_type not in IMAGE_CONFIG_TYPES:
        return f"its artifact type {original.artifact_type or '(none)'} is not an image config"
    for media_type in original.layer_media_types:
        if media_type not in IMAGE_LAYER_TYPES:
            # Legacy cosign signatures and attestations have an ordinary image config.
            return (
                f"its layer media type {media_type} is not an image layer (a signature, an "
                "attestation or another artifact)"
            )
    return None


def is_never_original(original: Original) -> str | None:
    """Why `original` can never be converted (a short reason for logs), or None if it can."""
    return why_not_an_original(original) or why_not_an_image(original)


def _applies(policy: Policy, original: Original) -> bool:
    return (
        policy.enabled
        and policy_matches(policy, original.repository, original.tags)
        and policy_matches_platform(policy, original.platform)
    )


def matching_policies(policies: Iterable[Policy], original: Original) -> tuple[str, ...]:
    """The enabled policies that cover `original`, whether or not their `min_age` has passed."""
    return tuple(policy.name for policy in policies if _applies(policy, original))


def desired_formats(
    policies: Iterable[Policy], original: Original, now: datetime
) -> dict[str, FormatWanted]:
    """format → what is wanted, over every enabled policy that matches and whose `min_age`
    has passed. Nothing for an image that `is_never_original`.

    Policies loaded together agree on the options of a format wherever they may overlap (the
    loader checks it), so the first wanting policy's options stand for all.
    """
    if is_never_original(original) is not None:
        return {}
    wanted: dict[str, FormatWanted] = {}
    for policy in policies:
        if not _applies(policy, original) or now - original.push_time < policy.min_age:
            continue
        tags = matching_tags(policy, original.tags)
        for fmt in policy.formats:
            before = wanted.get(fmt)
            if before is None:
                wanted[fmt] = FormatWanted(
                    fmt, policy.options(fmt), (policy.name,), tags, (policy.reconvert,)
                )
                continue
            merged = before.tags + tuple(t for t in tags if t not in before.tags)
            wanted[fmt] = FormatWanted(
                fmt,
                before.options,
                (*before.policies, policy.name),
                merged,
                (*before.reconvert, policy.reconvert),
            )
    return wanted


def next_due(policies: Iterable[Policy], original: Original, now: datetime) -> datetime | None:
    """The earliest time after `now` at which a matching policy's `min_age` passes, if any.

    A reconciler that found nothing wanted yet requeues the key for then.
    """
    if is_never_original(original) is not None:
        return None
    due = [
        original.push_time + policy.min_age
        for policy in policies
        if _applies(policy, original) and original.push_time + policy.min_age > now
    ]
    return min(due, default=None)
