"""RAFS v6 and nydus blob on-disk formats: every constant, and one packer per structure.

All integers are little-endian. Sources: dragonflyoss/nydus `rafs/src/metadata/layout/v6.rs`,
`storage/src/meta/{mod.rs,chunk_info_v1.rs,toc.rs}`, `builder/src/core/{v6,blob}.rs`, and the
Linux kernel's `fs/erofs/erofs_fs.h`.

Bootstrap (a 4 KiB-block EROFS image):

    0      1024   superblock (128)   1152 extended superblock (256)   1408 device slots (128 each)
    blob table (256 each, 4 KiB aligned) | prefetch table (u32 nids) | one empty block at
    meta_blkaddr | inodes, each on a 32-byte slot: nid = (offset - meta_blkaddr*4096) / 32 |
    directory/symlink data blocks | chunk table (80 each, 4 KiB aligned) | zero padding to 4 KiB

Superblock (128 bytes at 1024):

    magic u32 0xE0F5E1E2 | checksum u32 0 | feature_compat u32 (RAFS_V6) | blkszbits u8 12 |
    extslots u8 0 | root_nid u16 | inos u64 | build_time u64 | build_time_nsec u32 | blocks u32 |
    meta_blkaddr u32 | xattr_blkaddr u32 0 | uuid [16] | volume_name [16] |
    feature_incompat u32 (CHUNKED_FILE|DEVICE_TABLE) | u16 union 0 | extra_devices u16 |
    devt_slotoff u16 (1408/128 = 11) | reserved [38]

Extended superblock (256 bytes at 1152):

    flags u64 | blob_table_offset u64 | blob_table_size u32 | chunk_size u32 |
    chunk_table_offset u64 | chunk_table_size u64 | prefetch_table_offset u64 |
    prefetch_table_size u32 | padding u32 | reserved [200]

Device slot (128): blob_id [64] ASCII hex | blocks u32 | mapped_blkaddr u32 | reserved [56]

Blob table entry (256):

    blob_id [64] | blob_index u32 | chunk_size u32 | chunk_count u32 | compression_algo u32 |
    digest_algo u32 | features u32 | compressed_size u64 | uncompressed_size u64 |
    blob_toc_size u32 | ci_compressor u32 | ci_offset u64 | ci_compressed_size u64 |
    ci_uncompressed_size u64 | blob_toc_digest [32] | blob_meta_digest [32] | blob_meta_size u64 |
    cipher_iv [8] | cipher_algo u32 | reserved [36]

Compact inode (32): format u16 | xattr_icount u16 | mode u16 | nlink u16 | size u32 |
    reserved u32 | u u32 | ino u32 | uid u16 | gid u16 | reserved [4]
Extended inode (64): format u16 | xattr_icount u16 | mode u16 | reserved u16 | size u64 |
    u u32 | ino u32 | uid u32 | gid u32 | mtime u64 | mtime_nsec u32 | nlink u32 | reserved [16]
    format = layout bit (0 compact, 1 extended) | datalayout << 1. `u` is the raw block address
    (directories, symlinks), the rdev (devices) or the chunk format (chunk-based files).

Inline xattrs: ibody header (12: name_filter u32 0 | shared_count u8 0 | reserved [7]), then
    entries (name_len u8 | name_index u8 | value_size u16 | name | value), each padded to 4;
    xattr_icount = (size - 12) / 4 + 1.

Chunk index (8, after the inode and its xattrs, 8-aligned, one per chunk):
    ci_index low u16 | (blob_index + 1) | ci_index high bits << 8 as u16 | blkaddr u32

Dirent (12): nid u64 | nameoff u16 | file_type u8 | reserved u8; names follow the dirent array
    of each block, not NUL-terminated, the block never split across an entry.

Chunk table entry (80, RafsV5ChunkInfo): digest [32] | blob_index u32 | flags u32 |
    compressed_size u32 | uncompressed_size u32 | compressed_offset u64 |
    uncompressed_offset u64 | file_offset u64 | index u32 | reserved u32

Blob compression context (blob.meta): V1 chunk infos (16 each), then a 4096-byte header:
    magic u32 0xB10BB10B | features u32 | ci_compressor u32 | ci_entries u32 | ci_offset u64 |
    ci_compressed_size u64 | ci_uncompressed_size u64 | zran_offset u64 0 | zran_size u64 0 |
    zran_count u32 0 | reserved | magic2 u32 0xB10BB10B at 4092
V1 chunk info: uncomp u64 = (u_size-1) low 20 bits << 44 | u_offset (bits 12..43) |
    (u_size-1) high 4 bits at bits 8..11;  comp u64 = (c_size-1) low 20 bits << 44 |
    (c_size-1) high 4 bits at bits 40..43 | c_offset (bits 0..39). Compressed iff sizes differ.

Blob TOC entry (128): flags u32 | reserved u32 | name [16] | sha256 of the uncompressed
    content [32] | compressed_offset u64 | compressed_size u64 | uncompressed_size u64 |
    reserved [48]

acceld.implicit (acceld's own blob entry, between blob.digest and image.boot; nydus finds entries
    by name and skips it): u32 positions, ascending, of the directories the layer has no tar
    entry for, counted in the order the layer's bootstrap numbers its inodes (ino - 1). RAFS
    cannot tell those from directories with default attributes, and the merge treats them
    differently (`merge.py`); a reader of the blob needs them to rebuild the layer's tree.

Each blob entry is followed by a 512-byte GNU tar header: name, size "%011o\\0",
    mtime "%011o\\0" = 0, chksum "%07o\\0", typeflag "0", magic "ustar  \\0"; other fields zero.
"""

