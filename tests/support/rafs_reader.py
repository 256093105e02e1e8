"""An independent reader and validator of Nydus RAFS v6 bootstraps and nydus blobs.

A test oracle: written from `../shared/reference/nydus.md` and the upstream sources it names,
never from `converters/nydus`, so a misreading of the format in the converter is not repeated
here. `parse_bootstrap` checks every rule of nydus.md §3 that the bootstrap alone can show,
`parse_blob` the tar-like stream, its TOC and blob.meta (§2, §4), and `validate_image` what needs
both: blob table against blob.meta, chunk table against chunk infos, and every chunk's digest
against its decompressed data. Rule violations are gathered and raised together as
`RafsInvalid`; a fidelity loss that nydusd still serves (EXPLICIT_UID_GID missing while files
are owned) is a warning on the result instead.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import mmap
import stat
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

Buffer = bytes | bytearray | mmap.mmap

BLOCK = 4096
SUPERBLOCK_OFFSET = 1024
EXT_SUPERBLOCK_OFFSET = 1152
DEVICE_SLOT_OFFSET = 1408
DEVICE_SLOT_SIZE = 128
BLOB_ENTRY_SIZE = 256
CHUNK_RECORD_SIZE = 80
CHUNK_INFO_SIZE = 16
BLOB_META_HEADER_SIZE = 4096
TAR_HEADER_SIZE = 512
TOC_ENTRY_SIZE = 128
NID_SLOT = 32
MAX_CHUNKS_PER_BLOB = 1 << 24

EROFS_MAGIC = 0xE0F5E1E2
FEATURE_COMPAT_RAFS_V6 = 0x4000_0000
FEATURE_INCOMPAT_RAFS = 0x0C
BLOB_META_MAGIC = 0xB10BB10B

FLAG_COMPRESSION_NONE = 0x1
FLAG_COMPRESSION_LZ4 = 0x2
FLAG_DIGEST_BLAKE3 = 0x4
FLAG_DIGEST_SHA256 = 0x8
FLAG_EXPLICIT_UID_GID = 0x10
FLAG_HAS_XATTR = 0x20
FLAG_COMPRESSION_GZIP = 0x40
FLAG_COMPRESSION_ZSTD = 0x80
FLAG_INLINED_CHUNK_DIGEST = 0x100
FLAG_ENCRYPTION_NONE = 0x0100_0000
COMPRESSOR_FLAGS = {
    FLAG_COMPRESSION_NONE: "none",
    FLAG_COMPRESSION_LZ4: "lz4_block",
    FLAG_COMPRESSION_GZIP: "gzip",
    FLAG_COMPRESSION_ZSTD: "zstd",
}
DIGESTER_FLAGS = {FLAG_DIGEST_BLAKE3: "blake3", FLAG_DIGEST_SHA256: "sha256"}
KNOWN_FLAGS = (
    sum(COMPRESSOR_FLAGS)
    | sum(DIGESTER_FLAGS)
    | FLAG_EXPLICIT_UID_GID
    | FLAG_HAS_XATTR
    | FLAG_INLINED_CHUNK_DIGEST
    | FLAG_ENCRYPTION_NONE
)

# Blob table and blob.meta algorithm numbers (nydus_utils::compress / digest).
COMPRESSION_ALGOS = {0: "none", 1: "lz4_block", 2: "gzip", 3: "zstd"}
DIGEST_ALGOS = {0: "blake3", 1: "sha256"}

BLOB_ALIGNED = 0x1
BLOB_INLINED_FS_META = 0x2
BLOB_INLINED_CHUNK_DIGEST = 0x20
BLOB_HAS_TAR_HEADER = 0x1000_0000
BLOB_HAS_TOC = 0x2000_0000
BLOB_CAP_TAR_TOC = 0x4000_0000
# V2 chunk infos, zran, separate, tarfs, batch and encrypted blobs are outside what acceld
# writes and what this reader decodes, so their bits count as unknown.
KNOWN_BLOB_FEATURES = (
    BLOB_ALIGNED
    | BLOB_INLINED_FS_META
    | BLOB_INLINED_CHUNK_DIGEST
    | BLOB_HAS_TAR_HEADER
    | BLOB_HAS_TOC
    | BLOB_CAP_TAR_TOC
)

CHUNK_FLAG_COMPRESSED = 0x1

LAYOUT_FLAT_PLAIN = 0
LAYOUT_FLAT_INLINE = 2
LAYOUT_CHUNK_BASED = 4
CHUNK_FORMAT_INDEXES = 0x20
CHUNK_FORMAT_BITS_MASK = 0x1F
NULL_BLKADDR = 0xFFFF_FFFF

XATTR_PREFIXES = {
    1: b"user.",
    2: b"system.posix_acl_access",
    3: b"system.posix_acl_default",
    4: b"trusted.",
    6: b"security.",
}

KINDS = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}
DIRENT_TYPES = {"file": 1, "dir": 2, "char": 3, "block": 4, "fifo": 5, "socket": 6, "symlink": 7}

TOC_FLAGS = {1: "none", 2: "zstd", 4: "lz4_block"}
# nydus looks TOC entries up by name and skips others, such as acceld's own acceld.implicit.
TOC_NAMES = (
    "image.blob",
    "blob.meta",
    "blob.meta.header",
    "blob.digest",
    "acceld.implicit",
    "image.boot",
)
STREAM_NAMES = (
    "image.blob",
    "blob.meta",
    "blob.digest",
    "acceld.implicit",
    "image.boot",
    "rafs.blob.toc",
)


class RafsError(Exception):
    """The input cannot be read as RAFS v6 / a nydus blob at all."""


class RafsInvalid(RafsError):
    """The input parses but breaks rules; `problems` lists each with where it was found."""

    def __init__(self, what: str, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(f"{what}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))


class UnsupportedCompression(RafsError):
    """A compressor this machine has no library for (lz4 without the `lz4` package)."""


@dataclass(frozen=True)
class DeviceSlot:
    blob_id: str
    blocks: int
    mapped_blkaddr: int


@dataclass(frozen=True)
class BlobEntry:
    blob_id: str
    blob_index: int
    chunk_size: int
    chunk_count: int
    compressor: str
    digester: str
    features: int
    compressed_size: int
    uncompressed_size: int
    blob_toc_size: int
    ci_compressor: str
    ci_offset: int
    ci_compressed_size: int
    ci_uncompressed_size: int
    blob_toc_digest: bytes
    blob_meta_digest: bytes
    blob_meta_size: int
    cipher_algo: int


@dataclass(frozen=True)
class ChunkRecord:
    """One 80-byte RafsV5ChunkInfo record of the bootstrap's chunk table."""

    digest: bytes
    blob_index: int
    flags: int
    compressed_size: int
    uncompressed_size: int
    compressed_offset: int
    uncompressed_offset: int
    file_offset: int
    index: int
    crc32: int


@dataclass(frozen=True)
class ChunkRef:
    """One entry of a file's chunk-index array."""

    blob_index: int
    ci_index: int
    blkaddr: int

    @property
    def uncompressed_offset(self) -> int:
        return self.blkaddr * BLOCK


@dataclass(frozen=True)
class Node:
    path: str
    kind: str
    mode: int
    uid: int
    gid: int
    mtime: int
    mtime_nsec: int
    size: int
    nlink: int
    rdev: int
    xattrs: tuple[tuple[bytes, bytes], ...]
    symlink: bytes | None
    chunks: tuple[ChunkRef, ...]
    nid: int
    ino: int

    @property
    def permissions(self) -> int:
        return stat.S_IMODE(self.mode)


