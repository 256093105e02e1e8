"""Rebuild a converted layer's `NydusLayer` from its nydus blob, reading only the blob's tail.

acceld converts layers in a child process and reuses converted layers across images, so the
image merge (`write_bootstrap_layer`) cannot count on having the `NydusLayer` that
`convert_layer` returned. The blob holds all of it (layout: `ondisk`'s docstring): the TOC
in its last bytes, and before it, back to back, `blob.meta`, `blob.digest`, `acceld.implicit`
and `image.boot`, each followed by its tar header. `read_layer` makes two reads: the last
4 KiB (the TOC and its tar header, as nydusd reads it), then the metadata entries in one
range. It never reads chunk data.

The blob may come from a registry: everything read is checked against what acceld writes —
the TOC and every tar header byte for byte, each entry's sha256 from the TOC, the blob.meta
header, chunk infos back to back inside the chunk data, the bootstrap walked with bounds
(`bootstrap_reader`) and then written again from the tree read and compared byte for byte.
Every allocation is bounded by `size`. A blob that fails any check raises `LayerRejected`.
Unchecked, because they cover chunk data this module does not read: the blob's own sha256
(`digest`: the registry's to check) and the TOC digest of `image.blob` (nydusd's).

What holds: `read_layer` of a blob `convert_layer` wrote equals (`==`, see `NydusLayer`) the
layer it returned: same facts, chunk table, blob.meta, and a tree with the same names,
attributes, hardlinks, implicit directories and chunk references.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import zstandard

from converters.errors import LayerRejected
from converters.nydus import ondisk
from converters.nydus.bootstrap import BootstrapFormat, write_bootstrap
from converters.nydus.bootstrap_reader import read_format, read_tree
from converters.nydus.layer import NydusLayer
from converters.nydus.tree import BlobFacts, Inode, LayerChunks, renumber_chunks, walk

ReadAt = Callable[[int, int], bytes]
"""`read_at(offset, length)` returns exactly `length` bytes of the blob from `offset`."""

_TAIL = 0x1000
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_FEATURES = ondisk.BLOB_FEATURES | ondisk.BLOB_INLINED_FS_META
_WITH_DATA = (
    ondisk.TOC_IMAGE_BLOB,
    ondisk.TOC_BLOB_META,
    ondisk.TOC_BLOB_META_HEADER,
    ondisk.TOC_BLOB_DIGEST,
    ondisk.TOC_IMPLICIT_DIRS,
    ondisk.TOC_BOOTSTRAP,
)
_WITHOUT_DATA = (ondisk.TOC_IMAGE_BLOB, ondisk.TOC_IMPLICIT_DIRS, ondisk.TOC_BOOTSTRAP)
_MAX_TOC_SIZE = ondisk.TOC_ENTRY_SIZE * len(_WITH_DATA)
_META_COMPRESSORS = {
    ondisk.TOC_COMPRESSION_NONE: ondisk.COMPRESS_NONE,
    ondisk.TOC_COMPRESSION_ZSTD: ondisk.COMPRESS_ZSTD,
}


@dataclass(frozen=True)
class _TocEntry:
    raw: bytes
    flags: int
    name: bytes
    digest: bytes
    offset: int
    stored_size: int
    size: int

    @classmethod
    def parse(cls, raw: bytes) -> _TocEntry:
        flags, _, name, digest, offset, stored, size = ondisk.TOC_ENTRY_STRUCT.unpack(raw)
        return cls(raw, flags, name.rstrip(b"\0"), digest, offset, stored, size)

    @property
    def label(self) -> str:
        return f"TOC entry {self.name.decode('ascii', 'replace')!r}"


@dataclass(frozen=True)
class _Span:
    """Bytes of the blob from `start` on."""

    start: int
    data: bytes

    def at(self, offset: int, length: int) -> bytes:
        return self.data[offset - self.start : offset - self.start + length]

    def content(self, entry: _TocEntry) -> bytes:
        return self.at(entry.offset, entry.stored_size)


@dataclass(frozen=True)
class _Toc:
    entries: tuple[_TocEntry, ...]
    start: int
    """Offset of the first TOC entry in the blob."""
    digest: bytes
    """sha256 of the entries and their tar header."""
    size: int
    """Bytes of the entries and their tar header."""


def read_layer(read_at: ReadAt, size: int, digest: str) -> NydusLayer:
    """The converted layer whose nydus blob of `size` bytes named `digest` `read_at` reads.

    Raises `LayerRejected` when the blob is not one `convert_layer` writes.
    """
    match = _DIGEST.fullmatch(digest)
    if match is None:
        raise LayerRejected(f"blob digest {digest!r} is not sha256:<64 lowercase hex digits>")
    toc = _read_toc(read_at, size)
    image_blob = toc.entries[0]
    span_start = image_blob.stored_size + ondisk.TAR_BLOCK
    _check_layout(toc, span_start)
    span = _Span(span_start, _read(read_at, span_start, toc.start - span_start, size))
    named = {entry.name: entry for entry in toc.entries}
    boot = _plain_entry(named[ondisk.TOC_BOOTSTRAP], span)
    implicit = _plain_entry(named[ondisk.TOC_IMPLICIT_DIRS], span)
    fmt = read_format(boot)
    chunks = LayerChunks()
    blob_meta = b""
    if ondisk.TOC_BLOB_META in named:
        infos, header = _blob_meta(named, span, image_blob.stored_size)
        digests = _plain_entry(named[ondisk.TOC_BLOB_DIGEST], span)
        _fill_chunks(chunks, infos, digests, fmt, image_blob.stored_size)
        blob_meta = infos + bytes(-len(infos) % ondisk.BLOCK_SIZE) + header
    elif image_blob.stored_size:
        raise LayerRejected(
            f"{image_blob.label}: {image_blob.stored_size} bytes of chunk data, yet no blob.meta"
        )
    _expect_entry(image_blob, compressed=False, offset=0, size=chunks.uncompressed_size)

    meta = named.get(ondisk.TOC_BLOB_META)
    # The layer's own bootstrap names its blob by the stream hash and gives no TOC (layer.py).
    chunks.blob = BlobFacts(
        blob_id=image_blob.digest.hex(),
        size=named[ondisk.TOC_BOOTSTRAP].offset,
        chunk_size=fmt.chunk_size,
        chunk_count=chunks.count,
        compressor=fmt.compressor,
        digester=fmt.digester,
        features=_FEATURES,
        uncompressed_size=chunks.uncompressed_size,
        ci_compressor=_META_COMPRESSORS[meta.flags] if meta else ondisk.COMPRESS_NONE,
        ci_offset=meta.offset if meta else 0,
        ci_compressed_size=meta.stored_size if meta else 0,
        ci_uncompressed_size=meta.size if meta else 0,
        toc_size=0,
        toc_digest=bytes(32),
    )
    root = _read_tree(boot, fmt, chunks, implicit)
    blob = replace(
        chunks.blob, blob_id=match.group(1), size=size, toc_size=toc.size, toc_digest=toc.digest
    )
    chunks.blob = blob
    return NydusLayer(
        digest=digest, size=size, blob=blob, root=root, chunks=chunks, blob_meta=blob_meta
    )


def _read(read_at: ReadAt, offset: int, length: int, size: int) -> bytes:
    data = bytes(read_at(offset, length))
    if len(data) != length:
        raise LayerRejected(
            f"reading bytes {offset}..{offset + length} of the {size}-byte blob gave "
            f"{len(data)} bytes"
        )
    return data


def _read_toc(read_at: ReadAt, size: int) -> _Toc:
    if size < ondisk.TAR_BLOCK:
        raise LayerRejected(f"a blob of {size} bytes is shorter than the TOC's tar header")
    length = min(size, _TAIL)
    tail = _read(read_at, size - length, length, size)
    header = tail[-ondisk.TAR_BLOCK :]
    toc_size = _tar_entry_size(header, ondisk.TOC_BLOB_TOC, "the blob's last 512 bytes")
    if toc_size % ondisk.TOC_ENTRY_SIZE or not 0 < toc_size <= _MAX_TOC_SIZE:
        raise LayerRejected(
            f"rafs.blob.toc: {toc_size} bytes, expected 1..{len(_WITH_DATA)} entries of "
            f"{ondisk.TOC_ENTRY_SIZE} bytes"
        )
    if toc_size + ondisk.TAR_BLOCK > length:
        raise LayerRejected(f"rafs.blob.toc: {toc_size} bytes do not fit the {size}-byte blob")
    raw = tail[length - ondisk.TAR_BLOCK - toc_size :]
    entries = tuple(
        _TocEntry.parse(raw[at : at + ondisk.TOC_ENTRY_SIZE])
        for at in range(0, toc_size, ondisk.TOC_ENTRY_SIZE)
    )
    names = tuple(entry.name for entry in entries)
    if names not in (_WITH_DATA, _WITHOUT_DATA):
        raise LayerRejected(
            f"rafs.blob.toc lists {_names(names)}, expected {_names(_WITH_DATA)} or, "
            f"without file data, {_names(_WITHOUT_DATA)}"
        )
    return _Toc(entries, size - len(raw), hashlib.sha256(raw).digest(), len(raw))


def _tar_entry_size(header: bytes, name: bytes, where: str) -> int:
    """The size in the tar header acceld writes after entry `name`; LayerRejected otherwise."""
    found = header[:100].rstrip(b"\0")
    field = header[124:136]
    if found != name or field[11:] != b"\0" or not re.fullmatch(rb"[0-7]{11}", field[:11]):
        raise LayerRejected(
            f"{where}: expected the tar header of {name.decode()!r}, found one named "
            f"{found[:32]!r} with size field {field!r}"
        )
    size = int(field[:11], 8)
    if header != ondisk.entry_tar_header(name, size):
        raise LayerRejected(
            f"{where}: the tar header of {name.decode()!r} differs from the one acceld writes "
            "(type, magic, mtime or checksum)"
        )
    return size


def _check_layout(toc: _Toc, span_start: int) -> None:
    """Entries after `image.blob` lie back to back, each followed by its tar header (one for
    blob.meta and its header), the last one right before the TOC."""
    position = span_start
    for entry in toc.entries[1:]:
        if entry.offset != position:
            raise LayerRejected(
                f"{entry.label}: at offset {entry.offset}, expected {position} (entries lie "
                "back to back, each followed by a 512-byte tar header)"
            )
        position += entry.stored_size
        if entry.name != ondisk.TOC_BLOB_META:
            position += ondisk.TAR_BLOCK
        if position > toc.start:
            raise LayerRejected(
                f"{entry.label}: {entry.stored_size} bytes at {entry.offset} run into the TOC "
                f"at {toc.start}"
            )
    if position != toc.start:
        raise LayerRejected(
            f"{toc.entries[-1].label}: ends at {position}, the TOC starts at {toc.start}"
        )


def _plain_entry(entry: _TocEntry, span: _Span) -> bytes:
    """An uncompressed entry's bytes, checked against its TOC entry and its tar header."""
    data = _plain_content(entry, span)
    _expect_tar_header(span, entry.offset + len(data), entry.name, len(data))
    return data


