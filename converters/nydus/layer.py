"""Convert one layer blob (gzip, zstd or plain tar) into a nydus blob, in one streaming pass.

File data is cut into chunks, deduplicated and compressed as it is read and goes straight to
`dest` as the blob's `image.blob` entry; the rest of the blob (chunk infos, chunk digests, the
layer's implicit directories, its own bootstrap, the TOC) is small and follows once the layer
has been read: enough to rebuild the returned `NydusLayer` from the blob (`layer_reader`).
Memory holds the layer's tree and its chunk table, never file data beyond the chunks in flight.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from converters import tar_header as th
from converters.entry_names import clean_name, display
from converters.errors import LayerRejected
from converters.hashing_writer import HashingWriter
from converters.layer_source import LayerSource
from converters.nydus import ondisk
from converters.nydus.bootstrap import BootstrapFormat, write_bootstrap
from converters.nydus.chunks import ChunkWriter
from converters.nydus.media import ANNOTATION_BLOB
from converters.nydus.options import NydusOptions
from converters.nydus.tree import (
    BlobFacts,
    Inode,
    LayerChunks,
    renumber_chunks,
    same_tree,
    walk,
)
from converters.nydus.tree_builder import TreeBuilder, inode_from_header
from converters.symlinks import find_symlink_loop
from converters.tar_reader import TarReader


@dataclass(frozen=True, eq=False)
class NydusLayer:
    """A converted layer: the blob's descriptor facts and what the image merge needs.

    Two layers are equal when their facts, chunk tables and trees are (`same_tree`): inodes
    are compared by what they hold, not by identity, so a layer read back from its blob
    (`layer_reader.read_layer`) equals the one `convert_layer` returned.
    """

    digest: str
    """"sha256:<hex>" of the blob file; also its diff_id (the blob is its own tar-like stream)."""
    size: int
    """Size of the blob file in bytes."""
    blob: BlobFacts
    """The blob's entry in a bootstrap's blob table (chunk_count 0: no file data)."""
    root: Inode
    """The layer's tree, whiteout files included. Never changed after conversion."""
    chunks: LayerChunks
    """The blob's chunk table."""
    blob_meta: bytes
    """The `<hex>.blob.meta` file of the bootstrap layer: chunk infos, zero padding to 4 KiB,
    the 4 KiB header; b"" without file data."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NydusLayer):
            return NotImplemented
        return (
            self.digest == other.digest
            and self.size == other.size
            and self.blob == other.blob
            and self.blob_meta == other.blob_meta
            and self.chunks == other.chunks
            and same_tree(self.root, other.root)
        )

    def annotations(self) -> dict[str, str]:
        """The blob layer descriptor's annotations."""
        return {ANNOTATION_BLOB: "true"}


def bootstrap_format(options: NydusOptions, *, merged: bool) -> BootstrapFormat:
    return BootstrapFormat(
        chunk_size=options.chunk_size,
        compressor=ondisk.COMPRESS_ZSTD if options.compressor == "zstd" else ondisk.COMPRESS_NONE,
        digester=ondisk.DIGEST_BLAKE3 if options.digester == "blake3" else ondisk.DIGEST_SHA256,
        merged=merged,
    )


def convert_layer(
    source: BinaryIO, dest: BinaryIO, options: NydusOptions, work_dir: Path
) -> NydusLayer:
    """Write the nydus blob of the layer read from `source` to `dest`.

    Raises `LayerRejected` when the source is not a sound layer or holds something RAFS
    cannot represent; `dest` then holds a partial blob the caller must discard. `work_dir` is
    accepted for symmetry with the eStargz converter; nothing is spilled today.
    """
    del work_dir
    sink = HashingWriter(dest)
    chunks = LayerChunks()
    writer = ChunkWriter(sink.write, chunks, options)
    try:
        root = _read_layer(source, writer, chunks, options)
        writer.finish()
    finally:
        writer.close()
    return _finish_blob(sink, root, chunks, writer.compressed_size, options)


def _read_layer(
    source: BinaryIO, writer: ChunkWriter, chunks: LayerChunks, options: NydusOptions
) -> Inode:
    layer = LayerSource(source, options.limits, threads=1 if options.thread_count() > 1 else 0)
    try:
        builder = TreeBuilder()
        reader = TarReader(layer, options.limits)
        symlinks: dict[bytes, bytes] = {}
        while (header := reader.next_header()) is not None:
            where = f"tar entry at offset {reader.header_offset}"
            key = clean_name(header.name, where)
            if header.typeflag == th.LINK:
                target = clean_name(header.linkname, f"{where} ({display(header.name)!r})")
                builder.link(key, target, where)
                continue
            inode = inode_from_header(header, key, where, chunks, writer.submitted)
            if header.typeflag in th.REGULAR_TYPES:
                _write_file(reader, writer, options.chunk_size)
            if header.typeflag == th.SYMLINK:
                symlinks[key] = header.linkname
            builder.add(key, inode, where)
        layer.drain()
    finally:
        layer.close()
    chain = find_symlink_loop(symlinks)
    if chain is not None:
        path = " -> ".join(repr(display(name)) for name in chain)
        raise LayerRejected(f"symlink loop in the layer: {path}")
    return builder.root


def _write_file(reader: TarReader, writer: ChunkWriter, chunk_size: int) -> None:
    pending = bytearray()
    for piece in reader.payload():
        pending += piece
        while len(pending) >= chunk_size:
            writer.add(bytes(pending[:chunk_size]))
            del pending[:chunk_size]
    if pending:
        writer.add(bytes(pending))