from __future__ import annotations

import struct

BLOCK_SIZE = 4096
BLOCK_BITS = 12
SLOT_SIZE = 32
SUPER_OFFSET = 1024
EXT_SUPER_OFFSET = 1152
DEVICE_TABLE_OFFSET = 1408
DEVICE_SLOT_SIZE = 128
BLOB_ENTRY_SIZE = 256
CHUNK_INFO_SIZE = 80
CHUNK_ADDR_SIZE = 8
DIRENT_SIZE = 12
XATTR_IBODY_HEADER_SIZE = 12
XATTR_ENTRY_SIZE = 4
COMPACT_INODE_SIZE = 32
EXTENDED_INODE_SIZE = 64
MAX_NAME_LEN = 255
# Linux refuses longer symlink targets (PATH_MAX includes the NUL).
MAX_SYMLINK_TARGET = 4095
MAX_BLOBS = 254
MAX_CHUNKS_PER_BLOB = 0xFF_FFFF
MIN_CHUNK_SIZE = 0x1000
MAX_CHUNK_SIZE = 0x100_0000
# Mapped block addresses of devices are aligned to 512 KiB, as the nydus builder does.
DEVICE_SEGMENT_ALIGNMENT = 0x8_0000

EROFS_MAGIC = 0xE0F5E1E2
FEATURE_COMPAT_RAFS_V6 = 0x4000_0000
FEATURE_INCOMPAT_CHUNKED_FILE = 0x4
FEATURE_INCOMPAT_DEVICE_TABLE = 0x8

# Data layouts (format bits 1..3).
LAYOUT_FLAT_PLAIN = 0
LAYOUT_FLAT_INLINE = 2
LAYOUT_CHUNK_BASED = 4
CHUNK_FORMAT_INDEXES = 0x20

# File types in dirents.
FT_REG = 1
FT_DIR = 2
FT_CHRDEV = 3
FT_BLKDEV = 4
FT_FIFO = 5
FT_SOCK = 6
FT_SYMLINK = 7

S_IFMT = 0o170000
S_IFSOCK = 0o140000
S_IFLNK = 0o120000
S_IFREG = 0o100000
S_IFBLK = 0o060000
S_IFDIR = 0o040000
S_IFCHR = 0o020000
S_IFIFO = 0o010000
FILE_TYPES = {
    S_IFREG: FT_REG,
    S_IFDIR: FT_DIR,
    S_IFCHR: FT_CHRDEV,
    S_IFBLK: FT_BLKDEV,
    S_IFIFO: FT_FIFO,
    S_IFSOCK: FT_SOCK,
    S_IFLNK: FT_SYMLINK,
}

