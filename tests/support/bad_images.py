"""Hostile, broken and non-image artifacts, pushed to a registry with plain HTTP calls.

Each builder returns what it pushed and `reason`: a fragment of the reason acceld is expected to
give (a rejection for bad layers, a skip for artifacts that are not images), to be compared
case-insensitively. Like `images.py`, this does not use the code under test.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import requests

from tests.support.images import (
    LAYER_MEDIA,
    OCI_CONFIG,
    OCI_MANIFEST,
    Entry,
    PushedImage,
    compress,
    image_config,
    push_artifact,
    push_blob,
    push_image,
    push_manifest,
    sha256,
    tar_bytes,
)

GZIP_LAYER = LAYER_MEDIA[("oci", "gzip")]
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
COSIGN_SIGNATURE_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
SPDX = "application/spdx+json"
BOMB_BYTES = 300 << 20
_BOMB_PIECE = 1 << 20


@dataclass(frozen=True)
class BadImage:
    image: PushedImage
    reason: str


@dataclass(frozen=True)
class Layer:
    """A layer blob as pushed, and the digest of the tar it was meant to hold."""

    blob: bytes
    diff_id: str
    media_type: str = GZIP_LAYER


def push_layers(
    base_url: str,
    repository: str,
    tag: str,
    layers: Sequence[Layer],
    session: requests.Session | None = None,
) -> PushedImage:
    """An OCI image made of ready blobs, whatever they contain; by digest when no tag."""
    config = json.dumps(image_config([layer.diff_id for layer in layers])).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _pushed(base_url, repository, OCI_CONFIG, config, session),
        "layers": [
            _pushed(base_url, repository, layer.media_type, layer.blob, session) for layer in layers
        ],
    }
    return _push_manifest(base_url, repository, tag, manifest, session)


def _pushed(
    base_url: str,
    repository: str,
    media_type: str,
    data: bytes,
    session: requests.Session | None,
) -> dict[str, Any]:
    """The descriptor of `data`, pushed as a blob."""
    digest = push_blob(base_url, repository, data, session)
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def _push_manifest(
    base_url: str,
    repository: str,
    tag: str,
    manifest: dict[str, Any],
    session: requests.Session | None,
) -> PushedImage:
    body = json.dumps(manifest).encode()
    digest = push_manifest(
        base_url, repository, tag or sha256(body), body, manifest["mediaType"], session
    )
    layers = tuple(d["digest"] for d in manifest["layers"])
    return PushedImage(repository, digest, len(body), manifest["mediaType"], tag, layers, manifest)


def _tar_layer(entries: Sequence[Entry]) -> Layer:
    tar = tar_bytes(entries)
    return Layer(compress(tar, "gzip"), sha256(tar))


def _bulky_entries() -> list[Entry]:
    """Enough incompressible data for many deflate blocks, the same on every run."""
    data = random.Random(0).randbytes(256 << 10)
    return [Entry("data", "dir", mode=0o755), Entry("data/noise.bin", data=data)]


def corrupt_gzip_layer(
    base_url: str, repository: str, tag: str = "", session: requests.Session | None = None
) -> BadImage:
    """A gzip layer whose deflate data is overwritten with garbage in the middle."""
    good = _tar_layer(_bulky_entries())
    middle = len(good.blob) // 2
    garbage = bytes(b ^ 0xA5 for b in good.blob[middle : middle + 4096])
    blob = good.blob[:middle] + garbage + good.blob[middle + 4096 :]
    image = push_layers(base_url, repository, tag, [Layer(blob, good.diff_id)], session)
    return BadImage(image, "corrupt gzip stream")


def truncated_layer(
    base_url: str, repository: str, tag: str = "", session: requests.Session | None = None
) -> BadImage:
    """A gzip layer cut in half: the blob is whole as pushed, its stream ends early."""
    good = _tar_layer(_bulky_entries())
    blob = good.blob[: len(good.blob) // 2]
    image = push_layers(base_url, repository, tag, [Layer(blob, good.diff_id)], session)
    return BadImage(image, "truncated gzip stream")


@dataclass(frozen=True)
class HostileEntries:
    """Tar entries a converter must refuse, and the reason fragment it must give."""

    entries: tuple[Entry, ...]
    reason: str


HOSTILE_ENTRIES = {
    # writes outside the root when unpacked naively
    "parent-path": HostileEntries(
        (Entry("etc", "dir", mode=0o755), Entry("../escape", data=b"out\n")),
        "has a '..' component",
    ),
    "absolute-path": HostileEntries(
        (Entry("etc", "dir", mode=0o755), Entry("/etc/evil", data=b"evil\n")), "absolute path"
    ),
    # a hardlink may only point at an entry earlier in the same layer
    "hardlink-outside": HostileEntries(
        (
            Entry("etc", "dir", mode=0o755),
            Entry("etc/shadow-link", "hardlink", target="etc/shadow", mode=0o600),
        ),
        "not earlier in the layer",
    ),
    "symlink-loop": HostileEntries(
        (
            Entry("loop", "dir", mode=0o755),
            Entry("loop/a", "symlink", target="b", mode=0o777),
            Entry("loop/b", "symlink", target="a", mode=0o777),
        ),
        "symlink loop",
    ),
    # crashes the Go eStargz reader (unbounded recursion) if converted
    "hardlink-cycle": HostileEntries(
        (
            Entry("a", data=b"a\n"),
            Entry("b", data=b"b\n"),
            Entry("a", "hardlink", target="b"),
            Entry("b", "hardlink", target="a"),
        ),
        "not earlier in the final entry order",
    ),
    "hardlink-to-directory": HostileEntries(
        (Entry("etc", "dir", mode=0o755), Entry("etc-link", "hardlink", target="etc")),
        "which is a directory",
    ),
    # a TOC number Go cannot decode makes the whole layer unreadable
    "huge-uid": HostileEntries(
        (Entry("etc", "dir", mode=0o755), Entry("etc/owned", data=b"x\n", uid=10**40)),
        "what an eStargz reader can represent",
    ),
    # both names would become "a\ufffd" in the TOC
    "non-utf8-names": HostileEntries(
        (Entry("a\udcff", data=b"first\n"), Entry("a\udcfe", data=b"second\n")),
        "is not valid UTF-8",
    ),
}


def hostile_entries_image(
    base_url: str,
    repository: str,
    kind: str,
    tag: str = "",
    session: requests.Session | None = None,
) -> BadImage:
    """An image whose one layer holds the `HOSTILE_ENTRIES[kind]` entries."""
    hostile = HOSTILE_ENTRIES[kind]
    image = push_image(base_url, repository, tag, [hostile.entries], session=session)
    return BadImage(image, hostile.reason)


def huge_pax_header_layer(
    base_url: str,
    repository: str,
    tag: str = "",
    session: requests.Session | None = None,
    *,
    header_bytes: int = 2 << 20,
) -> BadImage:
    """A file whose PAX extended header holds a `comment` of `header_bytes` bytes."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("big-header")
        info.size = 3
        info.mtime = 1_700_000_000
        info.pax_headers = {"comment": "x" * header_bytes}
        tar.addfile(info, io.BytesIO(b"hi\n"))
    tar_data = out.getvalue()
    layer = Layer(compress(tar_data, "gzip"), sha256(tar_data))
    image = push_layers(base_url, repository, tag, [layer], session)
    return BadImage(image, "extended header of")