def _plain_content(entry: _TocEntry, span: _Span) -> bytes:
    """An uncompressed entry's bytes, checked against its TOC entry."""
    data = span.content(entry)
    _expect_digest(entry, data)
    _expect_entry(entry, compressed=False, offset=entry.offset, size=entry.stored_size)
    return data


def _blob_meta(named: dict[bytes, _TocEntry], span: _Span, data_size: int) -> tuple[bytes, bytes]:
    """(chunk infos, uncompressed; the 4 KiB header) of the blob.meta entry."""
    meta = named[ondisk.TOC_BLOB_META]
    head = named[ondisk.TOC_BLOB_META_HEADER]
    header = _plain_content(head, span)
    if len(header) != ondisk.BLOB_META_HEADER_SIZE:
        raise LayerRejected(f"{head.label}: {len(header)} bytes, expected 4096")
    _expect_tar_header(
        span, head.offset + len(header), ondisk.TOC_BLOB_META, meta.stored_size + len(header)
    )
    fields = ondisk.META_HEADER_STRUCT.unpack_from(header)
    compressor, count = fields[2], fields[3]
    if not 0 < count <= min(ondisk.MAX_CHUNKS_PER_BLOB, data_size):
        raise LayerRejected(
            f"blob.meta header: {count} chunks, expected 1..{ondisk.MAX_CHUNKS_PER_BLOB} and at "
            f"most one per byte of the {data_size}-byte chunk data"
        )
    if _META_COMPRESSORS.get(meta.flags) != compressor:
        raise LayerRejected(
            f"{meta.label}: flags {meta.flags:#x} disagree with the blob.meta header's "
            f"ci_compressor {compressor}"
        )
    expected = ondisk.blob_meta_header(
        features=_FEATURES,
        ci_compressor=compressor,
        ci_entries=count,
        ci_offset=meta.offset,
        ci_compressed_size=meta.stored_size,
        ci_uncompressed_size=ondisk.CHUNK_INFO_V1_SIZE * count,
    )
    if header != expected:
        raise LayerRejected(
            f"blob.meta header differs from the one acceld writes for {count} chunks at offset "
            f"{meta.offset} (magic, features, sizes or reserved bytes), first at byte "
            f"{_first_difference(header, expected)}"
        )
    stored = span.content(meta)
    size = ondisk.CHUNK_INFO_V1_SIZE * count
    infos = _unzstd(stored, size, meta.label) if compressor == ondisk.COMPRESS_ZSTD else stored
    if len(infos) != size:
        raise LayerRejected(f"{meta.label}: {len(infos)} bytes of chunk infos, expected {size}")
    _expect_digest(meta, infos)
    _expect_entry(
        meta, compressed=compressor == ondisk.COMPRESS_ZSTD, offset=meta.offset, size=size
    )
    return infos, header


