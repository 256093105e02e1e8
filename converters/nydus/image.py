"""The per-image part of a nydus conversion: merged bootstrap, packed as the bootstrap layer.

The bootstrap layer is a gzip'd tar (as nydus-snapshotter's converter writes it) holding
`image/` (0755), `image/image.boot` (0444) and `image/<blob hex>.blob.meta` (0444) for each
blob in the bootstrap's blob table. Tar and gzip headers carry no times or owners, so the same
layers give the same bytes.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from converters import tar_header as th
from converters.nydus.bootstrap import write_bootstrap
from converters.nydus.layer import NydusLayer, bootstrap_format
from converters.nydus.media import ANNOTATION_BOOTSTRAP, ANNOTATION_FS_VERSION
from converters.nydus.merge import merge_trees
from converters.nydus.options import NydusOptions

_GZIP_LEVEL = 9


@dataclass(frozen=True)
class BootstrapLayer:
    """The written bootstrap layer's descriptor facts."""

    digest: str
    """"sha256:<hex>" of the gzip'd tar."""
    size: int
    diff_id: str
    """"sha256:<hex>" of the uncompressed tar."""
    blob_ids: tuple[str, ...]
    """Hex digests of the blobs in the bootstrap's blob table, by blob index."""
    inodes: int

    def annotations(self) -> dict[str, str]:
        return {ANNOTATION_BOOTSTRAP: "true", ANNOTATION_FS_VERSION: "6"}


def write_bootstrap_layer(
    layers: Sequence[NydusLayer], dest: BinaryIO, options: NydusOptions
) -> BootstrapLayer:
    """Merge `layers` (lowest first) and write the bootstrap layer to `dest`."""
    root = merge_trees([layer.root for layer in layers])
    prefetch = [path.encode("utf-8") for path in options.prefetch]
    bootstrap = write_bootstrap(root, bootstrap_format(options, merged=True), prefetch)
    metas = {layer.blob.blob_id: layer.blob_meta for layer in layers}
    members = [
        (th.TarHeader(name=b"image/", typeflag=th.DIR, mode=0o755), b""),
        (
            th.TarHeader(
                name=b"image/image.boot", typeflag=th.REG, mode=0o444, size=len(bootstrap.data)
            ),
            bootstrap.data,
        ),
    ]
    for blob in bootstrap.blobs:
        meta = metas[blob.blob_id]
        name = f"image/{blob.blob_id}.blob.meta".encode("ascii")
        members.append((th.TarHeader(name=name, typeflag=th.REG, mode=0o444, size=len(meta)), meta))
    tar_hash = hashlib.sha256()
    gzip_hash = hashlib.sha256()
    size = 0
    deflater = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, -15)
    crc = 0
    length = 0

    def emit(data: bytes) -> None:
        nonlocal size
        dest.write(data)
        gzip_hash.update(data)
        size += len(data)

    def add(data: bytes) -> None:
        nonlocal crc, length
        tar_hash.update(data)
        crc = zlib.crc32(data, crc)
        length += len(data)
        emit(deflater.compress(data))

    emit(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff")
    for header, data in members:
        add(th.encode_header(header))
        add(data)
        add(th.padding(len(data)))
    add(bytes(2 * th.BLOCK))
    emit(deflater.flush())
    emit(crc.to_bytes(4, "little") + (length & 0xFFFFFFFF).to_bytes(4, "little"))
    return BootstrapLayer(
        digest=f"sha256:{gzip_hash.hexdigest()}",
        size=size,
        diff_id=f"sha256:{tar_hash.hexdigest()}",
        blob_ids=tuple(blob.blob_id for blob in bootstrap.blobs),
        inodes=bootstrap.inodes,
    )
