from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import requests

from harbor_api.blobs import BlobTooLarge
from harbor_api.errors import DigestMismatch, NotFound, ValidationFailed
from harbor_api.registry import RegistryClient
from harbor_api.transport import TlsOptions
from tests.support.images import push_blob, sha256
from tests.support.registry_server import RunningRegistry

MIB = 1 << 20


@pytest.fixture
def client(registry: RunningRegistry) -> RegistryClient:
    return RegistryClient(
        registry.host,
        tls=TlsOptions(plain_http=True),
        chunk_size=8 * MIB,
        monolithic_limit=4 * MIB,
    )


def _random_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            piece = os.urandom(min(left, MIB))
            out.write(piece)
            digest.update(piece)
            left -= len(piece)
    return "sha256:" + digest.hexdigest()


def _stored_blob_path(registry: RunningRegistry, digest: str) -> Path:
    hex_digest = digest.split(":", 1)[1]
    return (
        registry.root
        / "data/docker/registry/v2/blobs/sha256"
        / hex_digest[:2]
        / hex_digest
        / "data"
    )


def test_small_blob_round_trips(registry: RunningRegistry, client: RegistryClient) -> None:
    data = b'{"architecture":"amd64"}'
    digest = sha256(data)
    assert not client.blob_exists("blobs/small", digest)
    client.upload_blob("blobs/small", data, digest, len(data))
    assert client.blob_exists("blobs/small", digest)
    assert client.read_blob("blobs/small", digest, max_size=1024) == data
    answer = requests.get(f"{registry.url}/v2/blobs/small/blobs/{digest}", timeout=10)
    assert answer.content == data


def test_read_blob_refuses_a_blob_over_max_size(client: RegistryClient) -> None:
    data = b"x" * 2000
    client.upload_blob("blobs/big-config", data, sha256(data), len(data))
    with pytest.raises(BlobTooLarge, match="larger than 1000 bytes"):
        client.read_blob("blobs/big-config", sha256(data), max_size=1000)


def test_large_file_is_uploaded_in_chunks_and_downloads_identical(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    source = tmp_path / "layer.bin"
    size = 40 * MIB + 12345
    digest = _random_file(source, size)
    before = registry.log_text().count('"PATCH /v2/blobs/large/blobs/uploads/')
    client.upload_blob("blobs/large", source, digest, size)
    assert registry.log_search(r'"PUT /v2/blobs/large/blobs/uploads/[^ ]+ HTTP/1.1" 201')
    patches = registry.log_text().count('"PATCH /v2/blobs/large/blobs/uploads/') - before
    assert patches == 6  # 40 MiB + change in 8 MiB chunks
    target = tmp_path / "out.bin"
    assert client.download_blob("blobs/large", digest, target) == size
    assert target.read_bytes() == source.read_bytes()
    assert not list(tmp_path.glob(".*.partial"))


def test_monolithic_upload_sends_no_patch(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    source = tmp_path / "small.bin"
    digest = _random_file(source, 3 * MIB)
    before = registry.log_text().count('"PATCH /v2/blobs/mono/')
    client.upload_blob("blobs/mono", source, digest, 3 * MIB)
    assert registry.log_text().count('"PATCH /v2/blobs/mono/') == before
    assert client.blob_exists("blobs/mono", digest)


def test_upload_with_wrong_size_or_digest_changes_nothing(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    data = b"some bytes"
    before = registry.log_text().count("POST /v2/blobs/refused/")
    with pytest.raises(DigestMismatch, match="hashes to"):
        client.upload_blob("blobs/refused", data, sha256(b"other"), len(data))
    with pytest.raises(ValueError, match="size says 3"):
        client.upload_blob("blobs/refused", data, sha256(data), 3)
    path = tmp_path / "f"
    path.write_bytes(data)
    with pytest.raises(ValueError, match="holds 10 bytes"):
        client.upload_blob("blobs/refused", path, sha256(data), 11)
    assert registry.log_text().count("POST /v2/blobs/refused/") == before


def test_file_with_wrong_content_is_refused_by_the_registry(
    client: RegistryClient, tmp_path: Path
) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"actual content")
    claimed = sha256(b"claimed content")
    with pytest.raises(ValidationFailed, match="DIGEST_INVALID"):
        client.upload_blob("blobs/lying-file", path, claimed, path.stat().st_size)
    assert not client.blob_exists("blobs/lying-file", claimed)


def test_open_blob_from_an_offset_uses_range(
    registry: RunningRegistry, client: RegistryClient
) -> None:
    data = bytes(range(256)) * 100
    digest = push_blob(registry.url, "blobs/range", data)
    with client.open_blob("blobs/range", digest, start=1000) as stream:
        assert stream.read() == data[1000:]
    assert registry.log_search(rf'"GET /v2/blobs/range/blobs/{digest} HTTP/1.1" 206')


def test_corrupted_blob_fails_at_the_end_of_the_stream(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    data = os.urandom(3 * MIB)
    digest = push_blob(registry.url, "blobs/corrupt", data)
    stored = _stored_blob_path(registry, digest)
    corrupted = bytearray(stored.read_bytes())
    corrupted[-1] ^= 0xFF
    stored.write_bytes(bytes(corrupted))
    with client.open_blob("blobs/corrupt", digest) as stream:
        for _ in range(3):
            assert len(stream.read(MIB)) == MIB
        with pytest.raises(DigestMismatch, match=f"expected {digest}"):
            stream.read(MIB)
    target = tmp_path / "out"
    with pytest.raises(DigestMismatch):
        client.download_blob("blobs/corrupt", digest, target)
    assert not target.exists()
    assert not list(tmp_path.iterdir())


def test_missing_blob_is_not_found(client: RegistryClient) -> None:
    with (
        pytest.raises(NotFound, match="BLOB_UNKNOWN"),
        client.open_blob("blobs/small", "sha256:" + "2" * 64),
    ):
        pass


def test_mount_links_a_blob_from_another_repository(
    registry: RunningRegistry, client: RegistryClient
) -> None:
    data = os.urandom(1000)
    digest = push_blob(registry.url, "blobs/mount-source", data)
    assert client.mount_blob("blobs/mount-target", digest, "blobs/mount-source")
    assert client.blob_exists("blobs/mount-target", digest)
    assert client.read_blob("blobs/mount-target", digest, 2000) == data


def test_mount_of_unknown_blob_answers_false_and_cancels_the_session(
    registry: RunningRegistry, client: RegistryClient
) -> None:
    digest = "sha256:" + "3" * 64
    assert not client.mount_blob("blobs/mount-none", digest, "blobs/mount-source")
    assert registry.log_search(r'"DELETE /v2/blobs/mount-none/blobs/uploads/[^ ]+ HTTP/1.1" 204')