def _fill_chunks(
    chunks: LayerChunks, infos: bytes, digests: bytes, fmt: BootstrapFormat, data_size: int
) -> None:
    """The chunk table from V1 chunk infos, which must lie as acceld writes them: back to back
    from the start of the chunk data to its end, each one 4 KiB aligned uncompressed."""
    count = len(infos) // ondisk.CHUNK_INFO_V1_SIZE
    if len(digests) != 32 * count:
        raise LayerRejected(f"blob.digest: {len(digests)} bytes, expected 32 x {count} chunks")
    chunks.digests = bytearray(digests)
    compressed_end = uncompressed_end = 0
    for index, (uncomp, comp) in enumerate(ondisk.CHUNK_INFO_V1_STRUCT.iter_unpack(infos)):
        c_offset, c_size, u_offset, u_size = ondisk.chunk_info_v1_fields(uncomp, comp)
        raw_only = fmt.compressor == ondisk.COMPRESS_NONE
        if (
            uncomp & 0xFF
            or c_offset != compressed_end
            or u_offset != uncompressed_end
            or u_size > fmt.chunk_size
            or (raw_only and c_size != u_size)
        ):
            raise LayerRejected(
                f"blob.meta chunk {index}: compressed {c_offset}+{c_size}, uncompressed "
                f"{u_offset}+{u_size}; expected chunks back to back from {compressed_end} "
                f"(compressed) and {uncompressed_end} (uncompressed), at most chunk_size "
                f"{fmt.chunk_size}{', stored raw' if raw_only else ''}"
            )
        chunks.compressed_offsets.append(c_offset)
        chunks.compressed_sizes.append(c_size)
        chunks.uncompressed_offsets.append(u_offset)
        chunks.uncompressed_sizes.append(u_size)
        compressed_end = c_offset + c_size
        uncompressed_end = ondisk.round_up(u_offset + u_size, ondisk.BLOCK_SIZE)
    if compressed_end != data_size:
        raise LayerRejected(
            f"blob.meta: the chunks end at {compressed_end}, the chunk data at {data_size}"
        )