def bomb_layer(uncompressed_bytes: int = BOMB_BYTES) -> Layer:
    """A gzip'd tar of one file of zeros; built piece by piece, never whole in memory.

    Deflate compresses zeros about 1000:1, so 300 MiB of tar is about 300 KiB of blob.
    """
    gzip = zlib.compressobj(9, zlib.DEFLATED, 31)
    diff_id = hashlib.sha256()
    blob = io.BytesIO()

    def emit(data: bytes) -> None:
        diff_id.update(data)
        blob.write(gzip.compress(data))

    info = tarfile.TarInfo("zeros")
    info.size = uncompressed_bytes
    info.mtime = 1_700_000_000
    emit(info.tobuf(format=tarfile.PAX_FORMAT))
    zeros = bytes(_BOMB_PIECE)
    remaining = uncompressed_bytes
    while remaining > 0:
        piece = zeros[: min(remaining, _BOMB_PIECE)]
        emit(piece)
        remaining -= len(piece)
    emit(bytes(-uncompressed_bytes % tarfile.BLOCKSIZE + 2 * tarfile.BLOCKSIZE))
    blob.write(gzip.flush())
    return Layer(blob.getvalue(), "sha256:" + diff_id.hexdigest())


def decompression_bomb(
    base_url: str,
    repository: str,
    tag: str = "",
    session: requests.Session | None = None,
    *,
    uncompressed_bytes: int = BOMB_BYTES,
) -> BadImage:
    """An image whose one layer inflates to `uncompressed_bytes` (300 MiB by default).

    acceld rejects it once the decompressed size or ratio passes its configured limit: a test
    sets `max_uncompressed_size` (or the ratio) below what this layer inflates to.
    """
    image = push_layers(base_url, repository, tag, [bomb_layer(uncompressed_bytes)], session)
    return BadImage(image, "exceeds the limit")


