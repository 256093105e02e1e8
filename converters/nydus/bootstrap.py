"""Write a RAFS v6 bootstrap (an EROFS image with nydus extensions) for one filesystem tree.

The tree is walked breadth first, each directory's entries sorted by name bytes. That walk
fixes the inode order, the ino numbers (from 1), the order blobs get their indexes in (first
use) and the chunk table. Inodes are packed on 32-byte slots; an inode with its inline xattrs
never straddles a block, nor does a directory's or symlink's inline tail, as the kernel
requires. Directory blocks and symlink targets that do not fit inline go in a data area after
the inodes. Layout of the whole file: `ondisk`'s docstring.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from converters.nydus import ondisk
from converters.nydus.tree import BlobFacts, Inode, chunk_count

_Nid = Callable[[Inode], int]

_U32 = (1 << 32) - 1
_U16 = (1 << 16) - 1


@dataclass(frozen=True)
class Bootstrap:
    """A finished bootstrap and the blobs its blob table lists, by blob index."""

    data: bytes
    blobs: tuple[BlobFacts, ...]
    inodes: int


@dataclass(frozen=True)
class BootstrapFormat:
    """The filesystem-wide settings a bootstrap records."""

    chunk_size: int
    compressor: int
    digester: int
    merged: bool
    """False for a layer's own bootstrap (blob features keep INLINED_FS_META)."""


class _Placed:
    """Where one inode went and what it holds on disk."""

    __slots__ = (
        "blocks",
        "data",
        "entries",
        "extended",
        "ino",
        "inode",
        "layout",
        "nlink",
        "offset",
        "parent",
        "xattrs",
    )

    def __init__(self, inode: Inode, ino: int) -> None:
        self.inode = inode
        self.ino = ino
        self.nlink = 0
        self.parent = inode
        """The directory holding this one (the root holds itself)."""
        self.entries: list[tuple[bytes, Inode]] = []
        self.xattrs = b""
        self.extended = False
        self.layout = ondisk.LAYOUT_FLAT_PLAIN
        self.offset = 0
        self.data = b""
        """Directory entries (laid out in blocks) or symlink target."""
        self.blocks = -1
        """First data-area block, relative to the data area; -1 when none."""

    @property
    def base_size(self) -> int:
        core = ondisk.EXTENDED_INODE_SIZE if self.extended else ondisk.COMPACT_INODE_SIZE
        return core + len(self.xattrs)