@dataclass(frozen=True)
class Bootstrap:
    size: int
    flags: int
    chunk_size: int
    root_nid: int
    inos: int
    meta_blkaddr: int
    build_time: int
    devices: tuple[DeviceSlot, ...]
    blobs: tuple[BlobEntry, ...]
    chunk_table: tuple[ChunkRecord, ...]
    prefetch: tuple[int, ...]
    nodes: tuple[Node, ...]
    warnings: tuple[str, ...]

    @property
    def compressor(self) -> str:
        return next(n for f, n in COMPRESSOR_FLAGS.items() if self.flags & f)

    @property
    def digester(self) -> str:
        return next(n for f, n in DIGESTER_FLAGS.items() if self.flags & f)

    @property
    def tree(self) -> dict[str, Node]:
        return {node.path: node for node in self.nodes}

    def chunk_record(self, blob_index: int, ci_index: int) -> ChunkRecord | None:
        for record in self.chunk_table:
            if record.blob_index == blob_index and record.index == ci_index:
                return record
        return None


@dataclass(frozen=True)
class ChunkInfo:
    """One V1 chunk info of blob.meta."""

    compressed_offset: int
    compressed_size: int
    uncompressed_offset: int
    uncompressed_size: int

    @property
    def is_compressed(self) -> bool:
        return self.compressed_size != self.uncompressed_size

    @property
    def compressed_end(self) -> int:
        return self.compressed_offset + self.compressed_size

    @property
    def uncompressed_end(self) -> int:
        return self.uncompressed_offset + self.uncompressed_size


@dataclass(frozen=True)
class BlobMetaHeader:
    features: int
    ci_compressor: str
    ci_entries: int
    ci_offset: int
    ci_compressed_size: int
    ci_uncompressed_size: int


@dataclass(frozen=True)
class StreamEntry:
    """A tar-like stream entry: data at `offset`, its 512-byte header right after."""

    name: str
    offset: int
    size: int


@dataclass(frozen=True)
class TocEntry:
    name: str
    compressor: str
    digest: bytes
    compressed_offset: int
    compressed_size: int
    uncompressed_size: int


@dataclass(frozen=True)
class NydusBlob:
    size: int
    entries: tuple[StreamEntry, ...]
    toc: tuple[TocEntry, ...]
    toc_digest: bytes
    toc_size: int
    meta_header: BlobMetaHeader
    chunks: tuple[ChunkInfo, ...]
    chunk_digests: tuple[bytes, ...]
    bootstrap: bytes | None

    def entry(self, name: str) -> StreamEntry | None:
        return next((e for e in self.entries if e.name == name), None)


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self, ok: bool, message: str) -> bool:
        if not ok:
            self.items.append(message)
        return ok

    def raise_if_any(self, what: str) -> None:
        if self.items:
            raise RafsInvalid(what, self.items)