# RafsSuperFlags (extended superblock `flags`).
FLAG_COMPRESSION_NONE = 0x1
FLAG_COMPRESSION_LZ4 = 0x2
FLAG_COMPRESSION_GZIP = 0x40
FLAG_COMPRESSION_ZSTD = 0x80
FLAG_HASH_BLAKE3 = 0x4
FLAG_HASH_SHA256 = 0x8
FLAG_EXPLICIT_UID_GID = 0x10
FLAG_HAS_XATTR = 0x20
FLAG_INLINED_CHUNK_DIGEST = 0x100

# Algorithm numbers in the blob table and blob.meta header.
COMPRESS_NONE = 0
COMPRESS_ZSTD = 3
DIGEST_BLAKE3 = 0
DIGEST_SHA256 = 1

# BlobFeatures.
BLOB_ALIGNED = 0x1
BLOB_INLINED_FS_META = 0x2
BLOB_INLINED_CHUNK_DIGEST = 0x20
BLOB_HAS_TAR_HEADER = 0x1000_0000
BLOB_HAS_TOC = 0x2000_0000
BLOB_CAP_TAR_TOC = 0x4000_0000
BLOB_FEATURES = (
    BLOB_ALIGNED | BLOB_INLINED_CHUNK_DIGEST | BLOB_HAS_TAR_HEADER | BLOB_HAS_TOC | BLOB_CAP_TAR_TOC
)
"""A merged bootstrap's blob features: 0x70000021."""

CHUNK_FLAG_COMPRESSED = 0x1

BLOB_META_MAGIC = 0xB10BB10B
BLOB_META_HEADER_SIZE = 4096
CHUNK_INFO_V1_SIZE = 16

# TOC entry flags.
TOC_COMPRESSION_NONE = 0x1
TOC_COMPRESSION_ZSTD = 0x2
TOC_ENTRY_SIZE = 128
TOC_IMAGE_BLOB = b"image.blob"
TOC_BLOB_META = b"blob.meta"
TOC_BLOB_META_HEADER = b"blob.meta.header"
TOC_BLOB_DIGEST = b"blob.digest"
TOC_BOOTSTRAP = b"image.boot"
TOC_BLOB_TOC = b"rafs.blob.toc"
TOC_IMPLICIT_DIRS = b"acceld.implicit"
TAR_BLOCK = 512

# Xattr name prefixes RAFS v6 can hold inline: (prefix, EROFS name index). ACL names are whole.
XATTR_PREFIXES = (
    (b"user.", 1),
    (b"system.posix_acl_access", 2),
    (b"system.posix_acl_default", 3),
    (b"trusted.", 4),
    (b"security.", 6),
)

SUPERBLOCK_STRUCT = struct.Struct("<IIIBBHQQIIII16s16sIHHH38x")
EXT_SUPERBLOCK_STRUCT = struct.Struct("<QQIIQQQII200x")
DEVICE_SLOT_STRUCT = struct.Struct("<64sII56x")
BLOB_ENTRY_STRUCT = struct.Struct("<64sIIIIIIQQIIQQQ32s32sQ8sI36x")
COMPACT_INODE_STRUCT = struct.Struct("<HHHHIIIIHH4x")
EXTENDED_INODE_STRUCT = struct.Struct("<HHHHQIIIIQII16x")
DIRENT_STRUCT = struct.Struct("<QHBx")
CHUNK_ADDR_STRUCT = struct.Struct("<HHI")
CHUNK_INFO_STRUCT = struct.Struct("<32sIIIIQQQII")
CHUNK_INFO_V1_STRUCT = struct.Struct("<QQ")
XATTR_ENTRY_STRUCT = struct.Struct("<BBH")
META_HEADER_STRUCT = struct.Struct("<IIIIQQQQQI")
TOC_ENTRY_STRUCT = struct.Struct("<II16s32sQQQ48x")


def round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