def _read_tree(boot: bytes, fmt: BootstrapFormat, chunks: LayerChunks, implicit: bytes) -> Inode:
    """The layer's tree, numbered and marked as `convert_layer` leaves it; its bootstrap must
    be exactly the one acceld writes for it."""
    root = read_tree(boot, fmt, chunks)
    order = walk(root)
    renumber_chunks(order, chunks, fmt.chunk_size)
    if len(implicit) % 4:
        raise LayerRejected(f"acceld.implicit: {len(implicit)} bytes, not a multiple of 4")
    previous = -1
    for position in ondisk.implicit_dir_positions(implicit):
        if not previous < position < len(order):
            raise LayerRejected(
                f"acceld.implicit: position {position} after {previous}, expected ascending "
                f"positions below the {len(order)} inodes"
            )
        inode = order[position]
        if not _is_default_directory(inode):
            raise LayerRejected(
                f"acceld.implicit: inode {position + 1} (mode {inode.mode:#o}) is not a "
                "directory with default attributes (0755, owner 0:0, mtime 0, no xattrs)"
            )
        inode.implicit = True
        previous = position
    written = write_bootstrap(root, fmt).data
    if written != boot:
        raise LayerRejected(
            "image.boot differs from the bootstrap acceld writes for the tree it holds, first "
            f"at byte {_first_difference(boot, written)} of {len(boot)}"
        )
    return root