def write_bootstrap(root: Inode, fmt: BootstrapFormat, prefetch: Sequence[bytes] = ()) -> Bootstrap:
    """The bootstrap of the tree at `root`; `prefetch` holds absolute paths as bytes.

    Every regular file's `chunks.blob` must be set. Blobs no file uses are left out.
    """
    placed = _walk(root)
    blobs, blob_index = _blob_order(placed)
    prefetch_inodes = _resolve_prefetch(root, prefetch) if blobs else []
    by_inode = {id(p.inode): p for p in placed}
    for p in placed:
        _prepare(p, fmt)

    device_end = ondisk.DEVICE_TABLE_OFFSET + ondisk.DEVICE_SLOT_SIZE * len(blobs)
    blob_table_offset = ondisk.round_up(device_end, ondisk.BLOCK_SIZE)
    blob_table_size = ondisk.BLOB_ENTRY_SIZE * len(blobs)
    prefetch_offset = blob_table_offset + blob_table_size
    prefetch_size = 4 * len(prefetch_inodes)
    # nydus keeps the block at meta_blkaddr empty so that no inode, the root above all, gets
    # nid 0: some readers take ino 0 for a deleted entry.
    meta_addr = ondisk.round_up(prefetch_offset + prefetch_size, ondisk.BLOCK_SIZE)
    data_start = _place(placed, meta_addr + ondisk.BLOCK_SIZE, fmt)
    data_blocks = sum(_full_blocks(p) for p in placed)
    chunk_table_offset = data_start + data_blocks * ondisk.BLOCK_SIZE

    def nid(inode: Inode) -> int:
        return (by_inode[id(inode)].offset - meta_addr) // ondisk.SLOT_SIZE

    chunk_table = _chunk_table(placed, blob_index, fmt.chunk_size)
    end = ondisk.round_up(chunk_table_offset + len(chunk_table), ondisk.BLOCK_SIZE)
    out = bytearray(end)
    for p in placed:
        _write_inode(out, p, nid, blob_index, fmt, data_start)
    out[chunk_table_offset : chunk_table_offset + len(chunk_table)] = chunk_table

    flags = _flags(placed, fmt)
    block_count = 0
    position = end
    for index, blob in enumerate(blobs):
        blocks = blob.uncompressed_size // ondisk.BLOCK_SIZE
        mapped = ondisk.round_up(position, ondisk.DEVICE_SEGMENT_ALIGNMENT) // ondisk.BLOCK_SIZE
        position = (mapped + blocks) * ondisk.BLOCK_SIZE
        block_count += blocks
        slot = ondisk.DEVICE_TABLE_OFFSET + ondisk.DEVICE_SLOT_SIZE * index
        out[slot : slot + ondisk.DEVICE_SLOT_SIZE] = ondisk.device_slot(
            blob.blob_id.encode("ascii"), blocks, mapped
        )
        entry = blob_table_offset + ondisk.BLOB_ENTRY_SIZE * index
        out[entry : entry + ondisk.BLOB_ENTRY_SIZE] = _blob_entry(blob, index, fmt)
    for index, inode in enumerate(prefetch_inodes):
        at = prefetch_offset + 4 * index
        out[at : at + 4] = nid(inode).to_bytes(4, "little")

    root_nid = nid(root)
    out[ondisk.SUPER_OFFSET : ondisk.SUPER_OFFSET + 128] = ondisk.superblock(
        root_nid=root_nid,
        inos=len(placed),
        blocks=block_count,
        meta_blkaddr=meta_addr // ondisk.BLOCK_SIZE,
        extra_devices=len(blobs),
    )
    out[ondisk.EXT_SUPER_OFFSET : ondisk.EXT_SUPER_OFFSET + 256] = ondisk.extended_superblock(
        flags=flags,
        blob_table=(blob_table_offset, blob_table_size),
        chunk_size=fmt.chunk_size,
        chunk_table=(chunk_table_offset, len(chunk_table)),
        prefetch_table=(prefetch_offset if prefetch_size else 0, prefetch_size),
    )
    return Bootstrap(bytes(out), tuple(blobs), len(placed))


def _walk(root: Inode) -> list[_Placed]:
    """Every inode once, breadth first, with each directory's sorted entries and nlink."""
    placed = [_Placed(root, 1)]
    seen = {id(root): placed[0]}
    queue = deque(placed)
    while queue:
        directory = queue.popleft()
        children = directory.inode.children or {}
        subdirs = 0
        for name in sorted(children):
            child = children[name]
            directory.entries.append((name, child))
            p = seen.get(id(child))
            if p is None:
                p = _Placed(child, len(placed) + 1)
                seen[id(child)] = p
                placed.append(p)
                if child.is_dir:
                    p.parent = directory.inode
                    queue.append(p)
            if child.is_dir:
                subdirs += 1
            else:
                p.nlink += 1
        directory.nlink = 2 + subdirs
    return placed


def _blob_order(placed: list[_Placed]) -> tuple[list[BlobFacts], dict[int, int]]:
    blobs: list[BlobFacts] = []
    index: dict[int, int] = {}
    for p in placed:
        chunks = p.inode.chunks
        if p.inode.size and chunks is not None and id(chunks) not in index:
            if chunks.blob is None:
                raise ValueError("a file's blob is not finished")
            if len(blobs) >= ondisk.MAX_BLOBS:
                raise ValueError(f"more than {ondisk.MAX_BLOBS} blobs hold file data")
            index[id(chunks)] = len(blobs)
            blobs.append(chunks.blob)
    return blobs, index