def superblock(
    *, root_nid: int, inos: int, blocks: int, meta_blkaddr: int, extra_devices: int
) -> bytes:
    return SUPERBLOCK_STRUCT.pack(
        EROFS_MAGIC,
        0,
        FEATURE_COMPAT_RAFS_V6,
        BLOCK_BITS,
        0,
        root_nid,
        inos,
        0,
        0,
        blocks,
        meta_blkaddr,
        0,
        b"",
        b"",
        FEATURE_INCOMPAT_CHUNKED_FILE | FEATURE_INCOMPAT_DEVICE_TABLE,
        0,
        extra_devices,
        DEVICE_TABLE_OFFSET // DEVICE_SLOT_SIZE,
    )


def extended_superblock(
    *,
    flags: int,
    blob_table: tuple[int, int],
    chunk_size: int,
    chunk_table: tuple[int, int],
    prefetch_table: tuple[int, int],
) -> bytes:
    """`blob_table`, `chunk_table` and `prefetch_table` are (offset, size)."""
    return EXT_SUPERBLOCK_STRUCT.pack(
        flags,
        blob_table[0],
        blob_table[1],
        chunk_size,
        chunk_table[0],
        chunk_table[1],
        prefetch_table[0],
        prefetch_table[1],
        0,
    )


def device_slot(blob_id: bytes, blocks: int, mapped_blkaddr: int) -> bytes:
    return DEVICE_SLOT_STRUCT.pack(blob_id, blocks, mapped_blkaddr)


def blob_entry(
    *,
    blob_id: bytes,
    index: int,
    chunk_size: int,
    chunk_count: int,
    compressor: int,
    digester: int,
    features: int,
    compressed_size: int,
    uncompressed_size: int,
    toc_size: int,
    ci_compressor: int,
    ci_offset: int,
    ci_compressed_size: int,
    ci_uncompressed_size: int,
    toc_digest: bytes,
) -> bytes:
    return BLOB_ENTRY_STRUCT.pack(
        blob_id,
        index,
        chunk_size,
        chunk_count,
        compressor,
        digester,
        features,
        compressed_size,
        uncompressed_size,
        toc_size,
        ci_compressor,
        ci_offset,
        ci_compressed_size,
        ci_uncompressed_size,
        toc_digest,
        b"",
        0,
        b"",
        0,
    )


def compact_inode(
    *,
    layout: int,
    xattr_icount: int,
    mode: int,
    nlink: int,
    size: int,
    u: int,
    ino: int,
    uid: int,
    gid: int,
) -> bytes:
    return COMPACT_INODE_STRUCT.pack(
        layout << 1, xattr_icount, mode, nlink, size, 0, u, ino, uid, gid
    )


def extended_inode(
    *,
    layout: int,
    xattr_icount: int,
    mode: int,
    size: int,
    u: int,
    ino: int,
    uid: int,
    gid: int,
    mtime: int,
    mtime_nsec: int,
    nlink: int,
) -> bytes:
    return EXTENDED_INODE_STRUCT.pack(
        1 | layout << 1, xattr_icount, mode, 0, size, u, ino, uid, gid, mtime, mtime_nsec, nlink
    )


def dirent(nid: int, nameoff: int, file_type: int) -> bytes:
    return DIRENT_STRUCT.pack(nid, nameoff, file_type)


def chunk_addr(blob_index: int, ci_index: int, blkaddr: int) -> bytes:
    return CHUNK_ADDR_STRUCT.pack(
        ci_index & 0xFFFF, ((blob_index + 1) & 0xFF) | ((ci_index >> 8) & 0xFF00), blkaddr
    )


def chunk_addr_index(lo: int, hi: int) -> tuple[int, int]:
    """(blob index, chunk-info index) of a chunk index whose first two u16 are `lo`, `hi`."""
    return (hi & 0xFF) - 1, lo | (hi & 0xFF00) << 8


def chunk_format(chunk_size: int) -> int:
    """The `u` field of a chunk-based inode."""
    return CHUNK_FORMAT_INDEXES | (chunk_size.bit_length() - 1 - BLOCK_BITS)


