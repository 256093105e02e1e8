"""Convert hand-built layers with acceld's nydus converter into files the oracles read.

`convert_image` writes each nydus blob and the bootstrap layer under a directory and returns
where they are, with the bootstrap extracted from the bootstrap layer (as nydus-snapshotter
does), so tests check exactly the bytes that would be pushed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from converters.nydus import (
    BootstrapLayer,
    NydusLayer,
    NydusOptions,
    convert_layer,
    write_bootstrap_layer,
)
from tests.support.oci_flatten import GZIP_LAYERS, write_oci_layout


@dataclass(frozen=True)
class ConvertedImage:
    layers: tuple[NydusLayer, ...]
    blob_paths: dict[str, Path]
    """Blob id (sha256 hex) -> blob file."""
    bootstrap_layer: BootstrapLayer
    bootstrap_layer_path: Path
    bootstrap: Path
    """`image/image.boot` extracted from the bootstrap layer."""
    blob_metas: dict[str, bytes]
    """`image/<hex>.blob.meta` files of the bootstrap layer."""


def convert_image(
    sources: Sequence[bytes], directory: Path, options: NydusOptions | None = None
) -> ConvertedImage:
    """Convert layer blobs (lowest first) and merge them."""
    options = options or NydusOptions(workers=2)
    directory.mkdir(parents=True, exist_ok=True)
    layers = []
    paths: dict[str, Path] = {}
    for index, source in enumerate(sources):
        path = directory / f"layer-{index}.nydus"
        with path.open("wb") as dest:
            layer = convert_layer(io.BytesIO(source), dest, options, directory)
        layers.append(layer)
        paths[layer.blob.blob_id] = path
    layer_path = directory / "bootstrap.tar.gz"
    with layer_path.open("wb") as dest:
        bootstrap_layer = write_bootstrap_layer(layers, dest, options)
    metas: dict[str, bytes] = {}
    with tarfile.open(layer_path, "r:gz") as archive:
        for member in archive.getmembers():
            data = archive.extractfile(member) if member.isfile() else None
            if data is None:
                continue
            name = member.name.removeprefix("image/")
            if name == "image.boot":
                (directory / "image.boot").write_bytes(data.read())
            else:
                metas[name.removesuffix(".blob.meta")] = data.read()
    return ConvertedImage(
        tuple(layers),
        paths,
        bootstrap_layer,
        layer_path,
        directory / "image.boot",
        metas,
    )


def oci_layout_of(gzip_layers: Sequence[bytes], layout: Path) -> Path:
    """An OCI layout holding an image made of `gzip_layers`, for umoci to flatten."""
    diff_ids = [_digest(gzip.decompress(layer)) for layer in gzip_layers]
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    ).encode()
    blobs: dict[str, bytes | Path] = {_digest(config): config}
    descriptors = []
    for layer in gzip_layers:
        blobs[_digest(layer)] = layer
        descriptors.append(
            {"mediaType": GZIP_LAYERS[0], "digest": _digest(layer), "size": len(layer)}
        )
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "config": {"digest": _digest(config), "size": len(config)},
            "layers": descriptors,
        }
    ).encode()
    return write_oci_layout(layout, manifest, blobs)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