def missing_blob_image(
    base_url: str, repository: str, tag: str = "", session: requests.Session | None = None
) -> BadImage:
    """A valid manifest whose last layer blob was deleted from the registry afterwards.

    The registry refuses a manifest naming an unknown blob, so the blob goes after the push.
    """
    layers = [
        [Entry("etc", "dir", mode=0o755), Entry("etc/hostname", data=b"bad-images\n")],
        [Entry("only-here", data=f"{repository}:{tag}\n".encode())],
    ]
    image = push_image(base_url, repository, tag, layers, session=session)
    delete = session.delete if session else requests.delete
    gone = delete(f"{base_url}/v2/{repository}/blobs/{image.layer_digests[-1]}", timeout=30)
    gone.raise_for_status()
    return BadImage(image, "blob unknown")


def helm_chart(
    base_url: str, repository: str, tag: str = "", session: requests.Session | None = None
) -> BadImage:
    """A Helm chart as `helm push` stores it: chart metadata config, one .tgz layer."""
    chart_yaml = b"apiVersion: v2\nname: demo\nversion: 0.1.0\n"
    chart = compress(
        tar_bytes([Entry("demo", "dir", mode=0o755), Entry("demo/Chart.yaml", data=chart_yaml)]),
        "gzip",
    )
    config = json.dumps({"apiVersion": "v2", "name": "demo", "version": "0.1.0"}).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _pushed(base_url, repository, HELM_CONFIG, config, session),
        "layers": [_pushed(base_url, repository, HELM_CHART, chart, session)],
    }
    image = _push_manifest(base_url, repository, tag, manifest, session)
    return BadImage(image, "is not an image config")


def _subject(target: PushedImage) -> dict[str, Any]:
    return {"mediaType": target.media_type, "digest": target.digest, "size": target.size}


def _simple_signing(target: PushedImage) -> bytes:
    return json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": target.repository},
                "image": {"docker-manifest-digest": target.digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        }
    ).encode()


def cosign_signature(
    base_url: str, target: PushedImage, session: requests.Session | None = None
) -> BadImage:
    """A cosign signature in the OCI 1.1 form: artifact type, empty config, `subject`."""
    image = push_artifact(
        base_url,
        target.repository,
        "",
        OCI_EMPTY,
        COSIGN_SIMPLESIGNING,
        _simple_signing(target),
        subject=_subject(target),
        artifact_type=COSIGN_SIGNATURE_TYPE,
        session=session,
    )
    return BadImage(image, "has a subject")


def legacy_cosign_signature(
    base_url: str, target: PushedImage, session: requests.Session | None = None
) -> BadImage:
    """A cosign signature as cosign 1.x/2.x pushes it by default: tag `sha256-<hex>.sig`.

    It has no `subject`, and its config is an ordinary OCI image config: only the layer media
    type, the signature annotation and the tag say it is not an image.
    """
    payload = _simple_signing(target)
    config = json.dumps(
        {
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [sha256(payload)]},
            "config": {},
        }
    ).encode()
    layer = _pushed(base_url, target.repository, COSIGN_SIMPLESIGNING, payload, session)
    layer["annotations"] = {COSIGN_SIGNATURE_ANNOTATION: "MEUCIQDtest"}
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _pushed(base_url, target.repository, OCI_CONFIG, config, session),
        "layers": [layer],
    }
    tag = target.digest.replace(":", "-") + ".sig"
    image = _push_manifest(base_url, target.repository, tag, manifest, session)
    return BadImage(image, "signature")


def spdx_sbom(
    base_url: str, target: PushedImage, session: requests.Session | None = None
) -> BadImage:
    """An SPDX SBOM attached to `target` as an OCI 1.1 referrer."""
    document = json.dumps(
        {
            "spdxVersion": "SPDX-2.3",
            "SPDXID": "SPDXRef-DOCUMENT",
            "name": target.repository,
            "dataLicense": "CC0-1.0",
            "packages": [],
        }
    ).encode()
    image = push_artifact(
        base_url,
        target.repository,
        "",
        OCI_EMPTY,
        SPDX,
        document,
        subject=_subject(target),
        artifact_type=SPDX,
        session=session,
    )
    return BadImage(image, "has a subject")