def round_up(value: int, to: int) -> int:
    return -(-value // to) * to


def _unpack(fmt: str, data: Buffer, offset: int) -> tuple[Any, ...]:
    size = struct.calcsize(fmt)
    if offset < 0 or offset + size > len(data):
        raise RafsError(f"{size} bytes at {offset} lie past the end ({len(data)} bytes)")
    return struct.unpack_from(fmt, data, offset)


def _digest(algo: str, data: bytes) -> bytes:
    if algo == "sha256":
        return hashlib.sha256(data).digest()
    blake3 = importlib.import_module("blake3")
    return bytes(blake3.blake3(data).digest())


def decompress(algo: str, data: bytes, size: int) -> bytes:
    """Decompress one chunk or chunk-info array to exactly `size` bytes."""
    if algo == "none":
        out = bytes(data)
    elif algo == "zstd":
        out = zstandard.ZstdDecompressor().decompressobj().decompress(bytes(data))
    elif algo == "lz4_block":
        try:
            lz4_block = importlib.import_module("lz4.block")
        except ImportError as exc:
            raise UnsupportedCompression("lz4_block data needs the `lz4` package") from exc
        out = lz4_block.decompress(bytes(data), uncompressed_size=size)
    else:
        raise UnsupportedCompression(f"no decoder for {algo!r}")
    if len(out) != size:
        raise RafsError(f"{algo} data decompressed to {len(out)} bytes, expected {size}")
    return out


# --- bootstrap ---------------------------------------------------------------------------


def parse_bootstrap(data: bytes) -> Bootstrap:
    """Parse a RAFS v6 bootstrap and check every rule that needs no blob data."""
    problems = _Problems()
    warnings: list[str] = []
    size = len(data)
    if size < BLOCK:
        raise RafsError(f"bootstrap is {size} bytes, less than one 4096-byte block")
    problems.check(size % BLOCK == 0, f"bootstrap size {size} is not a multiple of 4096")

    (
        magic,
        checksum,
        compat,
        blkszbits,
        extslots,
        root_nid,
        inos,
        build_time,
        build_nsec,
        _blocks,
        meta_blkaddr,
        xattr_blkaddr,
    ) = _unpack("<IIIBBHQQIIII", data, SUPERBLOCK_OFFSET)
    incompat, s_u, extra_devices, devt_slotoff = _unpack("<IHHH", data, SUPERBLOCK_OFFSET + 80)
    if magic != EROFS_MAGIC:
        raise RafsError(f"superblock magic is {magic:#x}, expected {EROFS_MAGIC:#x}")
    problems.check(checksum == 0, f"superblock checksum is {checksum:#x}, expected 0")
    problems.check(
        compat == FEATURE_COMPAT_RAFS_V6,
        f"feature_compat is {compat:#x}, expected exactly {FEATURE_COMPAT_RAFS_V6:#x}",
    )
    if blkszbits != 12:
        raise RafsError(f"blkszbits is {blkszbits}, expected 12")
    problems.check(extslots == 0, f"extslots is {extslots}, expected 0")
    problems.check(inos > 0, "inos is 0")
    problems.check(s_u == 0, f"superblock union field is {s_u:#x}, expected 0")
    problems.check(
        xattr_blkaddr == 0, f"xattr_blkaddr is {xattr_blkaddr}, expected 0 (no shared xattrs)"
    )
    problems.check(
        incompat == FEATURE_INCOMPAT_RAFS,
        f"feature_incompat is {incompat:#x}, expected exactly {FEATURE_INCOMPAT_RAFS:#x}",
    )
    problems.check(devt_slotoff == 11, f"devt_slotoff is {devt_slotoff}, expected 11")
    meta_base = meta_blkaddr * BLOCK
    if meta_base >= size:
        raise RafsError(f"meta_blkaddr {meta_blkaddr} lies past the bootstrap end {size}")

    (
        flags,
        blob_off,
        blob_size,
        chunk_size,
        chunk_off,
        chunk_tbl_size,
        prefetch_off,
        prefetch_size,
    ) = _unpack("<QQIIQQQI", data, EXT_SUPERBLOCK_OFFSET)
    compressors = [n for f, n in COMPRESSOR_FLAGS.items() if flags & f]
    digesters = [n for f, n in DIGESTER_FLAGS.items() if flags & f]
    problems.check(
        len(compressors) == 1, f"flags {flags:#x}: {len(compressors)} compressor bits, expected 1"
    )
    problems.check(
        len(digesters) == 1, f"flags {flags:#x}: {len(digesters)} digester bits, expected 1"
    )
    problems.check(
        flags & ~KNOWN_FLAGS == 0, f"flags {flags:#x}: unknown bits {flags & ~KNOWN_FLAGS:#x}"
    )
    problems.check(
        chunk_size & (chunk_size - 1) == 0 and BLOCK <= chunk_size <= 16 << 20,
        f"chunk_size {chunk_size} is not a power of two in 4 KiB..16 MiB",
    )

    devslot_end = DEVICE_SLOT_OFFSET + DEVICE_SLOT_SIZE * extra_devices
    problems.check(devslot_end <= BLOCK, f"{extra_devices} device slots overflow the first block")
    problems.check(
        blob_off % BLOCK == 0
        and blob_off >= max(BLOCK, devslot_end)
        and blob_size % BLOB_ENTRY_SIZE == 0
        and blob_off + blob_size <= size,
        f"blob table at {blob_off} size {blob_size}: not 4 KiB aligned after the device slots, "
        f"not a multiple of 256, or past the end",
    )
    if chunk_tbl_size:
        problems.check(
            chunk_off % BLOCK == 0
            and chunk_off >= max(BLOCK, devslot_end)
            and chunk_tbl_size % CHUNK_RECORD_SIZE == 0
            and chunk_off + chunk_tbl_size <= size,
            f"chunk table at {chunk_off} size {chunk_tbl_size}: not 4 KiB aligned, not a "
            f"multiple of 80, or past the end",
        )
    if prefetch_size and prefetch_off:
        problems.check(
            prefetch_off >= max(BLOCK, devslot_end)
            and prefetch_size % 4 == 0
            and prefetch_off + prefetch_size <= size,
            f"prefetch table at {prefetch_off} size {prefetch_size} is misplaced",
        )
    problems.raise_if_any("bootstrap superblock")

    devices = tuple(_device_slot(data, i, problems) for i in range(extra_devices))
    ids = [d.blob_id for d in devices]
    problems.check(len(set(ids)) == len(ids), "device table holds a blob id twice")
    blobs = tuple(
        _blob_entry(data, blob_off + i * BLOB_ENTRY_SIZE, i, chunk_size, problems)
        for i in range(blob_size // BLOB_ENTRY_SIZE)
    )
    problems.check(
        len(blobs) == extra_devices,
        f"extra_devices is {extra_devices} but the blob table has {len(blobs)} entries",
    )
    for slot, blob in zip(devices, blobs, strict=False):
        problems.check(
            slot.blob_id == blob.blob_id,
            f"device slot {blob.blob_index} names {slot.blob_id}, blob table {blob.blob_id}",
        )
        problems.check(
            slot.blocks * BLOCK >= blob.uncompressed_size,
            f"device slot {blob.blob_index}: {slot.blocks} blocks hold less than the blob's "
            f"uncompressed size {blob.uncompressed_size}",
        )
        problems.check(
            COMPRESSOR_FLAGS.get(flags & sum(COMPRESSOR_FLAGS)) == blob.compressor,
            f"blob {blob.blob_index} compressor {blob.compressor} differs from the superblock's",
        )
        problems.check(
            DIGESTER_FLAGS.get(flags & sum(DIGESTER_FLAGS)) == blob.digester,
            f"blob {blob.blob_index} digester {blob.digester} differs from the superblock's",
        )
    chunk_table = tuple(
        _chunk_record(data, chunk_off + i * CHUNK_RECORD_SIZE)
        for i in range(chunk_tbl_size // CHUNK_RECORD_SIZE)
    )
    prefetch = (
        tuple(struct.unpack_from(f"<{prefetch_size // 4}I", data, prefetch_off))
        if prefetch_size and prefetch_off
        else ()
    )

    reader = _TreeReader(data, meta_base, chunk_size, build_time, build_nsec, len(blobs), problems)
    reader.walk(root_nid)
    nodes = tuple(reader.nodes)

    ranges = [(blob_off, blob_size, "blob table")]
    if chunk_tbl_size:
        ranges.append((chunk_off, chunk_tbl_size, "chunk table"))
    if prefetch_size and prefetch_off:
        ranges.append((prefetch_off, prefetch_size, "prefetch table"))
    _check_disjoint([*ranges, *reader.ranges], problems)

    distinct_nids = {n.nid for n in nodes}
    if len(distinct_nids) != inos:
        warnings.append(f"inos is {inos}, the tree holds {len(distinct_nids)} inodes")
    inos_by_nid = {n.nid: n.ino for n in nodes}
    for entry in prefetch:
        problems.check(
            entry in distinct_nids or entry in inos_by_nid.values(),
            f"prefetch table entry {entry} is no inode of the tree",
        )
    _check_links(nodes, problems)
    _check_chunk_refs(nodes, blobs, chunk_table, chunk_size, problems)

    if any(n.xattrs for n in nodes):
        problems.check(bool(flags & FLAG_HAS_XATTR), "inodes hold xattrs but HAS_XATTR is unset")
    if not flags & FLAG_EXPLICIT_UID_GID and any(n.uid or n.gid for n in nodes):
        warnings.append(
            "EXPLICIT_UID_GID is unset while files are owned by non-root: nydusd's FUSE mode "
            "shows them as owned by itself"
        )
    problems.raise_if_any("bootstrap")
    return Bootstrap(
        size=size,
        flags=flags,
        chunk_size=chunk_size,
        root_nid=root_nid,
        inos=inos,
        meta_blkaddr=meta_blkaddr,
        build_time=build_time,
        devices=devices,
        blobs=blobs,
        chunk_table=chunk_table,
        prefetch=prefetch,
        nodes=nodes,
        warnings=tuple(warnings),
    )


def _is_hex_id(raw: bytes) -> bool:
    return len(raw) == 64 and all(c in b"0123456789abcdef" for c in raw)


def _device_slot(data: bytes, index: int, problems: _Problems) -> DeviceSlot:
    offset = DEVICE_SLOT_OFFSET + index * DEVICE_SLOT_SIZE
    raw_id, blocks, mapped = _unpack("<64sII", data, offset)
    problems.check(_is_hex_id(raw_id), f"device slot {index}: blob id {raw_id!r} is not 64 hex")
    problems.check(blocks != 0, f"device slot {index}: blocks is 0")
    return DeviceSlot(raw_id.decode("ascii", "replace"), blocks, mapped)


def _blob_entry(
    data: bytes, offset: int, index: int, chunk_size: int, problems: _Problems
) -> BlobEntry:
    raw_id = data[offset : offset + 64]
    (
        blob_index,
        b_chunk_size,
        chunk_count,
        comp,
        dig,
        features,
        c_size,
        u_size,
        toc_size,
        ci_comp,
        ci_offset,
        ci_c_size,
        ci_u_size,
    ) = _unpack("<IIIIIIQQIIQQQ", data, offset + 64)
    toc_digest = data[offset + 136 : offset + 168]
    meta_digest = data[offset + 168 : offset + 200]
    meta_size, _iv, cipher = _unpack("<Q8sI", data, offset + 200)
    where = f"blob table entry {index}"
    problems.check(_is_hex_id(raw_id), f"{where}: blob id {raw_id!r} is not 64 hex")
    problems.check(blob_index == index, f"{where}: blob_index is {blob_index}")
    problems.check(
        b_chunk_size == chunk_size, f"{where}: chunk_size {b_chunk_size} != superblock {chunk_size}"
    )
    problems.check(0 < chunk_count <= MAX_CHUNKS_PER_BLOB, f"{where}: chunk_count {chunk_count}")
    problems.check(comp in COMPRESSION_ALGOS, f"{where}: compression_algo {comp} unknown")
    problems.check(ci_comp in COMPRESSION_ALGOS, f"{where}: ci_compressor {ci_comp} unknown")
    problems.check(dig in DIGEST_ALGOS, f"{where}: digest_algo {dig} unknown")
    problems.check(cipher == 0, f"{where}: cipher_algo {cipher}, expected 0 (none)")
    problems.check(bool(features & BLOB_ALIGNED), f"{where}: features {features:#x} lack ALIGNED")
    problems.check(
        features & ~KNOWN_BLOB_FEATURES == 0,
        f"{where}: features {features:#x} hold unknown bits {features & ~KNOWN_BLOB_FEATURES:#x}",
    )
    problems.check(u_size % BLOCK == 0, f"{where}: uncompressed_size {u_size} not 4 KiB aligned")
    problems.check(u_size <= 1 << 44 and c_size <= 1 << 40, f"{where}: blob sizes too large")
    problems.check(
        ci_u_size == CHUNK_INFO_SIZE * chunk_count,
        f"{where}: ci_uncompressed_size {ci_u_size} != 16 x chunk_count {chunk_count}",
    )
    problems.check(
        ci_c_size <= ci_u_size, f"{where}: ci_compressed_size {ci_c_size} > uncompressed"
    )
    return BlobEntry(
        blob_id=raw_id.decode("ascii", "replace"),
        blob_index=blob_index,
        chunk_size=b_chunk_size,
        chunk_count=chunk_count,
        compressor=COMPRESSION_ALGOS.get(comp, str(comp)),
        digester=DIGEST_ALGOS.get(dig, str(dig)),
        features=features,
        compressed_size=c_size,
        uncompressed_size=u_size,
        blob_toc_size=toc_size,
        ci_compressor=COMPRESSION_ALGOS.get(ci_comp, str(ci_comp)),
        ci_offset=ci_offset,
        ci_compressed_size=ci_c_size,
        ci_uncompressed_size=ci_u_size,
        blob_toc_digest=bytes(toc_digest),
        blob_meta_digest=bytes(meta_digest),
        blob_meta_size=meta_size,
        cipher_algo=cipher,
    )


def _chunk_record(data: bytes, offset: int) -> ChunkRecord:
    digest = data[offset : offset + 32]
    fields = _unpack("<IIIIQQQII", data, offset + 32)
    return ChunkRecord(bytes(digest), *fields)


class _TreeReader:
    """Walks the directory tree from the root NID, checking inodes, xattrs and dirents."""

    def __init__(
        self,
        data: bytes,
        meta_base: int,
        chunk_size: int,
        build_time: int,
        build_nsec: int,
        blob_count: int,
        problems: _Problems,
    ) -> None:
        self.data = data
        self.meta_base = meta_base
        self.chunk_size = chunk_size
        self.build_time = build_time
        self.build_nsec = build_nsec
        self.blob_count = blob_count
        self.problems = problems
        self.nodes: list[Node] = []
        self.ranges: list[tuple[int, int, str]] = []
        self._seen: set[int] = set()
        self._dirs: set[int] = set()

    def walk(self, root_nid: int) -> None:
        pending: list[tuple[int, str, int, int]] = [(root_nid, "/", root_nid, DIRENT_TYPES["dir"])]
        while pending:
            nid, path, parent, dirent_type = pending.pop()
            children = self._visit(nid, path, parent, dirent_type)
            pending.extend(reversed(children))

    def _visit(
        self, nid: int, path: str, parent: int, dirent_type: int
    ) -> list[tuple[int, str, int, int]]:
        node, payload = self._inode(nid, path)
        self.nodes.append(node)
        self.problems.check(
            DIRENT_TYPES[node.kind] == dirent_type,
            f"{path}: dirent type {dirent_type} but the inode is a {node.kind}",
        )
        if node.kind != "dir":
            return []
        if nid in self._dirs:
            self.problems.check(False, f"{path}: directory nid {nid} is reached twice (a loop)")
            return []
        self._dirs.add(nid)
        return self._dirents(node, payload, parent)

    def _inode(self, nid: int, path: str) -> tuple[Node, bytes]:
        p = self.problems
        offset = self.meta_base + nid * NID_SLOT
        if offset + 32 > len(self.data):
            raise RafsError(f"{path}: nid {nid} lies past the bootstrap end")
        (fmt,) = _unpack("<H", self.data, offset)
        extended = bool(fmt & 1)
        layout = (fmt >> 1) & 0x7
        p.check(fmt & ~0xF == 0, f"{path}: i_format {fmt:#x} has unknown bits")
        if extended:
            (_f, icount, mode, _r, size, i_u, ino, uid, gid, mtime, mtime_nsec, nlink) = _unpack(
                "<HHHHQIIIIQII", self.data, offset
            )
            isize = 64
        else:
            (_f, icount, mode, nlink, size, _r, i_u, ino, uid, gid) = _unpack(
                "<HHHHIIIIHH", self.data, offset
            )
            mtime, mtime_nsec, isize = self.build_time, self.build_nsec, 32
        kind = KINDS.get(stat.S_IFMT(mode))
        if kind is None:
            raise RafsError(f"{path}: nid {nid} mode {mode:#o} has no known file type")
        p.check(nlink != 0, f"{path}: nlink is 0")
        xattr_size = 12 + (icount - 1) * 4 if icount else 0
        xattrs = self._xattrs(offset + isize, xattr_size, path)
        body = offset + isize + xattr_size
        chunks: tuple[ChunkRef, ...] = ()
        payload = b""
        rdev = 0
        end = body
        if kind == "file":
            if layout == LAYOUT_CHUNK_BASED:
                chunks, end = self._chunk_indexes(body, size, i_u, path)
            else:
                p.check(size == 0, f"{path}: regular file of {size} bytes is not CHUNK_BASED")
        elif kind in ("dir", "symlink"):
            p.check(
                layout in (LAYOUT_FLAT_PLAIN, LAYOUT_FLAT_INLINE),
                f"{path}: {kind} has data layout {layout}, expected FLAT_PLAIN or FLAT_INLINE",
            )
            payload, end = self._flat_data(body, size, i_u, layout, path)
        else:
            p.check(size == 0, f"{path}: {kind} has size {size}")
            if kind in ("char", "block"):
                rdev = i_u
        if nid not in self._seen:
            self._seen.add(nid)
            self.ranges.append((offset, end - offset, f"inode {path}"))
        symlink = None
        if kind == "symlink":
            symlink = payload
            p.check(payload != b"", f"{path}: symlink target is empty")
        node = Node(
            path=path,
            kind=kind,
            mode=mode,
            uid=uid,
            gid=gid,
            mtime=mtime,
            mtime_nsec=mtime_nsec,
            size=size,
            nlink=nlink,
            rdev=rdev,
            xattrs=xattrs,
            symlink=symlink,
            chunks=chunks,
            nid=nid,
            ino=ino,
        )
        return node, payload

    def _xattrs(self, start: int, size: int, path: str) -> tuple[tuple[bytes, bytes], ...]:
        if not size:
            return ()
        p = self.problems
        (_filter, shared) = _unpack("<IB", self.data, start)
        p.check(shared == 0, f"{path}: {shared} shared xattrs (RAFS allows inline only)")
        pos, end = start + 12 + 4 * shared, start + size
        found: list[tuple[bytes, bytes]] = []
        while pos < end:
            name_len, index, value_size = _unpack("<BBH", self.data, pos)
            name = self.data[pos + 4 : pos + 4 + name_len]
            value = self.data[pos + 4 + name_len : pos + 4 + name_len + value_size]
            prefix = XATTR_PREFIXES.get(index)
            if not p.check(prefix is not None, f"{path}: xattr name index {index} unknown"):
                break
            assert prefix is not None
            found.append((prefix + name, bytes(value)))
            pos += round_up(4 + name_len + value_size, 4)
        p.check(pos == end, f"{path}: xattr entries overrun i_xattr_icount by {pos - end} bytes")
        return tuple(sorted(found))

    def _chunk_indexes(
        self, body: int, size: int, i_u: int, path: str
    ) -> tuple[tuple[ChunkRef, ...], int]:
        p = self.problems
        bits = 12 + (i_u & CHUNK_FORMAT_BITS_MASK)
        p.check(bool(i_u & CHUNK_FORMAT_INDEXES), f"{path}: chunk format {i_u:#x} lacks INDEXES")
        p.check(
            1 << bits == self.chunk_size and i_u & ~0x3F == 0,
            f"{path}: chunk format {i_u:#x} does not encode chunk_size {self.chunk_size}",
        )
        start = round_up(body, 8)
        count = -(-size // self.chunk_size)
        refs: list[ChunkRef] = []
        for i in range(count):
            lo, hi, blkaddr = _unpack("<HHI", self.data, start + 8 * i)
            device = hi & 0xFF
            ref = ChunkRef(blob_index=device - 1, ci_index=((hi >> 8) << 16) | lo, blkaddr=blkaddr)
            p.check(
                0 < device <= self.blob_count and blkaddr != NULL_BLKADDR,
                f"{path}: chunk {i} names device {device} of {self.blob_count}, block {blkaddr:#x}",
            )
            refs.append(ref)
        return tuple(refs), start + 8 * count

    def _flat_data(
        self, body: int, size: int, i_u: int, layout: int, path: str
    ) -> tuple[bytes, int]:
        p = self.problems
        if layout == LAYOUT_FLAT_PLAIN:
            head, tail = size, 0
        else:
            tail = size % BLOCK
            head = size - tail
        data = b""
        if head:
            start = i_u * BLOCK
            if not p.check(start + head <= len(self.data), f"{path}: data blocks past the end"):
                return b"", body
            data = self.data[start : start + head]
            self.ranges.append((start, round_up(head, BLOCK), f"data of {path}"))
        if tail:
            p.check(
                body % BLOCK + tail <= BLOCK,
                f"{path}: inline tail of {tail} bytes crosses a block boundary",
            )
            data += self.data[body : body + tail]
        return bytes(data), body + tail

    def _dirents(self, node: Node, data: bytes, parent: int) -> list[tuple[int, str, int, int]]:
        p = self.problems
        names: list[tuple[bytes, int, int]] = []
        for block_start in range(0, len(data), BLOCK):
            block = data[block_start : block_start + BLOCK]
            if len(block) < 12:
                p.check(
                    False, f"{node.path}: directory block at {block_start} is {len(block)} bytes"
                )
                break
            (first_off,) = struct.unpack_from("<H", block, 8)
            if not p.check(
                first_off % 12 == 0 and 12 <= first_off <= len(block),
                f"{node.path}: first nameoff {first_off} in block {block_start // BLOCK}",
            ):
                break
            count = first_off // 12
            for i in range(count):
                nid, nameoff, ftype = struct.unpack_from("<QHB", block, 12 * i)
                if i + 1 < count:
                    (name_end,) = struct.unpack_from("<H", block, 12 * (i + 1) + 8)
                else:
                    name_end = len(block)
                raw = block[nameoff:name_end]
                if i + 1 == count:
                    raw = raw.split(b"\0", 1)[0]
                ok = p.check(
                    nameoff < name_end <= len(block) and 0 < len(raw) <= 255,
                    f"{node.path}: dirent {i} of block {block_start // BLOCK} has a bad name span",
                )
                if ok:
                    names.append((bytes(raw), nid, ftype))
        order = [n for n, _, _ in names]
        for a, b in itertools.pairwise(order):
            p.check(a < b, f"{node.path}: wrong dirent name order: {a!r} before {b!r}")
        by_name = {n: (nid, t) for n, nid, t in names}
        p.check(
            by_name.get(b".", (None, 0))[0] == node.nid,
            f"{node.path}: '.' missing or not pointing at itself",
        )
        p.check(
            by_name.get(b"..", (None, 0))[0] == parent,
            f"{node.path}: '..' missing or not pointing at the parent",
        )
        children = []
        for name, nid, ftype in names:
            if name in (b".", b".."):
                continue
            p.check(b"/" not in name, f"{node.path}: name {name!r} holds '/'")
            child = node.path.rstrip("/") + "/" + name.decode("utf-8", "surrogateescape")
            children.append((nid, child, node.nid, ftype))
        return children


def _check_disjoint(ranges: list[tuple[int, int, str]], problems: _Problems) -> None:
    spans = sorted((start, start + length, what) for start, length, what in ranges if length)
    for (_s1, e1, w1), (s2, _e2, w2) in itertools.pairwise(spans):
        problems.check(e1 <= s2, f"{w1} overlaps {w2} at {s2}")


def hardlink_groups(nodes: Sequence[Node]) -> frozenset[frozenset[str]]:
    """Paths of non-directories sharing an inode number, groups of two or more.

    nydus-image writes each path of a hardlink as its own inode record (own NID) carrying the
    same i_ino, so the kernel's EROFS shows them as separate inodes while nydusd shows one;
    pointing several dirents at one NID is valid EROFS too. Both group here by i_ino.
    """
    groups: dict[int, set[str]] = {}
    for node in nodes:
        if node.kind != "dir":
            groups.setdefault(node.ino, set()).add(node.path)
    return frozenset(frozenset(g) for g in groups.values() if len(g) > 1)


def _check_links(nodes: Sequence[Node], problems: _Problems) -> None:
    by_ino: dict[int, list[Node]] = {}
    for node in nodes:
        by_ino.setdefault(node.ino, []).append(node)
    subdirs: dict[str, int] = {}
    for node in nodes:
        if node.kind == "dir" and node.path != "/":
            parent = node.path.rsplit("/", 1)[0] or "/"
            subdirs[parent] = subdirs.get(parent, 0) + 1
    for ino, group in by_ino.items():
        first = group[0]
        if first.kind == "dir":
            problems.check(
                len(group) == 1,
                f"{first.path}: a directory shares inode number {ino} with {group[-1].path}",
            )
            problems.check(
                first.nlink == 2 + subdirs.get(first.path, 0),
                f"{first.path}: nlink {first.nlink}, expected 2 + "
                f"{subdirs.get(first.path, 0)} subdirectories",
            )
            continue
        problems.check(
            first.nlink == len(group),
            f"{first.path}: nlink {first.nlink} but {len(group)} paths carry inode number {ino}",
        )
        for other in group[1:]:
            problems.check(
                _same_inode(first, other),
                f"{other.path}: shares inode number {ino} with {first.path} but not its attributes",
            )


def _same_inode(a: Node, b: Node) -> bool:
    def identity(n: Node) -> tuple[object, ...]:
        return (
            n.kind,
            n.mode,
            n.uid,
            n.gid,
            n.mtime,
            n.mtime_nsec,
            n.size,
            n.nlink,
            n.rdev,
            n.xattrs,
            n.symlink,
            n.chunks,
        )

    return identity(a) == identity(b)


def _check_chunk_refs(
    nodes: Sequence[Node],
    blobs: Sequence[BlobEntry],
    table: Sequence[ChunkRecord],
    chunk_size: int,
    problems: _Problems,
) -> None:
    records: dict[tuple[int, int], ChunkRecord] = {}
    for i, record in enumerate(table):
        key = (record.blob_index, record.index)
        problems.check(
            key not in records, f"chunk table record {i} repeats blob {key[0]} chunk {key[1]}"
        )
        records[key] = record
        problems.check(
            record.blob_index < len(blobs) and record.index < blobs[record.blob_index].chunk_count,
            f"chunk table record {i} names blob {record.blob_index} chunk {record.index}, "
            f"which does not exist",
        )
        problems.check(
            record.uncompressed_offset % BLOCK == 0,
            f"chunk table record {i}: uncompressed_offset {record.uncompressed_offset} unaligned",
        )
        problems.check(
            bool(record.flags & CHUNK_FLAG_COMPRESSED)
            == (record.compressed_size != record.uncompressed_size),
            f"chunk table record {i}: COMPRESSED flag disagrees with its sizes",
        )
    for node in nodes:
        for i, ref in enumerate(node.chunks):
            where = f"{node.path}: chunk {i}"
            if not 0 <= ref.blob_index < len(blobs):
                continue
            blob = blobs[ref.blob_index]
            length = min(chunk_size, node.size - i * chunk_size)
            problems.check(
                ref.ci_index < blob.chunk_count,
                f"{where}: chunk index {ref.ci_index} >= {blob.chunk_count}",
            )
            problems.check(
                ref.uncompressed_offset + length <= blob.uncompressed_size,
                f"{where}: block {ref.blkaddr} + {length} bytes past the blob's uncompressed size "
                f"{blob.uncompressed_size}",
            )
            record = records.get((ref.blob_index, ref.ci_index))
            if not problems.check(record is not None, f"{where}: no chunk table record for it"):
                continue
            assert record is not None
            problems.check(
                record.uncompressed_offset == ref.uncompressed_offset,
                f"{where}: block address {ref.uncompressed_offset} but the chunk table says "
                f"{record.uncompressed_offset}",
            )
            problems.check(
                record.uncompressed_size == length,
                f"{where}: chunk holds {record.uncompressed_size} bytes, the file needs {length}",
            )


# --- blob --------------------------------------------------------------------------------


@contextmanager
def open_blob(path: Path) -> Iterator[mmap.mmap]:
    """Map a blob file read-only, so large blobs are not read into memory."""
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        yield mapped


def parse_tar_header(header: Buffer, where: str) -> tuple[str, int]:
    if len(header) != TAR_HEADER_SIZE:
        raise RafsError(f"{where}: truncated tar header")
    raw = bytes(header)
    name = raw[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
    try:
        size = int(raw[124:136].strip(b"\0 ") or b"0", 8)
        stored = int(raw[148:156].strip(b"\0 ") or b"0", 8)
    except ValueError as exc:
        raise RafsError(f"{where}: tar header of {name!r} has non-octal fields") from exc
    actual = sum(raw[:148]) + 8 * 32 + sum(raw[156:])
    if stored != actual:
        raise RafsError(f"{where}: tar header checksum {stored} != {actual}")
    if raw[156:157] != b"0":
        raise RafsError(f"{where}: tar entry {name!r} has typeflag {raw[156:157]!r}, expected '0'")
    if raw[257:265] != b"ustar  \0":
        raise RafsError(f"{where}: tar header of {name!r} is not GNU (magic {raw[257:265]!r})")
    return name, size


def stream_entries(data: Buffer) -> tuple[StreamEntry, ...]:
    """Walk a tar-like stream from its tail: each entry's header follows its data."""
    entries: list[StreamEntry] = []
    pos = len(data)
    while pos > 0:
        if pos < TAR_HEADER_SIZE:
            raise RafsError(f"{pos} stray bytes at the start of the blob")
        name, size = parse_tar_header(data[pos - TAR_HEADER_SIZE : pos], f"offset {pos - 512}")
        start = pos - TAR_HEADER_SIZE - size
        if start < 0:
            raise RafsError(f"entry {name!r} of {size} bytes starts before the blob")
        entries.append(StreamEntry(name, start, size))
        pos = start
    return tuple(reversed(entries))


def parse_blob(data: Buffer) -> NydusBlob:
    """Parse a nydus blob and check its stream, TOC (§2) and blob.meta (§4) on their own."""
    problems = _Problems()
    entries = stream_entries(data)
    names = [e.name for e in entries]
    for name in names:
        problems.check(name in STREAM_NAMES, f"unexpected stream entry {name!r}")
    problems.check(len(set(names)) == len(names), f"stream entries repeat: {names}")
    problems.check(names[-1:] == ["rafs.blob.toc"], f"last stream entry is {names[-1:]}")
    for required in ("image.blob", "blob.meta", "blob.digest"):
        problems.check(required in names, f"stream entry {required!r} is missing")
    problems.check(names[:1] == ["image.blob"], f"first stream entry is {names[:1]}")
    problems.raise_if_any("nydus blob stream")
    by_name = {e.name: e for e in entries}

    toc_entry = by_name["rafs.blob.toc"]
    problems.check(
        toc_entry.size % TOC_ENTRY_SIZE == 0, f"TOC size {toc_entry.size} not a multiple of 128"
    )
    toc_raw = bytes(data[toc_entry.offset : toc_entry.offset + toc_entry.size + TAR_HEADER_SIZE])
    toc = tuple(
        _toc_entry(toc_raw, i * TOC_ENTRY_SIZE, problems)
        for i in range(toc_entry.size // TOC_ENTRY_SIZE)
    )

    meta_entry = by_name["blob.meta"]
    problems.check(meta_entry.size >= BLOB_META_HEADER_SIZE, "blob.meta is shorter than its header")
    problems.raise_if_any("nydus blob TOC")
    header_at = meta_entry.offset + meta_entry.size - BLOB_META_HEADER_SIZE
    header = _meta_header(data, header_at, problems)
    problems.check(
        header.ci_offset == meta_entry.offset,
        f"blob.meta header ci_offset {header.ci_offset} != the entry's offset {meta_entry.offset}",
    )
    problems.check(
        header.ci_compressed_size == meta_entry.size - BLOB_META_HEADER_SIZE,
        f"blob.meta header ci_compressed_size {header.ci_compressed_size} != the entry's "
        f"{meta_entry.size - BLOB_META_HEADER_SIZE} bytes before its header",
    )
    problems.check(
        header.ci_uncompressed_size == CHUNK_INFO_SIZE * header.ci_entries,
        f"blob.meta ci_uncompressed_size {header.ci_uncompressed_size} != 16 x {header.ci_entries}",
    )
    problems.check(header.ci_entries > 0, "blob.meta holds no chunk")
    problems.raise_if_any("nydus blob.meta header")
    raw_infos = decompress(
        header.ci_compressor,
        bytes(data[meta_entry.offset : meta_entry.offset + header.ci_compressed_size]),
        header.ci_uncompressed_size,
    )
    chunks = tuple(_chunk_info(raw_infos, i * CHUNK_INFO_SIZE) for i in range(header.ci_entries))
    data_end = by_name["image.blob"].offset + by_name["image.blob"].size
    _check_chunk_infos(chunks, data_end, problems)

    digest_entry = by_name["blob.digest"]
    problems.check(
        digest_entry.size == 32 * header.ci_entries,
        f"blob.digest holds {digest_entry.size} bytes, expected 32 x {header.ci_entries}",
    )
    raw_digests = bytes(data[digest_entry.offset : digest_entry.offset + digest_entry.size])
    digests = tuple(raw_digests[i : i + 32] for i in range(0, len(raw_digests), 32))

    _check_toc(data, toc, by_name, header, problems)
    boot_entry = by_name.get("image.boot")
    bootstrap = None
    if boot_entry is not None:
        toc_boot = next((t for t in toc if t.name == "image.boot"), None)
        raw = bytes(data[boot_entry.offset : boot_entry.offset + boot_entry.size])
        if toc_boot is not None and toc_boot.compressor != "none":
            bootstrap = decompress(toc_boot.compressor, raw, toc_boot.uncompressed_size)
        else:
            bootstrap = raw
    problems.raise_if_any("nydus blob")
    return NydusBlob(
        size=len(data),
        entries=entries,
        toc=toc,
        toc_digest=hashlib.sha256(toc_raw).digest(),
        toc_size=len(toc_raw),
        meta_header=header,
        chunks=chunks,
        chunk_digests=digests,
        bootstrap=bootstrap,
    )


def _toc_entry(raw: bytes, offset: int, problems: _Problems) -> TocEntry:
    flags, _r, name, digest, c_off, c_size, u_size = struct.unpack_from("<II16s32sQQQ", raw, offset)
    text = name.rstrip(b"\0").decode("ascii", "replace")
    problems.check(text in TOC_NAMES, f"TOC entry {offset // 128} names {text!r}")
    problems.check(
        flags in TOC_FLAGS, f"TOC entry {text!r}: flags {flags:#x}, expected one compressor"
    )
    return TocEntry(text, TOC_FLAGS.get(flags, str(flags)), digest, c_off, c_size, u_size)


def _meta_header(data: Buffer, at: int, problems: _Problems) -> BlobMetaHeader:
    (
        magic,
        features,
        ci_comp,
        entries,
        ci_offset,
        ci_c_size,
        ci_u_size,
        zran_off,
        zran_size,
        zran_count,
    ) = _unpack("<IIIIQQQQQI", data, at)
    (magic2,) = _unpack("<I", data, at + 4092)
    problems.check(magic == BLOB_META_MAGIC, f"blob.meta magic {magic:#x} at byte 0 of its header")
    problems.check(magic2 == BLOB_META_MAGIC, f"blob.meta magic2 {magic2:#x} at byte 4092")
    problems.check(ci_comp in COMPRESSION_ALGOS, f"blob.meta ci_compressor {ci_comp} unknown")
    problems.check(
        zran_off == zran_size == zran_count == 0, "blob.meta zran fields are set (V1 has none)"
    )
    problems.check(features & BLOB_ALIGNED != 0, f"blob.meta features {features:#x} lack ALIGNED")
    return BlobMetaHeader(
        features,
        COMPRESSION_ALGOS.get(ci_comp, str(ci_comp)),
        entries,
        ci_offset,
        ci_c_size,
        ci_u_size,
    )


def _chunk_info(raw: bytes, offset: int) -> ChunkInfo:
    uncomp, comp = struct.unpack_from("<QQ", raw, offset)
    return ChunkInfo(
        compressed_offset=comp & 0xFF_FFFF_FFFF,
        compressed_size=((comp >> 44) | ((comp >> 20) & 0xF0_0000)) + 1,
        uncompressed_offset=uncomp & 0xFFF_FFFF_F000,
        uncompressed_size=((uncomp >> 44) | ((uncomp & 0xF00) << 12)) + 1,
    )


def _check_chunk_infos(chunks: Sequence[ChunkInfo], data_end: int, problems: _Problems) -> None:
    for i, chunk in enumerate(chunks):
        problems.check(
            chunk.compressed_end <= data_end,
            f"chunk info {i}: compressed end {chunk.compressed_end} past the chunk data end "
            f"{data_end} (ci_offset - 512)",
        )
    for i, (a, b) in enumerate(itertools.pairwise(chunks)):
        problems.check(
            b.uncompressed_offset >= round_up(a.uncompressed_end, BLOCK),
            f"chunk infos {i} and {i + 1}: uncompressed ranges unsorted or overlapping",
        )
        problems.check(
            b.compressed_offset >= a.compressed_end,
            f"chunk infos {i} and {i + 1}: compressed ranges unsorted or overlapping",
        )


def _check_toc(
    data: Buffer,
    toc: Sequence[TocEntry],
    by_name: Mapping[str, StreamEntry],
    header: BlobMetaHeader,
    problems: _Problems,
) -> None:
    seen = [t.name for t in toc]
    problems.check(len(set(seen)) == len(seen), f"TOC names repeat: {seen}")
    expected_names = {n for n in by_name if n != "rafs.blob.toc"} | {"blob.meta.header"}
    problems.check(
        set(seen) == expected_names,
        f"TOC lists {sorted(seen)}, the stream holds {sorted(expected_names)}",
    )
    for t in toc:
        if t.name == "blob.meta":
            span = (header.ci_offset, header.ci_compressed_size)
        elif t.name == "blob.meta.header":
            span = (header.ci_offset + header.ci_compressed_size, BLOB_META_HEADER_SIZE)
        elif t.name in by_name:
            span = (by_name[t.name].offset, by_name[t.name].size)
        else:
            continue
        # nydus-image records the image.blob entry at the end of the chunk data, where its
        # tar header starts; nydusd never reads it through the TOC, so either offset passes.
        offsets = (span[0], span[0] + span[1]) if t.name == "image.blob" else (span[0],)
        problems.check(
            t.compressed_offset in offsets and t.compressed_size == span[1],
            f"TOC entry {t.name!r} at {t.compressed_offset}+{t.compressed_size}, "
            f"stream has {span[0]}+{span[1]}",
        )
        covered = span[1] + (TAR_HEADER_SIZE if t.name == "image.blob" else 0)
        content = bytes(data[span[0] : span[0] + covered])
        if t.name == "image.blob":
            problems.check(
                t.compressor == "none", "TOC entry 'image.blob' is not flagged uncompressed"
            )
            problems.check(
                hashlib.sha256(content).digest() == t.digest,
                "TOC entry 'image.blob': digest does not cover the chunk data and its tar header",
            )
            continue
        if t.compressor == "none":
            problems.check(
                t.uncompressed_size == t.compressed_size,
                f"TOC entry {t.name!r}: uncompressed, yet sizes "
                f"{t.compressed_size} != {t.uncompressed_size}",
            )
        try:
            plain = decompress(t.compressor, content, t.uncompressed_size)
        except RafsError as exc:
            problems.check(False, f"TOC entry {t.name!r}: {exc}")
            continue
        problems.check(
            hashlib.sha256(plain).digest() == t.digest,
            f"TOC entry {t.name!r}: sha256 of its content differs from the TOC's",
        )


# --- bootstrap and blobs together --------------------------------------------------------


def chunk_data(blob_data: Buffer, blob: NydusBlob, index: int, compressor: str) -> bytes:
    """The decompressed bytes of chunk `index` of a blob."""
    info = blob.chunks[index]
    raw = bytes(blob_data[info.compressed_offset : info.compressed_end])
    if not info.is_compressed:
        return raw
    return decompress(compressor, raw, info.uncompressed_size)


def validate_image(
    bootstrap_data: bytes,
    blob_data: Mapping[str, Buffer],
    *,
    check_digests: bool = True,
    blob_id: Callable[[Buffer], str] | None = None,
) -> tuple[Bootstrap, dict[str, NydusBlob]]:
    """Check a bootstrap against every blob it names (blob id -> blob bytes or mmap).

    `blob_id`, when given, computes the id a blob must carry (sha256 hex of the whole blob
    file for a merged bootstrap; nydus-image's own fixtures carry their stream hash instead).
    """
    boot = parse_bootstrap(bootstrap_data)
    problems = _Problems()
    blobs: dict[str, NydusBlob] = {}
    for entry in boot.blobs:
        where = f"blob {entry.blob_index} ({entry.blob_id[:12]})"
        data = blob_data.get(entry.blob_id)
        if not problems.check(data is not None, f"{where}: no blob data given"):
            continue
        assert data is not None
        blob = parse_blob(data)
        blobs[entry.blob_id] = blob
        if blob_id is not None:
            problems.check(
                blob_id(data) == entry.blob_id, f"{where}: the blob's own id is {blob_id(data)}"
            )
        _check_blob_against_table(entry, blob, where, problems)
        if check_digests:
            _check_chunk_digests(boot, entry, blob, data, where, problems)
    problems.raise_if_any("image")
    return boot, blobs


def _check_blob_against_table(
    entry: BlobEntry, blob: NydusBlob, where: str, problems: _Problems
) -> None:
    h = blob.meta_header
    problems.check(
        h.ci_entries == entry.chunk_count,
        f"{where}: blob.meta ci_entries {h.ci_entries} != chunk_count {entry.chunk_count}",
    )
    problems.check(
        h.ci_compressor == entry.ci_compressor,
        f"{where}: blob.meta ci_compressor {h.ci_compressor} != {entry.ci_compressor}",
    )
    problems.check(
        h.ci_offset == entry.ci_offset,
        f"{where}: blob.meta ci_offset {h.ci_offset} != blob table {entry.ci_offset}",
    )
    problems.check(
        h.ci_compressed_size == entry.ci_compressed_size,
        f"{where}: blob.meta ci_compressed_size {h.ci_compressed_size} != "
        f"blob table {entry.ci_compressed_size}",
    )
    problems.check(
        h.ci_uncompressed_size == entry.ci_uncompressed_size,
        f"{where}: blob.meta ci_uncompressed_size {h.ci_uncompressed_size} != "
        f"blob table {entry.ci_uncompressed_size}",
    )
    problems.check(
        h.features & ~BLOB_INLINED_FS_META == entry.features & ~BLOB_INLINED_FS_META,
        f"{where}: blob.meta features {h.features:#x} != blob table {entry.features:#x}",
    )
    problems.check(
        entry.compressed_size <= blob.size,
        f"{where}: compressed_size {entry.compressed_size} > the blob's {blob.size} bytes",
    )
    meta_entry = blob.entry("blob.meta")
    if entry.features & BLOB_HAS_TAR_HEADER and meta_entry is not None:
        problems.check(
            entry.ci_offset == meta_entry.offset,
            f"{where}: ci_offset {entry.ci_offset} is not where blob.meta starts",
        )
    raw_toc = next((t for t in blob.toc if t.name == "image.blob"), None)
    if raw_toc is not None:
        problems.check(
            raw_toc.uncompressed_size == entry.uncompressed_size,
            f"{where}: TOC says image.blob holds {raw_toc.uncompressed_size} uncompressed bytes, "
            f"the blob table {entry.uncompressed_size}",
        )
    if entry.blob_toc_size or any(entry.blob_toc_digest):
        problems.check(
            entry.blob_toc_size == blob.toc_size,
            f"{where}: blob_toc_size {entry.blob_toc_size} != {blob.toc_size}",
        )
        problems.check(
            entry.blob_toc_digest == blob.toc_digest,
            f"{where}: blob_toc_digest differs from the TOC's sha256",
        )
    for i, chunk in enumerate(blob.chunks):
        problems.check(
            chunk.uncompressed_end <= round_up(entry.uncompressed_size, BLOCK),
            f"{where}: chunk {i} ends at {chunk.uncompressed_end}, "
            f"past uncompressed_size {entry.uncompressed_size}",
        )
        problems.check(
            chunk.uncompressed_size <= entry.chunk_size,
            f"{where}: chunk {i} holds {chunk.uncompressed_size} bytes, more than chunk_size",
        )
        if entry.compressor == "none":
            problems.check(
                not chunk.is_compressed, f"{where}: chunk {i} is compressed in a 'none' blob"
            )


def _check_chunk_digests(
    boot: Bootstrap,
    entry: BlobEntry,
    blob: NydusBlob,
    data: Buffer,
    where: str,
    problems: _Problems,
) -> None:
    records = {r.index: r for r in boot.chunk_table if r.blob_index == entry.blob_index}
    for i, info in enumerate(blob.chunks):
        record = records.get(i)
        if record is not None:
            problems.check(
                (
                    record.compressed_offset,
                    record.compressed_size,
                    record.uncompressed_offset,
                    record.uncompressed_size,
                )
                == (
                    info.compressed_offset,
                    info.compressed_size,
                    info.uncompressed_offset,
                    info.uncompressed_size,
                ),
                f"{where}: chunk {i}: chunk table record disagrees with blob.meta",
            )
        try:
            plain = chunk_data(data, blob, i, entry.compressor)
        except RafsError as exc:
            if isinstance(exc, UnsupportedCompression):
                raise
            problems.check(False, f"{where}: chunk {i}: {exc}")
            continue
        actual = _digest(entry.digester, plain)
        if record is not None:
            problems.check(
                actual == record.digest,
                f"{where}: chunk {i}: {entry.digester} of its data differs from the chunk table",
            )
        if i < len(blob.chunk_digests):
            problems.check(
                actual == blob.chunk_digests[i],
                f"{where}: chunk {i}: {entry.digester} of its data differs from blob.digest",
            )
    for node in boot.nodes:
        for k, ref in enumerate(node.chunks):
            if ref.blob_index != entry.blob_index or ref.ci_index >= len(blob.chunks):
                continue
            problems.check(
                blob.chunks[ref.ci_index].uncompressed_offset == ref.uncompressed_offset,
                f"{node.path}: chunk {k} points at block {ref.blkaddr}, blob.meta puts chunk "
                f"{ref.ci_index} at {blob.chunks[ref.ci_index].uncompressed_offset}",
            )


def read_file(
    boot: Bootstrap, blobs: Mapping[str, NydusBlob], blob_data: Mapping[str, Buffer], path: str
) -> bytes:
    """A regular file's content as the chunk indexes and blob.meta say, without the kernel."""
    node = boot.tree[path]
    out = bytearray()
    for ref in node.chunks:
        entry = boot.blobs[ref.blob_index]
        out += chunk_data(
            blob_data[entry.blob_id], blobs[entry.blob_id], ref.ci_index, entry.compressor
        )
    return bytes(out[: node.size])
