"""Build small test images and push them to a registry with plain HTTP calls.

Deliberately independent of `harbor_api`: test inputs must not depend on the code under test.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
import zstandard

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER_MEDIA = {
    ("oci", "gzip"): "application/vnd.oci.image.layer.v1.tar+gzip",
    ("oci", "zstd"): "application/vnd.oci.image.layer.v1.tar+zstd",
    ("oci", "none"): "application/vnd.oci.image.layer.v1.tar",
    ("docker", "gzip"): "application/vnd.docker.image.rootfs.diff.tar.gzip",
}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One tar entry. kind: file, dir, symlink, hardlink, char, block, fifo."""

    name: str
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    target: str = ""
    uid: int = 0
    gid: int = 0
    uname: str = ""
    gname: str = ""
    mtime: int = 1_700_000_000
    xattrs: dict[str, str] = field(default_factory=dict)
    devmajor: int = 0
    devminor: int = 0


_KINDS = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def tar_bytes(entries: Iterable[Entry]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = _KINDS[entry.kind]
            info.mode = entry.mode
            info.uid, info.gid = entry.uid, entry.gid
            info.uname, info.gname = entry.uname, entry.gname
            info.mtime = entry.mtime
            info.linkname = entry.target
            info.devmajor, info.devminor = entry.devmajor, entry.devminor
            if entry.xattrs:
                info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in entry.xattrs.items()}
            if entry.kind == "file":
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
            else:
                tar.addfile(info)
    return out.getvalue()


def compress(tar: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(tar, compresslevel=6, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(tar)
    return tar


# A capability set the kernel accepts (v2 magic, permitted cap_net_raw), so that tools that
# restore xattrs (umoci, a mounted filesystem) can hold it.
NET_RAW_CAPABILITY = "\x01\x00\x00\x02\x00\x20\x00\x00" + "\x00" * 12


def sample_layers() -> list[list[Entry]]:
    """Two layers with files, directories, a symlink, a hardlink, xattrs and a whiteout."""
    base = [
        Entry("etc", "dir", mode=0o755),
        Entry("etc/os-release", data=b"NAME=acceld-test\n"),
        Entry("bin", "dir", mode=0o755),
        Entry("bin/tool", data=b"#!/bin/sh\necho tool\n" * 50, mode=0o755),
        Entry("bin/tool-link", "symlink", target="tool", mode=0o777),
        Entry("bin/tool-hard", "hardlink", target="bin/tool", mode=0o755),
        Entry("var", "dir", mode=0o755),
        Entry("var/old", data=b"to be deleted\n"),
        Entry("usr", "dir", mode=0o755),
        Entry(
            "usr/ping",
            data=b"\x7fELF" + bytes(range(256)) * 8,
            mode=0o4755,
            xattrs={"security.capability": NET_RAW_CAPABILITY},
        ),
    ]
    top = [
        Entry("var", "dir", mode=0o755),
        Entry("var/.wh.old", data=b""),
        Entry("app", "dir", mode=0o755, uid=1000, gid=1000, uname="app", gname="app"),
        Entry("app/main.py", data=b"print('hello')\n" * 100, uid=1000, gid=1000),
        Entry("app/empty", data=b""),
    ]
    return [base, top]


@dataclass(frozen=True)
class PushedImage:
    repository: str
    digest: str
    size: int
    media_type: str
    tag: str
    layer_digests: tuple[str, ...]
    manifest: dict[str, Any]


def _auth(session: requests.Session | None) -> requests.Session:
    return session or requests.Session()


def push_blob(
    base_url: str, repository: str, data: bytes, session: requests.Session | None = None
) -> str:
    http = _auth(session)
    digest = sha256(data)
    if http.head(f"{base_url}/v2/{repository}/blobs/{digest}", timeout=30).status_code == 200:
        return digest
    start = http.post(f"{base_url}/v2/{repository}/blobs/uploads/", timeout=30)
    start.raise_for_status()
    location = start.headers["Location"]
    if location.startswith("/"):
        location = base_url + location
    sep = "&" if "?" in location else "?"
    done = http.put(
        f"{location}{sep}digest={digest}",
        data=data,
        headers={"Content-Type": "application/octet-stream"},
        timeout=120,
    )
    done.raise_for_status()
    return digest


def push_manifest(
    base_url: str,
    repository: str,
    reference: str,
    body: bytes,
    media_type: str,
    session: requests.Session | None = None,
) -> str:
    http = _auth(session)
    answer = http.put(
        f"{base_url}/v2/{repository}/manifests/{reference}",
        data=body,
        headers={"Content-Type": media_type},
        timeout=30,
    )
    answer.raise_for_status()
    return sha256(body)


def image_config(
    diff_ids: Sequence[str], architecture: str = "amd64", os_name: str = "linux", variant: str = ""
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "architecture": architecture,
        "os": os_name,
        "config": {
            "Env": ["PATH=/usr/bin:/bin"],
            "Cmd": ["/bin/tool"],
            "Image": "sha256:" + "0" * 64,
        },
        "container_config": {"Image": "sha256:" + "1" * 64},
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created_by": f"layer {i}"} for i in range(len(diff_ids))],
    }
    if variant:
        config["variant"] = variant
    return config


def push_image(
    base_url: str,
    repository: str,
    tag: str = "",
    layers: Sequence[Sequence[Entry]] | None = None,
    *,
    compression: str = "gzip",
    docker: bool = False,
    architecture: str = "amd64",
    variant: str = "",
    annotations: dict[str, str] | None = None,
    session: requests.Session | None = None,
) -> PushedImage:
    """Push an image built from `layers` (default: `sample_layers()`); by digest when no tag."""
    layers = sample_layers() if layers is None else layers
    flavour = "docker" if docker else "oci"
    layer_descs, diff_ids = [], []
    for entries in layers:
        tar = tar_bytes(entries)
        blob = compress(tar, compression)
        digest = push_blob(base_url, repository, blob, session)
        layer_descs.append(
            {"mediaType": LAYER_MEDIA[(flavour, compression)], "digest": digest, "size": len(blob)}
        )
        diff_ids.append(sha256(tar))
    config = json.dumps(image_config(diff_ids, architecture, variant=variant)).encode()
    config_digest = push_blob(base_url, repository, config, session)
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": {
            "mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
            "digest": config_digest,
            "size": len(config),
        },
        "layers": layer_descs,
    }
    if annotations:
        manifest["annotations"] = annotations
    body = json.dumps(manifest).encode()
    digest = sha256(body)
    push_manifest(base_url, repository, tag or digest, body, manifest["mediaType"], session)
    return PushedImage(
        repository,
        digest,
        len(body),
        manifest["mediaType"],
        tag,
        tuple(d["digest"] for d in layer_descs),
        manifest,
    )


