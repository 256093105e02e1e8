from __future__ import annotations

import json

import pytest
import requests

from harbor_api.errors import DigestMismatch, InvalidReference, NotFound
from harbor_api.oci import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Index,
    Manifest,
    sha256_digest,
)
from harbor_api.registry import RegistryClient
from harbor_api.transport import TlsOptions
from tests.support.images import push_blob, push_image, push_index, push_manifest
from tests.support.registry_server import RunningRegistry


@pytest.fixture
def client(registry: RunningRegistry) -> RegistryClient:
    return RegistryClient(registry.host, tls=TlsOptions(plain_http=True))


def test_oci_manifest_by_tag_has_the_digest_the_registry_stored(
    registry: RunningRegistry, client: RegistryClient
) -> None:
    pushed = push_image(registry.url, "manifests/oci", "v1")
    fetched = client.get_manifest("manifests/oci", "v1")
    assert fetched.digest == pushed.digest
    assert fetched.media_type == OCI_MANIFEST
    assert sha256_digest(fetched.raw) == pushed.digest
    assert isinstance(fetched.content, Manifest)
    assert [layer.digest for layer in fetched.content.layers] == list(pushed.layer_digests)
    assert fetched.descriptor == Descriptor(OCI_MANIFEST, pushed.digest, pushed.size)


def test_docker_schema2_manifest_keeps_its_media_type(
    registry: RunningRegistry, client: RegistryClient
) -> None:
    pushed = push_image(registry.url, "manifests/docker", "v1", docker=True)
    fetched = client.get_manifest("manifests/docker", pushed.digest)
    assert fetched.media_type == DOCKER_MANIFEST
    assert fetched.digest == pushed.digest


@pytest.mark.parametrize(
    ("docker", "media_type"), [(False, OCI_INDEX), (True, DOCKER_MANIFEST_LIST)]
)
def test_index_lists_its_platform_manifests(
    registry: RunningRegistry, client: RegistryClient, docker: bool, media_type: str
) -> None:
    repo = f"manifests/index-{int(docker)}"
    index, children = push_index(
        registry.url, repo, "multi", ["linux/amd64", "linux/arm64/v8"], docker=docker
    )
    fetched = client.get_manifest(repo, "multi")
    assert fetched.digest == index.digest
    assert fetched.media_type == media_type
    assert isinstance(fetched.content, Index)
    assert [m.digest for m in fetched.content.manifests] == [c.digest for c in children]
    assert [str(m.platform) for m in fetched.content.manifests] == ["linux/amd64", "linux/arm64/v8"]


def test_head_manifest_gives_descriptor_and_none_when_missing(
    registry: RunningRegistry, client: RegistryClient
) -> None:
    pushed = push_image(registry.url, "manifests/head", "v1")
    assert client.head_manifest("manifests/head", "v1") == Descriptor(
        OCI_MANIFEST, pushed.digest, pushed.size
    )
    assert client.head_manifest("manifests/head", "nope") is None
    assert client.head_manifest("manifests/head", "sha256:" + "0" * 64) is None


def test_put_manifest_stores_canonical_bytes_under_tag(
    registry: RunningRegistry, client: RegistryClient
) -> None:
    pushed = push_image(registry.url, "manifests/put", "src")
    source = client.get_manifest("manifests/put", "src").content
    assert isinstance(source, Manifest)
    copy = Manifest(source.config, source.layers, annotations={"copy": "yes"})
    result = client.put_manifest("manifests/put", "copy", copy)
    assert result.digest == sha256_digest(copy.encode())
    assert result.oci_subject is None
    answer = requests.get(
        f"{registry.url}/v2/manifests/put/manifests/copy",
        headers={"Accept": OCI_MANIFEST},
        timeout=10,
    )
    assert answer.content == copy.encode()
    assert answer.headers["Docker-Content-Digest"] == result.digest
    assert pushed.digest != result.digest


def test_put_manifest_by_wrong_digest_is_refused_before_sending(
    registry: RunningRegistry, client: RegistryClient
) -> None:
    push_image(registry.url, "manifests/wrong", "src")
    source = client.get_manifest("manifests/wrong", "src").content
    before = registry.log_text().count("PUT /v2/manifests/wrong/manifests/")
    with pytest.raises(DigestMismatch, match="hashes to"):
        client.put_manifest("manifests/wrong", "sha256:" + "1" * 64, source)
    assert registry.log_text().count("PUT /v2/manifests/wrong/manifests/") == before


def test_delete_manifest_removes_it(registry: RunningRegistry, client: RegistryClient) -> None:
    pushed = push_image(registry.url, "manifests/delete", "v1")
    client.delete_manifest("manifests/delete", pushed.digest)
    assert client.head_manifest("manifests/delete", pushed.digest) is None
    with pytest.raises(NotFound, match=r"GET http://.*/manifests/delete/manifests/v1: HTTP 404"):
        client.get_manifest("manifests/delete", "v1")


def test_bad_repository_or_tag_is_refused_without_a_request(client: RegistryClient) -> None:
    with pytest.raises(InvalidReference, match="'Upper'"):
        client.get_manifest("Upper/case", "v1")
    with pytest.raises(InvalidReference, match="invalid tag"):
        client.get_manifest("ok/repo", "bad tag")
    with pytest.raises(InvalidReference, match="invalid digest"):
        client.delete_manifest("ok/repo", "sha256:short")


def test_all_tags_are_listed(registry: RunningRegistry, client: RegistryClient) -> None:
    config = push_blob(registry.url, "manifests/tags", b"{}")
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config,
                "size": 2,
            },
            "layers": [],
        }
    ).encode()
    wanted = sorted(f"t{i:02d}" for i in range(23))
    for tag in wanted:
        push_manifest(registry.url, "manifests/tags", tag, body, OCI_MANIFEST)
    # distribution 2.8 ignores `n` on tag lists; Link pagination of tags is proven with
    # `responses` in test_registry_http_edges.py.
    assert sorted(client.list_tags("manifests/tags")) == wanted


def test_tags_of_unknown_repository_is_not_found(client: RegistryClient) -> None:
    with pytest.raises(NotFound, match="NAME_UNKNOWN"):
        list(client.list_tags("manifests/never-pushed"))


def test_catalog_follows_link_pagination(
    registry: RunningRegistry, monkeypatch: pytest.MonkeyPatch, client: RegistryClient
) -> None:
    for i in range(4):
        push_blob(registry.url, f"catalog/r{i}", b"x")
        push_image(registry.url, f"catalog/r{i}", "v1")
    monkeypatch.setattr("harbor_api.registry.PAGE_SIZE", 2)
    before = registry.log_text().count("GET /v2/_catalog")
    names = list(client.catalog())
    pages = registry.log_text().count("GET /v2/_catalog") - before
    assert pages >= len(names) // 2 >= 2
    assert names == sorted(names)
    assert {f"catalog/r{i}" for i in range(4)} <= set(names)
    assert len(names) == len(set(names))