def _finish_blob(
    sink: HashingWriter,
    root: Inode,
    chunks: LayerChunks,
    data_size: int,
    options: NydusOptions,
) -> NydusLayer:
    fmt = bootstrap_format(options, merged=False)
    order = walk(root)
    renumber_chunks(order, chunks, options.chunk_size)
    sink.write(ondisk.entry_tar_header(ondisk.TOC_IMAGE_BLOB, data_size))
    toc = [
        ondisk.toc_entry(
            name=ondisk.TOC_IMAGE_BLOB,
            compressed=False,
            digest=sink.digest.digest(),
            compressed_offset=0,
            compressed_size=data_size,
            uncompressed_size=chunks.uncompressed_size,
        )
    ]
    stream_id = sink.digest.hexdigest()
    features = ondisk.BLOB_FEATURES | ondisk.BLOB_INLINED_FS_META
    ci_compressor = ondisk.COMPRESS_NONE
    ci_offset = ci_stored_size = ci_size = 0
    blob_meta = b""
    if chunks.count:
        infos = b"".join(
            ondisk.chunk_info_v1(
                chunks.compressed_offsets[i],
                chunks.compressed_sizes[i],
                chunks.uncompressed_offsets[i],
                chunks.uncompressed_sizes[i],
            )
            for i in range(chunks.count)
        )
        stored = infos
        if options.compressor == "zstd":
            packed = zstandard.ZstdCompressor(level=options.compression_level).compress(infos)
            if len(packed) < len(infos):
                stored, ci_compressor = packed, ondisk.COMPRESS_ZSTD
        ci_offset, ci_stored_size, ci_size = sink.written, len(stored), len(infos)
        header = ondisk.blob_meta_header(
            features=features,
            ci_compressor=ci_compressor,
            ci_entries=chunks.count,
            ci_offset=ci_offset,
            ci_compressed_size=ci_stored_size,
            ci_uncompressed_size=ci_size,
        )
        sink.write(stored)
        sink.write(header)
        sink.write(ondisk.entry_tar_header(ondisk.TOC_BLOB_META, len(stored) + len(header)))
        toc.append(
            ondisk.toc_entry(
                name=ondisk.TOC_BLOB_META,
                compressed=ci_compressor == ondisk.COMPRESS_ZSTD,
                digest=hashlib.sha256(infos).digest(),
                compressed_offset=ci_offset,
                compressed_size=ci_stored_size,
                uncompressed_size=ci_size,
            )
        )
        toc.append(
            ondisk.toc_entry(
                name=ondisk.TOC_BLOB_META_HEADER,
                compressed=False,
                digest=hashlib.sha256(header).digest(),
                compressed_offset=ci_offset + ci_stored_size,
                compressed_size=len(header),
                uncompressed_size=len(header),
            )
        )
        blob_meta = infos + bytes(-len(infos) % ondisk.BLOCK_SIZE) + header
        _write_entry(sink, toc, ondisk.TOC_BLOB_DIGEST, bytes(chunks.digests))

    def facts(blob_id: str, size: int, toc_size: int, toc_digest: bytes) -> BlobFacts:
        return BlobFacts(
            blob_id=blob_id,
            size=size,
            chunk_size=options.chunk_size,
            chunk_count=chunks.count,
            compressor=fmt.compressor,
            digester=fmt.digester,
            features=features,
            uncompressed_size=chunks.uncompressed_size,
            ci_compressor=ci_compressor,
            ci_offset=ci_offset,
            ci_compressed_size=ci_stored_size,
            ci_uncompressed_size=ci_size,
            toc_size=toc_size,
            toc_digest=toc_digest,
        )

    implicit = [position for position, inode in enumerate(order) if inode.implicit]
    _write_entry(sink, toc, ondisk.TOC_IMPLICIT_DIRS, ondisk.implicit_dirs(implicit))
    # The layer's own bootstrap cannot name the blob it sits in: it takes the hash of the
    # chunk data as blob id, as nydus-image does with its stream hash.
    chunks.blob = facts(stream_id, sink.written, 0, bytes(32))
    bootstrap = write_bootstrap(root, fmt).data
    _write_entry(sink, toc, ondisk.TOC_BOOTSTRAP, bootstrap)

    toc_data = b"".join(toc) + ondisk.entry_tar_header(
        ondisk.TOC_BLOB_TOC, len(toc) * ondisk.TOC_ENTRY_SIZE
    )
    sink.write(toc_data)
    digest = sink.digest.hexdigest()
    blob = facts(digest, sink.written, len(toc_data), hashlib.sha256(toc_data).digest())
    chunks.blob = blob
    return NydusLayer(
        digest=f"sha256:{digest}",
        size=sink.written,
        blob=blob,
        root=root,
        chunks=chunks,
        blob_meta=blob_meta,
    )


def _write_entry(sink: HashingWriter, toc: list[bytes], name: bytes, data: bytes) -> None:
    offset = sink.written
    sink.write(data)
    sink.write(ondisk.entry_tar_header(name, len(data)))
    toc.append(
        ondisk.toc_entry(
            name=name,
            compressed=False,
            digest=hashlib.sha256(data).digest(),
            compressed_offset=offset,
            compressed_size=len(data),
            uncompressed_size=len(data),
        )
    )