def _resolve_prefetch(root: Inode, paths: Sequence[bytes]) -> list[Inode]:
    found: list[Inode] = []
    for path in paths:
        node: Inode | None = root
        for part in (p for p in path.split(b"/") if p):
            node = node.children.get(part) if node is not None and node.children else None
        if node is not None and all(node is not f for f in found):
            found.append(node)
    return found


def _prepare(p: _Placed, fmt: BootstrapFormat) -> None:
    inode = p.inode
    p.xattrs = _xattr_body(inode.xattrs)
    p.extended = (
        inode.uid > _U16
        or inode.gid > _U16
        or p.nlink > _U16
        or inode.size > _U32
        # Compact inodes carry no mtime: the superblock's build time (0) stands in.
        or inode.mtime != 0
        or inode.mtime_nsec != 0
    )
    if inode.is_dir:
        p.data = _dirent_data_size_marker(p.entries)
    elif inode.file_type == ondisk.S_IFLNK:
        p.data = inode.target


def _dirent_blocks(entries: Sequence[tuple[bytes, object]]) -> list[list[tuple[bytes, object]]]:
    """Entries split into 4 KiB blocks as EROFS reads them: no entry crosses a block."""
    blocks: list[list[tuple[bytes, object]]] = [[]]
    used = 0
    for name, target in entries:
        size = ondisk.DIRENT_SIZE + len(name)
        if used + size > ondisk.BLOCK_SIZE:
            blocks.append([])
            used = 0
        blocks[-1].append((name, target))
        used += size
    return blocks


def _dirent_data_size_marker(entries: list[tuple[bytes, Inode]]) -> bytes:
    """Placeholder bytes as long as the directory's data; real dirents need the nids."""
    blocks = _dirent_blocks(_with_dots(entries))
    last = sum(ondisk.DIRENT_SIZE + len(name) for name, _ in blocks[-1])
    return bytes((len(blocks) - 1) * ondisk.BLOCK_SIZE + last)


def _with_dots(entries: list[tuple[bytes, Inode]]) -> list[tuple[bytes, object]]:
    named: list[tuple[bytes, object]] = [(b".", "."), (b"..", ".."), *entries]
    return sorted(named, key=lambda entry: entry[0])


def _xattr_body(xattrs: tuple[tuple[bytes, bytes], ...]) -> bytes:
    if not xattrs:
        return b""
    parts = [bytes(ondisk.XATTR_IBODY_HEADER_SIZE)]
    for name, value in xattrs:
        index, suffix = xattr_index(name)
        parts.append(ondisk.xattr_entry(index, suffix, value))
    return b"".join(parts)


def xattr_index(name: bytes) -> tuple[int, bytes]:
    """(EROFS name index, name without its prefix); ValueError for other namespaces."""
    for prefix, index in ondisk.XATTR_PREFIXES:
        if name.startswith(prefix) and (prefix.endswith(b".") or name == prefix):
            return index, name[len(prefix) :]
    raise ValueError(f"xattr {name!r} is in a namespace RAFS cannot hold")


