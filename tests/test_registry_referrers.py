from __future__ import annotations

import json

import pytest
import requests

from harbor_api.errors import InvalidManifest
from harbor_api.oci import (
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    fallback_tag,
    sha256_digest,
)
from harbor_api.registry import RegistryClient
from harbor_api.transport import TlsOptions
from tests.support.images import PushedImage, push_blob, push_image
from tests.support.registry_server import RunningRegistry

SIGNATURE_TYPE = "application/vnd.example.signature"
ESGZ_CONFIG = "application/vnd.oci.image.config.v1+json"


@pytest.fixture
def client(registry: RunningRegistry) -> RegistryClient:
    return RegistryClient(registry.host, tls=TlsOptions(plain_http=True))


def _subject(image: PushedImage) -> Descriptor:
    return Descriptor(image.media_type, image.digest, image.size)


def _referrer(
    registry: RunningRegistry,
    repository: str,
    subject: Descriptor,
    payload: bytes,
    *,
    artifact_type: str = "",
    annotations: dict[str, str] | None = None,
) -> Manifest:
    layer = push_blob(registry.url, repository, payload)
    config = push_blob(registry.url, repository, b"{}")
    return Manifest(
        config=Descriptor(OCI_EMPTY if artifact_type else ESGZ_CONFIG, config, 2),
        layers=(Descriptor("application/octet-stream", layer, len(payload)),),
        subject=subject,
        annotations=annotations or {},
        artifact_type=artifact_type,
    )


def _raw_fallback_index(registry: RunningRegistry, repository: str, digest: str) -> dict:  # type: ignore[type-arg]
    answer = requests.get(
        f"{registry.url}/v2/{repository}/manifests/{fallback_tag(digest)}",
        headers={"Accept": OCI_INDEX},
        timeout=10,
    )
    answer.raise_for_status()
    data: dict = json.loads(answer.content)  # type: ignore[type-arg]
    return data


def test_two_referrers_are_listed_once_each_in_the_fallback_index(
    registry: RunningRegistry, client: RegistryClient
) -> None:
    repo = "referrers/two"
    image = push_image(registry.url, repo, "v1")
    accelerated = _referrer(
        registry, repo, _subject(image), b"layer", annotations={"acceld.test/format": "estargz"}
    )
    signature = _referrer(
        registry,
        repo,
        _subject(image),
        b"sig",
        artifact_type=SIGNATURE_TYPE,
        annotations={"org.example.signed-by": "ci"},
    )
    assert client.referrers(repo, image.digest) == []

    first = client.push_referrer(repo, accelerated, tag="v1-esgz")
    second = client.push_referrer(repo, signature)
    again = client.push_referrer(repo, accelerated, tag="v1-esgz")

    assert first.oci_subject is None
    assert again.digest == first.digest
    index = _raw_fallback_index(registry, repo, image.digest)
    assert index["mediaType"] == OCI_INDEX
    assert index["manifests"] == [
        {
            "mediaType": OCI_MANIFEST,
            "artifactType": ESGZ_CONFIG,
            "digest": first.digest,
            "size": len(accelerated.encode()),
            "annotations": {"acceld.test/format": "estargz"},
        },
        {
            "mediaType": OCI_MANIFEST,
            "artifactType": SIGNATURE_TYPE,
            "digest": second.digest,
            "size": len(signature.encode()),
            "annotations": {"org.example.signed-by": "ci"},
        },
    ]
    listed = client.referrers(repo, image.digest)
    assert [d.digest for d in listed] == [first.digest, second.digest]
    assert client.head_manifest(repo, "v1-esgz") == Descriptor(
        OCI_MANIFEST, first.digest, len(accelerated.encode())
    )


def test_referrers_filter_by_artifact_type_on_the_fallback_path(
    registry: RunningRegistry, client: RegistryClient
) -> None:
    repo = "referrers/filter"
    image = push_image(registry.url, repo, "v1")
    client.push_referrer(repo, _referrer(registry, repo, _subject(image), b"a"))
    sig = client.push_referrer(
        repo, _referrer(registry, repo, _subject(image), b"s", artifact_type=SIGNATURE_TYPE)
    )
    assert [d.digest for d in client.referrers(repo, image.digest, SIGNATURE_TYPE)] == [sig.digest]
    assert client.referrers(repo, image.digest, "application/none") == []


def test_referrer_pushed_as_exact_bytes_keeps_them(
    registry: RunningRegistry, client: RegistryClient
) -> None:
    repo = "referrers/bytes"
    image = push_image(registry.url, repo, "v1")
    raw = json.dumps(_referrer(registry, repo, _subject(image), b"b").to_json(), indent=2).encode()
    pushed = client.push_referrer(repo, raw)
    assert pushed.digest == sha256_digest(raw)
    assert client.get_manifest(repo, pushed.digest).raw == raw
    assert [d.digest for d in client.referrers(repo, image.digest)] == [pushed.digest]


def test_fallback_tag_holding_a_manifest_is_an_error_and_is_left_alone(
    registry: RunningRegistry, client: RegistryClient
) -> None:
    repo = "referrers/squatted"
    image = push_image(registry.url, repo, "v1")
    squatter = push_image(registry.url, repo, fallback_tag(image.digest))
    with pytest.raises(InvalidManifest, match="not an index"):
        client.push_referrer(repo, _referrer(registry, repo, _subject(image), b"x"))
    assert client.head_manifest(repo, fallback_tag(image.digest)) is not None
    assert client.get_manifest(repo, fallback_tag(image.digest)).digest == squatter.digest
    assert client.referrers(repo, image.digest) == []


def test_manifest_without_subject_is_not_a_referrer(
    registry: RunningRegistry, client: RegistryClient
) -> None:
    repo = "referrers/nosubject"
    image = push_image(registry.url, repo, "v1")
    plain = _referrer(registry, repo, _subject(image), b"y")
    orphan = Manifest(plain.config, plain.layers)
    before = registry.log_text().count("PUT /v2/referrers/nosubject/manifests/")
    with pytest.raises(InvalidManifest, match="needs a subject"):
        client.push_referrer(repo, orphan)
    assert registry.log_text().count("PUT /v2/referrers/nosubject/manifests/") == before
