from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from harbor_api.annotations import SOURCE_DIGEST
from harbor_api.oci import (
    DOCKER_CONFIG,
    DOCKER_MANIFEST,
    EMPTY_JSON_DIGEST,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Descriptor,
    Index,
    Manifest,
    Platform,
)
from policies.desired import (
    FormatWanted,
    Original,
    desired_formats,
    is_never_original,
    next_due,
    original_of,
)
from policies.load import parse_policies
from policies.match import policy_matches, policy_matches_project
from policies.model import FormatOptions, Policy, Reconvert

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
DIGEST = "sha256:" + "a" * 64
COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"


def _policies(*items: dict[str, Any]) -> tuple[Policy, ...]:
    return parse_policies([{"formats": ["estargz"], **item} for item in items], "test.yaml")


def _original(**changes: Any) -> Original:
    values: dict[str, Any] = {
        "repository": "library/nginx",
        "digest": DIGEST,
        "media_type": OCI_MANIFEST,
        "artifact_type": OCI_CONFIG,
        "tags": ("v1",),
        "push_time": NOW - timedelta(days=1),
    }
    values.update(changes)
    return Original(**values)


def test_project_and_full_repository_name_must_both_match() -> None:
    (policy,) = _policies({"name": "p", "projects": ["library"], "repositories": ["*/nginx"]})
    assert policy_matches_project(policy, "library")
    assert policy_matches(policy, "library/nginx", ["v1"])
    assert not policy_matches(policy, "web/nginx", ["v1"])
    assert not policy_matches(policy, "library/redis", ["v1"])


def test_without_tag_patterns_untagged_images_match_but_not_with_them() -> None:
    (any_image,) = _policies({"name": "any"})
    (tagged,) = _policies({"name": "tagged", "tags": ["*"]})
    assert policy_matches(any_image, "library/nginx", [])
    assert not policy_matches(tagged, "library/nginx", [])
    assert policy_matches(tagged, "library/nginx", ["x"])


def test_an_excluded_tag_does_not_qualify_but_another_tag_still_can() -> None:
    (policy,) = _policies({"name": "p", "exclude_tags": ["*-debug"]})
    assert not policy_matches(policy, "library/nginx", ["v1-debug"])
    assert policy_matches(policy, "library/nginx", ["v1-debug", "v1"])


def test_desired_formats_is_the_union_over_matching_enabled_policies() -> None:
    policies = _policies(
        {"name": "all"},
        {"name": "releases", "tags": ["v*"]},
        {"name": "off", "enabled": False},
        {"name": "web", "projects": ["web"]},
    )
    wanted = desired_formats(policies, _original(tags=("v1", "latest")), NOW)
    assert wanted == {
        "estargz": FormatWanted(
            "estargz",
            FormatOptions("-esgz"),
            ("all", "releases"),
            ("v1", "latest"),
            (Reconvert(), Reconvert()),
        )
    }


def test_platform_filter_applies_to_platform_manifests_only() -> None:
    (policy,) = _policies({"name": "arm", "platforms": ["linux/arm64"]})
    arm = _original(platform=Platform("linux", "arm64", "v8"))
    amd = _original(platform=Platform("linux", "amd64"))
    index = _original(media_type=OCI_INDEX, artifact_type="")
    assert set(desired_formats([policy], arm, NOW)) == {"estargz"}
    assert desired_formats([policy], amd, NOW) == {}
    assert set(desired_formats([policy], index, NOW)) == {"estargz"}


def test_images_younger_than_min_age_are_left_alone_until_due() -> None:
    (policy,) = _policies({"name": "p", "min_age": "1h"})
    young = _original(push_time=NOW - timedelta(minutes=20))
    assert desired_formats([policy], young, NOW) == {}
    assert next_due([policy], young, NOW) == NOW + timedelta(minutes=40)
    assert set(desired_formats([policy], young, NOW + timedelta(minutes=40))) == {"estargz"}
    assert next_due([policy], _original(), NOW) is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {"has_subject": True},
            "it has a subject (a referrer such as a signature, an SBOM or a converted image)",
        ),
        (
            {"annotations": {SOURCE_DIGEST: DIGEST}},
            f"it carries the annotation {SOURCE_DIGEST} (an accelerated image)",
        ),
        ({"harbor_type": "CHART"}, "Harbor types it CHART, not IMAGE"),
        (
            {"artifact_type": "application/vnd.cncf.helm.config.v1+json"},
            "its artifact type application/vnd.cncf.helm.config.v1+json is not an image config",
        ),
        (
            {"media_type": "application/vnd.oci.artifact.manifest.v1+json"},
            "its media type application/vnd.oci.artifact.manifest.v1+json is not an image manifest "
            "or index",
        ),
        (
            {"layer_media_types": (OCI_LAYER_GZIP, COSIGN_SIMPLESIGNING)},
            f"its layer media type {COSIGN_SIMPLESIGNING} is not an image layer (a signature, an "
            "attestation or another artifact)",
        ),
        (
            {"media_type": OCI_INDEX, "artifact_type": "application/x-bundle"},
            "it is an index of artifact type application/x-bundle, not of images",
        ),
    ],
)
def test_never_originals_are_named_with_their_reason_and_want_nothing(
    changes: dict[str, Any], reason: str
) -> None:
    original = _original(**changes)
    assert is_never_original(original) == reason
    assert desired_formats(_policies({"name": "all"}), original, NOW) == {}


@pytest.mark.parametrize(
    ("media_type", "artifact_type"),
    [(OCI_MANIFEST, OCI_CONFIG), (DOCKER_MANIFEST, DOCKER_CONFIG), (OCI_INDEX, "")],
)
def test_images_and_indexes_can_be_originals(media_type: str, artifact_type: str) -> None:
    original = _original(
        media_type=media_type,
        artifact_type=artifact_type,
        harbor_type="IMAGE",
        layer_media_types=(OCI_LAYER_GZIP,) if media_type != OCI_INDEX else (),
    )
    assert is_never_original(original) is None


def test_original_of_a_signature_manifest_is_never_an_original() -> None:
    image = Descriptor(OCI_MANIFEST, DIGEST, 500)
    signature = Manifest(
        Descriptor(OCI_EMPTY, EMPTY_JSON_DIGEST, 2),
        (Descriptor("application/vnd.dev.cosign.simplesigning.v1+json", DIGEST, 10),),
        subject=image,
        artifact_type="application/vnd.dev.cosign.artifact.sig.v1+json",
    )
    original = original_of("library/nginx", DIGEST, signature, tags=(), push_time=NOW)
    assert original.has_subject
    assert original.artifact_type == "application/vnd.dev.cosign.artifact.sig.v1+json"
    assert is_never_original(original) is not None


def test_original_of_an_image_and_an_index_carries_what_matching_needs() -> None:
    image = Manifest(Descriptor(OCI_CONFIG, DIGEST, 2), (Descriptor(OCI_LAYER_GZIP, DIGEST, 10),))
    original = original_of(
        "library/nginx",
        DIGEST,
        image,
        tags=("v1",),
        push_time=NOW,
        platform=Platform("linux", "amd64"),
    )
    assert original.artifact_type == OCI_CONFIG
    assert original.layer_media_types == (OCI_LAYER_GZIP,)
    assert original.platform == Platform("linux", "amd64")
    assert is_never_original(original) is None
    index = original_of(
        "library/nginx",
        DIGEST,
        Index((Descriptor(OCI_MANIFEST, DIGEST, 5),)),
        tags=("v1",),
        push_time=NOW,
    )
    assert (index.media_type, index.artifact_type) == (OCI_INDEX, "")
    assert is_never_original(index) is None