def chunk_info(
    *,
    digest: bytes,
    blob_index: int,
    compressed: bool,
    compressed_size: int,
    uncompressed_size: int,
    compressed_offset: int,
    uncompressed_offset: int,
    file_offset: int,
    index: int,
) -> bytes:
    return CHUNK_INFO_STRUCT.pack(
        digest,
        blob_index,
        CHUNK_FLAG_COMPRESSED if compressed else 0,
        compressed_size,
        uncompressed_size,
        compressed_offset,
        uncompressed_offset,
        file_offset,
        index,
        0,
    )


def xattr_entry(name_index: int, suffix: bytes, value: bytes) -> bytes:
    body = XATTR_ENTRY_STRUCT.pack(len(suffix), name_index, len(value)) + suffix + value
    return body + b"\x00" * (-len(body) % XATTR_ENTRY_SIZE)


def chunk_info_v1(
    compressed_offset: int, compressed_size: int, uncompressed_offset: int, uncompressed_size: int
) -> bytes:
    u = uncompressed_size - 1
    c = compressed_size - 1
    uncomp = (u & 0xF_FFFF) << 44 | uncompressed_offset | (u & 0xF0_0000) >> 12
    comp = (c & 0xF_FFFF) << 44 | (c & 0xF0_0000) << 20 | compressed_offset
    return CHUNK_INFO_V1_STRUCT.pack(uncomp, comp)


def chunk_info_v1_fields(uncomp: int, comp: int) -> tuple[int, int, int, int]:
    """(compressed_offset, compressed_size, uncompressed_offset, uncompressed_size) of a V1
    chunk info's two u64; bits 0..7 of `uncomp` are unused (zero when written)."""
    return (
        comp & 0xFF_FFFF_FFFF,
        ((comp >> 44) | (comp >> 20 & 0xF0_0000)) + 1,
        uncomp & 0xFFF_FFFF_F000,
        ((uncomp >> 44) | (uncomp << 12 & 0xF0_0000)) + 1,
    )


def blob_meta_header(
    *,
    features: int,
    ci_compressor: int,
    ci_entries: int,
    ci_offset: int,
    ci_compressed_size: int,
    ci_uncompressed_size: int,
) -> bytes:
    head = META_HEADER_STRUCT.pack(
        BLOB_META_MAGIC,
        features,
        ci_compressor,
        ci_entries,
        ci_offset,
        ci_compressed_size,
        ci_uncompressed_size,
        0,
        0,
        0,
    )
    tail = struct.pack("<I", BLOB_META_MAGIC)
    return head + b"\x00" * (BLOB_META_HEADER_SIZE - len(head) - len(tail)) + tail


def toc_entry(
    *,
    name: bytes,
    compressed: bool,
    digest: bytes,
    compressed_offset: int,
    compressed_size: int,
    uncompressed_size: int,
) -> bytes:
    flags = TOC_COMPRESSION_ZSTD if compressed else TOC_COMPRESSION_NONE
    return TOC_ENTRY_STRUCT.pack(
        flags, 0, name, digest, compressed_offset, compressed_size, uncompressed_size
    )


def implicit_dirs(positions: list[int]) -> bytes:
    """The `acceld.implicit` entry."""
    return struct.pack(f"<{len(positions)}I", *positions)


def implicit_dir_positions(data: bytes) -> tuple[int, ...]:
    """The positions an `acceld.implicit` entry holds; `len(data)` must be a multiple of 4."""
    return struct.unpack(f"<{len(data) // 4}I", data)


def entry_tar_header(name: bytes, size: int) -> bytes:
    """The GNU tar header nydus writes after each blob entry's data."""
    block = bytearray(TAR_BLOCK)
    block[0 : len(name)] = name
    block[124:136] = b"%011o\x00" % size
    block[136:148] = b"%011o\x00" % 0
    block[156:157] = b"0"
    block[257:265] = b"ustar  \x00"
    block[148:156] = b" " * 8
    block[148:156] = b"%07o\x00" % sum(block)
    return bytes(block)