def _full_blocks(p: _Placed) -> int:
    if not p.data:
        return 0
    if p.layout == ondisk.LAYOUT_FLAT_INLINE:
        return len(p.data) // ondisk.BLOCK_SIZE
    return -(-len(p.data) // ondisk.BLOCK_SIZE)


def _place(placed: list[_Placed], start: int, fmt: BootstrapFormat) -> int:
    """Give every inode its offset; returns where the data area starts (4 KiB aligned)."""
    position = start
    data_blocks = 0
    for p in placed:
        inode = p.inode
        base = p.base_size
        inline = 0
        if inode.file_type == ondisk.S_IFREG:
            p.layout = ondisk.LAYOUT_CHUNK_BASED
            extra = ondisk.round_up(base, ondisk.CHUNK_ADDR_SIZE) - base
            extra += ondisk.CHUNK_ADDR_SIZE * chunk_count(inode, fmt.chunk_size)
        else:
            extra = 0
            tail = len(p.data) % ondisk.BLOCK_SIZE
            if p.data and tail and base + tail <= ondisk.BLOCK_SIZE:
                p.layout = ondisk.LAYOUT_FLAT_INLINE
                inline = tail
            else:
                p.layout = ondisk.LAYOUT_FLAT_PLAIN
        keep = base + inline
        if keep <= ondisk.BLOCK_SIZE and position % ondisk.BLOCK_SIZE + keep > ondisk.BLOCK_SIZE:
            position = ondisk.round_up(position, ondisk.BLOCK_SIZE)
        p.offset = position
        position = ondisk.round_up(position + keep + extra, ondisk.SLOT_SIZE)
        blocks = _full_blocks(p)
        if blocks:
            p.blocks = data_blocks
            data_blocks += blocks
    return ondisk.round_up(position, ondisk.BLOCK_SIZE)


def _write_inode(
    out: bytearray,
    p: _Placed,
    nid: _Nid,
    blob_index: dict[int, int],
    fmt: BootstrapFormat,
    data_start: int,
) -> None:
    inode = p.inode
    kind = inode.file_type
    size = len(p.data) if kind in (ondisk.S_IFDIR, ondisk.S_IFLNK) else inode.size
    data_addr = data_start // ondisk.BLOCK_SIZE + p.blocks if p.blocks >= 0 else 0
    if kind == ondisk.S_IFREG:
        u = ondisk.chunk_format(fmt.chunk_size)
    elif kind in (ondisk.S_IFCHR, ondisk.S_IFBLK, ondisk.S_IFIFO, ondisk.S_IFSOCK):
        u = inode.rdev
    else:
        u = data_addr
    icount = (len(p.xattrs) - ondisk.XATTR_IBODY_HEADER_SIZE) // 4 + 1 if p.xattrs else 0
    if p.extended:
        core = ondisk.extended_inode(
            layout=p.layout,
            xattr_icount=icount,
            mode=inode.mode,
            size=size,
            u=u,
            ino=p.ino,
            uid=inode.uid,
            gid=inode.gid,
            mtime=inode.mtime & ((1 << 64) - 1),
            mtime_nsec=inode.mtime_nsec,
            nlink=p.nlink,
        )
    else:
        core = ondisk.compact_inode(
            layout=p.layout,
            xattr_icount=icount,
            mode=inode.mode,
            nlink=p.nlink,
            size=size,
            u=u,
            ino=p.ino,
            uid=inode.uid,
            gid=inode.gid,
        )
    record = core + p.xattrs
    at = p.offset
    out[at : at + len(record)] = record
    at += len(record)
    if kind == ondisk.S_IFREG:
        _write_chunk_addrs(out, ondisk.round_up(at, ondisk.CHUNK_ADDR_SIZE), inode, blob_index, fmt)
        return
    data = _dirents(p, nid) if kind == ondisk.S_IFDIR else p.data
    if not data:
        return
    full = _full_blocks(p) * ondisk.BLOCK_SIZE
    if p.layout == ondisk.LAYOUT_FLAT_INLINE:
        out[at : at + len(data) - full] = data[full:]
        head = data[:full]
    else:
        head = data
    start = data_start + p.blocks * ondisk.BLOCK_SIZE
    out[start : start + len(head)] = head


def _write_chunk_addrs(
    out: bytearray, at: int, inode: Inode, blob_index: dict[int, int], fmt: BootstrapFormat
) -> None:
    chunks = inode.chunks
    count = chunk_count(inode, fmt.chunk_size)
    if not count or chunks is None:
        return
    blob = blob_index[id(chunks)]
    addrs = []
    for seq in range(inode.first_seq, inode.first_seq + count):
        index = chunks.seq_to_index[seq]
        addrs.append(
            ondisk.chunk_addr(blob, index, chunks.uncompressed_offsets[index] // ondisk.BLOCK_SIZE)
        )
    data = b"".join(addrs)
    out[at : at + len(data)] = data


def _dirents(p: _Placed, nid: _Nid) -> bytes:
    blocks = _dirent_blocks(_with_dots(p.entries))
    out = bytearray()
    for number, block in enumerate(blocks):
        heads = []
        names = []
        nameoff = ondisk.DIRENT_SIZE * len(block)
        for name, target in block:
            if target == ".":
                entry_nid, file_type = nid(p.inode), ondisk.FT_DIR
            elif target == "..":
                entry_nid, file_type = nid(p.parent), ondisk.FT_DIR
            else:
                assert isinstance(target, Inode)
                entry_nid = nid(target)
                file_type = ondisk.FILE_TYPES.get(target.file_type, 0)
            heads.append(ondisk.dirent(entry_nid, nameoff, file_type))
            names.append(name)
            nameoff += len(name)
        content = b"".join(heads) + b"".join(names)
        if number < len(blocks) - 1:
            content += bytes(ondisk.BLOCK_SIZE - len(content))
        out += content
    return bytes(out)


def _chunk_table(placed: list[_Placed], blob_index: dict[int, int], chunk_size: int) -> bytes:
    entries: dict[tuple[bytes, int], bytes] = {}
    for p in placed:
        inode = p.inode
        chunks = inode.chunks
        if inode.file_type != ondisk.S_IFREG or chunks is None or not inode.size:
            continue
        blob = blob_index[id(chunks)]
        for number in range(chunk_count(inode, chunk_size)):
            index = chunks.seq_to_index[inode.first_seq + number]
            digest = chunks.digest(index)
            key = (digest, blob + 1)
            if key in entries:
                continue
            compressed_size = chunks.compressed_sizes[index]
            uncompressed_size = chunks.uncompressed_sizes[index]
            entries[key] = ondisk.chunk_info(
                digest=digest,
                blob_index=blob,
                compressed=compressed_size != uncompressed_size,
                compressed_size=compressed_size,
                uncompressed_size=uncompressed_size,
                compressed_offset=chunks.compressed_offsets[index],
                uncompressed_offset=chunks.uncompressed_offsets[index],
                file_offset=number * chunk_size,
                index=index,
            )
    return b"".join(entries[key] for key in sorted(entries))


def _flags(placed: list[_Placed], fmt: BootstrapFormat) -> int:
    flags = ondisk.FLAG_INLINED_CHUNK_DIGEST
    flags |= (
        ondisk.FLAG_COMPRESSION_ZSTD
        if fmt.compressor == ondisk.COMPRESS_ZSTD
        else ondisk.FLAG_COMPRESSION_NONE
    )
    flags |= (
        ondisk.FLAG_HASH_BLAKE3 if fmt.digester == ondisk.DIGEST_BLAKE3 else ondisk.FLAG_HASH_SHA256
    )
    if any(p.inode.uid or p.inode.gid for p in placed):
        flags |= ondisk.FLAG_EXPLICIT_UID_GID
    if any(p.inode.xattrs for p in placed):
        flags |= ondisk.FLAG_HAS_XATTR
    return flags


def _blob_entry(blob: BlobFacts, index: int, fmt: BootstrapFormat) -> bytes:
    features = blob.features if not fmt.merged else blob.features & ~ondisk.BLOB_INLINED_FS_META
    return ondisk.blob_entry(
        blob_id=blob.blob_id.encode("ascii"),
        index=index,
        chunk_size=blob.chunk_size,
        chunk_count=blob.chunk_count,
        compressor=blob.compressor,
        digester=blob.digester,
        features=features,
        compressed_size=blob.size,
        uncompressed_size=blob.uncompressed_size,
        toc_size=blob.toc_size,
        ci_compressor=blob.ci_compressor,
        ci_offset=blob.ci_offset,
        ci_compressed_size=blob.ci_compressed_size,
        ci_uncompressed_size=blob.ci_uncompressed_size,
        toc_digest=blob.toc_digest,
    )
