"""The bad images really are what they claim, read back from the real registry, and the reason
fragment each promises is the one acceld's converter or loop guard gives."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from converters.errors import LayerRejected
from converters.estargz import EstargzOptions, convert_layer
from converters.limits import LayerLimits
from harbor_api.errors import NotFound
from harbor_api.oci import parse_manifest_or_index
from harbor_api.registry import RegistryClient
from harbor_api.transport import NO_RETRY, TlsOptions
from policies.desired import is_never_original, original_of
from tests.support import bad_images
from tests.support.bad_images import BadImage
from tests.support.images import OCI_CONFIG, PushedImage, push_image, sha256
from tests.support.registry_server import RunningRegistry


def blob(registry: RunningRegistry, repository: str, digest: str) -> bytes:
    answer = requests.get(f"{registry.url}/v2/{repository}/blobs/{digest}", timeout=30)
    answer.raise_for_status()
    assert sha256(answer.content) == digest
    return answer.content


def manifest(registry: RunningRegistry, repository: str, reference: str) -> dict[str, Any]:
    answer = requests.get(
        f"{registry.url}/v2/{repository}/manifests/{reference}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=30,
    )
    answer.raise_for_status()
    parsed: dict[str, Any] = answer.json()
    return parsed


def layer_members(registry: RunningRegistry, bad: BadImage) -> list[tarfile.TarInfo]:
    data = gzip.decompress(blob(registry, bad.image.repository, bad.image.layer_digests[-1]))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return tar.getmembers()


def rejection(registry: RunningRegistry, bad: BadImage, tmp_path: Path, **limits: int) -> str:
    """What the eStargz converter says about the image's last layer, as stored."""
    source = io.BytesIO(blob(registry, bad.image.repository, bad.image.layer_digests[-1]))
    options = EstargzOptions(workers=1, limits=LayerLimits(**limits))
    with pytest.raises(LayerRejected) as caught:
        convert_layer(source, io.BytesIO(), options, tmp_path)
    return str(caught.value)


