"""Conversion of images whose size matters: many small files, one large file."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import resource
import tarfile
from pathlib import Path

import pytest
import requests

from converters.estargz import EstargzOptions
from harbor_api.registry import RegistryClient
from harbor_api.transport import TlsOptions
from harbor_api.version import ACCELD_VERSION
from reconciler.conversion.image_conversion import (
    ConversionOptions,
    ConversionResult,
    convert_image,
)
from reconciler.state.clock import SystemClock
from reconciler.state.sqlite_state import open_sqlite_state
from tests.support.converted_images import (
    check_converted_manifest,
    fallback_referrers,
    pull_manifest,
)
from tests.support.images import (
    Entry,
    image_config,
    push_blob,
    push_image,
    push_manifest,
)
from tests.support.registry_server import RunningRegistry

MIB = 1 << 20


def _convert(registry: RunningRegistry, repository: str, work_dir: Path) -> ConversionResult:
    """Convert `repository:v1` at compression level 1 with a fresh layer cache."""
    store = open_sqlite_state(work_dir.parent / f"state-{work_dir.name}.db", SystemClock())
    try:
        with RegistryClient(registry.host, tls=TlsOptions(plain_http=True)) as client:
            return convert_image(
                client,
                repository,
                "v1",
                "estargz",
                ConversionOptions(layer=EstargzOptions(compression_level=1)),
                work_dir=work_dir,
                layer_cache=store.layers,
            )
    finally:
        store.close()


def _check(registry: RunningRegistry, repository: str, digest: str, scratch: Path) -> None:
    original = pull_manifest(registry.url, repository, "v1")
    assert fallback_referrers(registry.url, repository, original.digest) == [digest]
    scratch.mkdir(exist_ok=True)
    check_converted_manifest(registry.url, repository, digest, original, ACCELD_VERSION, scratch)


def test_twenty_thousand_small_files_are_all_kept(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    repo = "large/many-files"
    files = [Entry("data", "dir", mode=0o755)]
    files += [
        Entry(f"data/d{i // 1000:02d}/f{i:05d}.txt", data=f"file {i}\n".encode() * (i % 7))
        for i in range(20_000)
    ]
    dirs = [Entry(f"data/d{d:02d}", "dir", mode=0o755) for d in range(20)]
    push_image(registry.url, repo, "v1", [[files[0], *dirs, *files[1:]]])

    result = _convert(registry, repo, tmp_path / "work")

    assert list((tmp_path / "work").iterdir()) == []
    _check(registry, repo, result.converted_digest, tmp_path / "scratch")
    assert list((tmp_path / "work").iterdir()) == []


class _HashingGzip:
    """Writes a tar stream gzip-compressed to a file, hashing the uncompressed bytes."""

    def __init__(self, path: Path) -> None:
        self.raw = path.open("wb")
        self.gzip = gzip.GzipFile(fileobj=self.raw, mode="wb", compresslevel=1, mtime=0)
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return self.gzip.write(data)

    def close(self) -> None:
        self.gzip.close()
        self.raw.close()


class _GeneratedFile:
    """`size` bytes, read like a file, generated as they are read: one sixteenth random (so no
    two chunks are alike), the rest text that compresses quickly."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.text = b"".join(b"line %06d of a large generated file\n" % i for i in range(16384))

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        noise = os.urandom(size // 16)
        return (noise + self.text * (size // len(self.text) + 1))[:size]


def _push_large_layer(base_url: str, repository: str, path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    with path.open("rb") as blob:
        for chunk in iter(lambda: blob.read(MIB), b""):
            digest.update(chunk)
    size = path.stat().st_size
    start = requests.post(f"{base_url}/v2/{repository}/blobs/uploads/", timeout=30)
    start.raise_for_status()
    location = start.headers["Location"]
    location = base_url + location if location.startswith("/") else location
    sep = "&" if "?" in location else "?"
    with path.open("rb") as body:
        done = requests.put(
            f"{location}{sep}digest=sha256:{digest.hexdigest()}",
            data=body,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            timeout=300,
        )
    done.raise_for_status()
    return f"sha256:{digest.hexdigest()}", size


@pytest.mark.slow
def test_a_300_mib_file_converts_in_bounded_memory(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    repo = "large/big-file"
    layer_path = tmp_path / "layer.tar.gz"
    writer = _HashingGzip(layer_path)
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        info = tarfile.TarInfo("big.bin")
        info.size = 300 * MIB
        info.mtime = 1_700_000_000
        tar.addfile(info, _GeneratedFile(info.size))
    writer.close()
    layer_digest, layer_size = _push_large_layer(registry.url, repo, layer_path)
    layer_path.unlink()
    config = json.dumps(image_config(["sha256:" + writer.sha.hexdigest()])).encode()
    config_digest = push_blob(registry.url, repo, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest,
                "size": layer_size,
            }
        ],
    }
    push_manifest(
        registry.url,
        repo,
        "v1",
        json.dumps(manifest).encode(),
        "application/vnd.oci.image.manifest.v1+json",
    )
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    result = _convert(registry, repo, tmp_path / "work")

    peak_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak_before
    assert peak_growth < 150 * MIB, f"peak RSS grew by {peak_growth / MIB:.0f} MiB"
    layer = result.manifests[0].layers[0]
    assert layer.bytes_downloaded == layer_size
    uncompressed = int(layer.converted.annotations["io.containers.estargz.uncompressed-size"])
    assert uncompressed > 300 * MIB
    assert list((tmp_path / "work").iterdir()) == []
    _check(registry, repo, result.converted_digest, tmp_path / "scratch")