def push_index(
    base_url: str,
    repository: str,
    tag: str,
    platforms: Sequence[str],
    *,
    docker: bool = False,
    session: requests.Session | None = None,
) -> tuple[PushedImage, list[PushedImage]]:
    """A multi-arch index of one image per `os/arch[/variant]`, children pushed by digest."""
    children, entries = [], []
    for platform in platforms:
        parts = platform.split("/")
        arch, variant = parts[1], parts[2] if len(parts) > 2 else ""
        layers = [[Entry("arch", data=platform.encode())], *sample_layers()]
        child = push_image(
            base_url,
            repository,
            "",
            layers,
            docker=docker,
            architecture=arch,
            variant=variant,
            session=session,
        )
        children.append(child)
        plat: dict[str, str] = {"architecture": arch, "os": parts[0]}
        if variant:
            plat["variant"] = variant
        entries.append(
            {
                "mediaType": child.media_type,
                "digest": child.digest,
                "size": child.size,
                "platform": plat,
            }
        )
    media_type = DOCKER_LIST if docker else OCI_INDEX
    index = {"schemaVersion": 2, "mediaType": media_type, "manifests": entries}
    body = json.dumps(index).encode()
    digest = push_manifest(base_url, repository, tag or sha256(body), body, media_type, session)
    return PushedImage(repository, digest, len(body), media_type, tag, (), index), children


def push_artifact(
    base_url: str,
    repository: str,
    tag: str,
    config_media_type: str,
    layer_media_type: str,
    payload: bytes,
    *,
    subject: dict[str, Any] | None = None,
    artifact_type: str = "",
    session: requests.Session | None = None,
) -> PushedImage:
    """A non-image artifact (Helm chart, signature, SBOM) with one layer."""
    config = b"{}"
    config_digest = push_blob(base_url, repository, config, session)
    layer_digest = push_blob(base_url, repository, payload, session)
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config_media_type, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": layer_media_type, "digest": layer_digest, "size": len(payload)}],
    }
    if artifact_type:
        manifest["artifactType"] = artifact_type
    if subject:
        manifest["subject"] = subject
    body = json.dumps(manifest).encode()
    digest = sha256(body)
    push_manifest(base_url, repository, tag or digest, body, OCI_MANIFEST, session)
    return PushedImage(repository, digest, len(body), OCI_MANIFEST, tag, (layer_digest,), manifest)