def _is_default_directory(inode: Inode) -> bool:
    return (
        inode.mode == ondisk.S_IFDIR | 0o755
        and inode.uid == inode.gid == inode.mtime == inode.mtime_nsec == 0
        and not inode.xattrs
    )


def _unzstd(data: bytes, size: int, what: str) -> bytes:
    """`data` decompressed, reading at most `size` + 1 bytes out of it."""
    out = bytearray()
    try:
        with zstandard.ZstdDecompressor().stream_reader(data) as reader:
            while len(out) <= size:
                piece = reader.read(size + 1 - len(out))
                if not piece:
                    break
                out += piece
    except zstandard.ZstdError as exc:
        raise LayerRejected(f"{what}: corrupt zstd data: {exc}") from None
    return bytes(out)


def _expect_digest(entry: _TocEntry, data: bytes) -> None:
    if hashlib.sha256(data).digest() != entry.digest:
        raise LayerRejected(f"{entry.label}: the sha256 of its {len(data)} bytes differs")


def _expect_entry(entry: _TocEntry, *, compressed: bool, offset: int, size: int) -> None:
    """The TOC entry holds these flags, offset and uncompressed size and zero reserved bytes."""
    expected = ondisk.toc_entry(
        name=entry.name,
        compressed=compressed,
        digest=entry.digest,
        compressed_offset=offset,
        compressed_size=entry.stored_size,
        uncompressed_size=size,
    )
    if entry.raw != expected:
        found = _TocEntry.parse(expected)
        raise LayerRejected(
            f"{entry.label}: flags {entry.flags:#x}, offset {entry.offset}, sizes "
            f"{entry.stored_size}/{entry.size}; expected flags {found.flags:#x}, offset "
            f"{found.offset}, sizes {found.stored_size}/{found.size} and zero reserved bytes"
        )


def _expect_tar_header(span: _Span, at: int, name: bytes, size: int) -> None:
    found = _tar_entry_size(span.at(at, ondisk.TAR_BLOCK), name, f"tar header at offset {at}")
    if found != size:
        raise LayerRejected(
            f"tar header at offset {at}: size {found}, expected {size} for {name.decode()!r}"
        )


def _first_difference(a: bytes, b: bytes) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def _names(names: tuple[bytes, ...]) -> str:
    return "[" + ", ".join(name.decode("ascii", "replace") for name in names) + "]"
