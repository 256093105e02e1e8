"""Pull a converted image back with plain HTTP calls and check what the OCI spec and acceld promise.

Deliberately independent of `harbor_api` and `reconciler`: the checks must not trust the code
under test.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import requests
import zstandard

from tests.support.estargz_reader import EstargzBlob, layer_tree, read_estargz
from tests.support.registry_log import WRITE_METHODS, parse_access_log

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
TOC_DIGEST = "containerd.io/snapshot/stargz/toc.digest"
UNCOMPRESSED_SIZE = "io.containers.estargz.uncompressed-size"
DRIVER_NAME = "io.goharbor.artifact.v1alpha1.acceleration.driver.name"
DRIVER_VERSION = "io.goharbor.artifact.v1alpha1.acceleration.driver.version"
SOURCE_DIGEST = "io.goharbor.artifact.v1alpha1.acceleration.source.digest"
ACCEPT = ", ".join(
    (
        OCI_MANIFEST,
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Pulled:
    digest: str
    media_type: str
    raw: bytes

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.raw)
        return data

    @property
    def descriptor(self) -> dict[str, Any]:
        """`{mediaType, digest, size}`: what a referrer's `subject` must be."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.raw)}


def pull_manifest(base_url: str, repository: str, reference: str) -> Pulled:
    answer = requests.get(
        f"{base_url}/v2/{repository}/manifests/{reference}", headers={"Accept": ACCEPT}, timeout=30
    )
    answer.raise_for_status()
    media_type = answer.headers["Content-Type"].split(";")[0]
    return Pulled(sha256(answer.content), media_type, answer.content)


def pull_blob(base_url: str, repository: str, digest: str) -> bytes:
    answer = requests.get(f"{base_url}/v2/{repository}/blobs/{digest}", timeout=120)
    answer.raise_for_status()
    assert sha256(answer.content) == digest
    return answer.content


def tags(base_url: str, repository: str) -> list[str]:
    answer = requests.get(f"{base_url}/v2/{repository}/tags/list", timeout=30)
    answer.raise_for_status()
    return list(answer.json().get("tags") or [])


def fallback_referrers(base_url: str, repository: str, subject_digest: str) -> list[str]:
    """Digests listed in the `sha256-<hex>` fallback tag index of `subject_digest`."""
    tag = re.sub(r"^sha256:", "sha256-", subject_digest)
    index = pull_manifest(base_url, repository, tag)
    assert index.media_type == OCI_INDEX
    return [entry["digest"] for entry in index.json["manifests"]]


def write_count(log_text: str, repository: str) -> int:
    """Write requests (POST, PUT, PATCH, DELETE) on `repository` in the registry's access log."""
    return sum(
        1
        for request in parse_access_log(log_text)
        if request.method in WRITE_METHODS and request.path.startswith(f"/v2/{repository}/")
    )


def download_blob(base_url: str, repository: str, digest: str, path: Path) -> Path:
    """Stream a blob to `path`, checking its digest."""
    hasher = hashlib.sha256()
    with (
        requests.get(
            f"{base_url}/v2/{repository}/blobs/{digest}", stream=True, timeout=120
        ) as answer,
        path.open("wb") as out,
    ):
        answer.raise_for_status()
        for chunk in answer.iter_content(1 << 20):
            hasher.update(chunk)
            out.write(chunk)
    assert "sha256:" + hasher.hexdigest() == digest
    return path


def open_uncompressed(path: Path, media_type: str) -> BinaryIO:
    """The tar stream of a source layer blob, whatever its compression."""
    if media_type.endswith("+zstd"):
        return zstandard.ZstdDecompressor().stream_reader(path.open("rb"), closefd=True)  # type: ignore[no-any-return]
    if media_type.endswith("gzip"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def check_converted_manifest(
    base_url: str,
    repository: str,
    digest: str,
    original: Pulled,
    driver_version: str,
    scratch: Path,
    *,
    shared_members: bool = False,
) -> list[EstargzBlob]:
    """Check one converted image manifest against its original, layer by layer.

    Each converted layer is read back with the independent eStargz reader (TOC digest,
    uncompressed size, chunk digests, landmarks) and its tree compared with the source layer's.
    Blobs are streamed through `scratch`, never held in memory.
    """
    converted = pull_manifest(base_url, repository, digest)
    manifest = converted.json
    assert converted.media_type == OCI_MANIFEST
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["subject"] == original.descriptor
    assert manifest["annotations"][DRIVER_NAME] == "estargz"
    assert manifest["annotations"][DRIVER_VERSION] == driver_version
    assert manifest["annotations"][SOURCE_DIGEST] == original.digest
    assert manifest["config"]["mediaType"] == OCI_CONFIG
    config = json.loads(pull_blob(base_url, repository, manifest["config"]["digest"]))
    original_layers = original.json["layers"]
    assert len(manifest["layers"]) == len(original_layers)
    assert len(config["rootfs"]["diff_ids"]) == len(original_layers)
    blobs = []
    for i, (layer, source) in enumerate(zip(manifest["layers"], original_layers, strict=True)):
        assert layer["mediaType"] == OCI_LAYER_GZIP
        path = download_blob(base_url, repository, layer["digest"], scratch / "converted")
        assert path.stat().st_size == layer["size"]
        blob = read_estargz(
            path,
            toc_digest=layer["annotations"][TOC_DIGEST],
            uncompressed_size=int(layer["annotations"][UNCOMPRESSED_SIZE]),
            shared_members=shared_members,
        )
        assert config["rootfs"]["diff_ids"][i] == blob.diff_id
        source_path = download_blob(base_url, repository, source["digest"], scratch / "source")
        with open_uncompressed(source_path, source["mediaType"]) as stream:
            source_tree, _ = layer_tree(stream)
        assert blob.tree == source_tree
        blobs.append(blob)
        path.unlink()
        source_path.unlink()
    return blobs