def test_corrupt_gzip_fails_inside_the_stream_not_at_its_end(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    bad = bad_images.corrupt_gzip_layer(registry.url, "bad/corrupt", "v1")
    data = blob(registry, "bad/corrupt", bad.image.layer_digests[0])
    assert data[:2] == b"\x1f\x8b"
    with pytest.raises(zlib.error, match="while decompressing data"):
        gzip.decompress(data)
    assert bad.reason.lower() in rejection(registry, bad, tmp_path).lower()


def test_truncated_layer_ends_before_its_gzip_trailer(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    bad = bad_images.truncated_layer(registry.url, "bad/truncated", "v1")
    data = blob(registry, "bad/truncated", bad.image.layer_digests[0])
    with pytest.raises(EOFError):
        gzip.decompress(data)
    assert bad.reason.lower() in rejection(registry, bad, tmp_path).lower()


ENTRY_CHECKS: dict[str, Callable[[list[tarfile.TarInfo]], bool]] = {
    "parent-path": lambda m: "../escape" in [x.name for x in m],
    "absolute-path": lambda m: "/etc/evil" in [x.name for x in m],
    "hardlink-outside": lambda m: (
        (m[-1].name, m[-1].islnk(), m[-1].linkname) == ("etc/shadow-link", True, "etc/shadow")
        and "etc/shadow" not in [x.name for x in m]
    ),
    "symlink-loop": lambda m: (
        {x.name: x.linkname for x in m if x.issym()} == {"loop/a": "b", "loop/b": "a"}
    ),
    "hardlink-cycle": lambda m: (
        [(x.name, x.linkname) for x in m if x.islnk()] == [("a", "b"), ("b", "a")]
    ),
    "hardlink-to-directory": lambda m: (
        m[0].isdir() and (m[1].islnk(), m[1].linkname) == (True, "etc")
    ),
    "huge-uid": lambda m: m[-1].uid == 10**40,
    "non-utf8-names": lambda m: [x.name for x in m] == ["a\udcff", "a\udcfe"],
}


@pytest.mark.parametrize("kind", sorted(bad_images.HOSTILE_ENTRIES))
def test_hostile_tar_entries_are_in_the_stored_layer_and_rejected(
    registry: RunningRegistry, tmp_path: Path, kind: str
) -> None:
    bad = bad_images.hostile_entries_image(registry.url, "bad/entries", kind)
    assert ENTRY_CHECKS[kind](layer_members(registry, bad))
    assert bad.reason.lower() in rejection(registry, bad, tmp_path).lower()


def test_huge_pax_header_is_over_the_default_limit(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    bad = bad_images.huge_pax_header_layer(registry.url, "bad/pax", "v1")
    (member,) = layer_members(registry, bad)
    assert len(member.pax_headers["comment"]) == 2 << 20
    assert LayerLimits().max_pax_header_size < 2 << 20
    assert bad.reason.lower() in rejection(registry, bad, tmp_path).lower()


def test_bomb_inflates_to_its_size_from_a_tiny_blob_with_a_true_diff_id(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    bad = bad_images.decompression_bomb(
        registry.url, "bad/bomb", "v1", uncompressed_bytes=bad_images.BOMB_BYTES
    )
    data = blob(registry, "bad/bomb", bad.image.layer_digests[0])
    assert len(data) < bad_images.BOMB_BYTES // 500
    inflater = zlib.decompressobj(31)
    inflated, tar_hash = 0, hashlib.sha256()
    pending = data
    while pending or not inflater.eof:
        piece = inflater.decompress(pending, 1 << 20)
        pending = inflater.unconsumed_tail
        inflated += len(piece)
        tar_hash.update(piece)
        if not piece and not pending:
            break
    assert inflater.eof
    tar_size = 512 + bad_images.BOMB_BYTES + 1024
    assert inflated == tar_size
    config = json.loads(blob(registry, "bad/bomb", bad.image.manifest["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == ["sha256:" + tar_hash.hexdigest()]
    message = rejection(registry, bad, tmp_path, max_uncompressed_size=8 << 20)
    assert bad.reason.lower() in message.lower()


def test_missing_blob_image_has_a_manifest_but_not_its_last_layer(
    registry: RunningRegistry,
) -> None:
    bad = bad_images.missing_blob_image(registry.url, "bad/missing", "v1")
    stored = manifest(registry, "bad/missing", "v1")
    assert [d["digest"] for d in stored["layers"]] == list(bad.image.layer_digests)
    first, last = bad.image.layer_digests
    head = f"{registry.url}/v2/bad/missing/blobs/"
    assert requests.head(head + first, timeout=10).status_code == 200
    assert requests.head(head + last, timeout=10).status_code == 404
    client = RegistryClient(registry.host, tls=TlsOptions(plain_http=True), retry=NO_RETRY)
    with pytest.raises(NotFound) as caught, client.open_blob("bad/missing", last) as stream:
        stream.read()
    assert bad.reason.lower() in str(caught.value).lower()


def never_original_reason(image: PushedImage) -> str | None:
    """Why acceld's loop guard refuses `image`, judged as a source judges what it read."""
    content = parse_manifest_or_index(json.dumps(image.manifest).encode(), image.media_type)
    return is_never_original(
        original_of(
            image.repository,
            image.digest,
            content,
            tags=(image.tag,) if image.tag else (),
            push_time=datetime(2026, 1, 1, tzinfo=UTC),
        )
    )


@pytest.fixture(scope="module")
def signed_image(registry: RunningRegistry) -> PushedImage:
    return push_image(registry.url, "bad/signed", "v1")


def test_helm_chart_is_stored_as_helm_pushes_it_and_is_never_an_original(
    registry: RunningRegistry,
) -> None:
    bad = bad_images.helm_chart(registry.url, "bad/helm", "0.1.0")
    stored = manifest(registry, "bad/helm", "0.1.0")
    assert stored["config"]["mediaType"] == bad_images.HELM_CONFIG
    assert [d["mediaType"] for d in stored["layers"]] == [bad_images.HELM_CHART]
    members = layer_members(registry, bad)
    assert "demo/Chart.yaml" in [m.name for m in members]
    assert bad.reason in (never_original_reason(bad.image) or "")


@pytest.mark.parametrize(
    ("builder", "artifact_type"),
    [
        (bad_images.cosign_signature, bad_images.COSIGN_SIGNATURE_TYPE),
        (bad_images.spdx_sbom, bad_images.SPDX),
    ],
    ids=["cosign", "spdx"],
)
def test_referrer_artifacts_point_at_their_subject_and_are_never_originals(
    registry: RunningRegistry,
    signed_image: PushedImage,
    builder: Callable[[str, PushedImage], BadImage],
    artifact_type: str,
) -> None:
    bad = builder(registry.url, signed_image)
    stored = manifest(registry, signed_image.repository, bad.image.digest)
    assert stored["artifactType"] == artifact_type
    assert stored["subject"] == {
        "mediaType": signed_image.media_type,
        "digest": signed_image.digest,
        "size": signed_image.size,
    }
    assert bad.reason in (never_original_reason(bad.image) or "")


def test_legacy_cosign_signature_sits_under_the_sha256_tag_with_an_image_config(
    registry: RunningRegistry, signed_image: PushedImage
) -> None:
    bad_images.legacy_cosign_signature(registry.url, signed_image)
    tag = "sha256-" + signed_image.digest.removeprefix("sha256:") + ".sig"
    stored = manifest(registry, signed_image.repository, tag)
    assert "subject" not in stored
    assert stored["config"]["mediaType"] == OCI_CONFIG
    (layer,) = stored["layers"]
    assert layer["mediaType"] == bad_images.COSIGN_SIMPLESIGNING
    payload = json.loads(blob(registry, signed_image.repository, layer["digest"]))
    assert payload["critical"]["image"]["docker-manifest-digest"] == signed_image.digest


def test_legacy_cosign_signature_is_never_an_original(
    registry: RunningRegistry, signed_image: PushedImage
) -> None:
    bad = bad_images.legacy_cosign_signature(registry.url, signed_image)
    assert bad.reason in (never_original_reason(bad.image) or "")
