"""Read a layer's own RAFS v6 bootstrap back into the `Inode` tree it was written from.

The bytes may come from a registry, so the reader checks everything it walks: every offset
inside the bootstrap, known inode formats, file types and xattr namespaces, dirents sorted
with unique names, `.` and `..` pointing where they must, each directory reached by exactly
one name (no cycles), chunk references inside the blob's chunk table with the sizes a file's
chunks have. Every allocation is bounded by the bootstrap's size. What the walk does not
need (nlink, ino, layouts, the blob and chunk tables, flags) follows from the tree:
`layer_reader` writes the bootstrap again from the tree read here and requires the same bytes.
"""

from __future__ import annotations

import itertools
from array import array
from collections import deque
from dataclasses import dataclass

from converters.entry_names import display
from converters.errors import LayerRejected
from converters.nydus import ondisk
from converters.nydus.bootstrap import BootstrapFormat
from converters.nydus.tree import Inode, LayerChunks, chunk_count

_COMPRESSORS = {
    ondisk.FLAG_COMPRESSION_NONE: ondisk.COMPRESS_NONE,
    ondisk.FLAG_COMPRESSION_ZSTD: ondisk.COMPRESS_ZSTD,
}
_DIGESTERS = {
    ondisk.FLAG_HASH_BLAKE3: ondisk.DIGEST_BLAKE3,
    ondisk.FLAG_HASH_SHA256: ondisk.DIGEST_SHA256,
}
_COMPRESSOR_BITS = (
    ondisk.FLAG_COMPRESSION_NONE
    | ondisk.FLAG_COMPRESSION_LZ4
    | ondisk.FLAG_COMPRESSION_GZIP
    | ondisk.FLAG_COMPRESSION_ZSTD
)
_DIGESTER_BITS = ondisk.FLAG_HASH_BLAKE3 | ondisk.FLAG_HASH_SHA256
_PREFIXES = {index: prefix for prefix, index in ondisk.XATTR_PREFIXES}
_WHOLE_NAMES = {index for prefix, index in ondisk.XATTR_PREFIXES if not prefix.endswith(b".")}
_NSEC_PER_SEC = 1_000_000_000
_U64 = 1 << 64


def read_format(data: bytes) -> BootstrapFormat:
    """The settings of a layer's bootstrap, from its superblocks."""
    if len(data) < ondisk.DEVICE_TABLE_OFFSET:
        raise LayerRejected(
            f"image.boot: {len(data)} bytes, shorter than the superblocks "
            f"({ondisk.DEVICE_TABLE_OFFSET} bytes)"
        )
    magic = ondisk.SUPERBLOCK_STRUCT.unpack_from(data, ondisk.SUPER_OFFSET)[0]
    if magic != ondisk.EROFS_MAGIC:
        raise LayerRejected(
            f"image.boot: superblock magic {magic:#x}, expected {ondisk.EROFS_MAGIC:#x}"
        )
    flags, _, _, chunk_size, *_ = ondisk.EXT_SUPERBLOCK_STRUCT.unpack_from(
        data, ondisk.EXT_SUPER_OFFSET
    )
    if (
        chunk_size & (chunk_size - 1)
        or not ondisk.MIN_CHUNK_SIZE <= chunk_size <= ondisk.MAX_CHUNK_SIZE
    ):
        raise LayerRejected(
            f"image.boot: chunk_size {chunk_size:#x} is not a power of two from 4 KiB to 16 MiB"
        )
    compressor = _COMPRESSORS.get(flags & _COMPRESSOR_BITS)
    digester = _DIGESTERS.get(flags & _DIGESTER_BITS)
    if compressor is None or digester is None:
        raise LayerRejected(
            f"image.boot: flags {flags:#x} name no single compressor (zstd 0x80 or none 0x1) "
            "and digester (blake3 0x4 or sha256 0x8)"
        )
    return BootstrapFormat(
        chunk_size=chunk_size, compressor=compressor, digester=digester, merged=False
    )


def read_tree(data: bytes, fmt: BootstrapFormat, chunks: LayerChunks) -> Inode:
    """The tree of a layer's bootstrap whose chunk references point into `chunks`.

    Sets `chunks.seq_to_index`; files' `first_seq` follow the order the tree is read in.
    Implicit directories are not marked: the bootstrap cannot tell them apart.
    """
    (_, _, _, _, _, root_nid, _, _, _, _, meta_blkaddr, *_) = ondisk.SUPERBLOCK_STRUCT.unpack_from(
        data, ondisk.SUPER_OFFSET
    )
    return _TreeReader(data, meta_blkaddr * ondisk.BLOCK_SIZE, fmt, chunks).read(root_nid)


@dataclass
class _Directory:
    nid: int
    inode: Inode
    parent: int
    path: bytes
    dirents: bytes


class _TreeReader:
    def __init__(
        self, data: bytes, meta_base: int, fmt: BootstrapFormat, chunks: LayerChunks
    ) -> None:
        self._data = data
        self._meta_base = meta_base
        self._chunk_size = fmt.chunk_size
        self._chunks = chunks
        self._numbers = array("I")
        self._inodes: dict[int, Inode] = {}

    def read(self, root_nid: int) -> Inode:
        root, root_dirents = self._inode(root_nid, "the root")
        if not root.is_dir:
            raise LayerRejected(f"image.boot: the root (nid {root_nid}) is not a directory")
        self._inodes[root_nid] = root
        queue = deque([_Directory(root_nid, root, root_nid, b"", root_dirents)])
        while queue:
            directory = queue.popleft()
            for name, nid, file_type in self._dirents(directory):
                child, dirents = self._child(directory, name, nid)
                if dirents is not None:
                    path = directory.path + b"/" + name
                    queue.append(_Directory(nid, child, directory.nid, path, dirents))
                if ondisk.FILE_TYPES[child.file_type] != file_type:
                    raise LayerRejected(
                        f"image.boot: {_show(directory.path + b'/' + name)!r} has file type "
                        f"{file_type} in its dirent, its inode has mode {child.mode:#o}"
                    )
                assert directory.inode.children is not None
                directory.inode.children[name] = child
        self._chunks.seq_to_index = self._numbers
        return root

    def _child(self, directory: _Directory, name: bytes, nid: int) -> tuple[Inode, bytes | None]:
        """The inode a dirent names and, the first time a directory is reached, its dirents."""
        child = self._inodes.get(nid)
        path = _show(directory.path + b"/" + name)
        if child is None:
            child, dirents = self._inode(nid, repr(path))
            self._inodes[nid] = child
            return child, dirents if child.is_dir else None
        if child.is_dir:
            raise LayerRejected(
                f"image.boot: {path!r} is directory nid {nid}, which another name already holds"
            )
        return child, None

    def _dirents(self, directory: _Directory) -> list[tuple[bytes, int, int]]:
        """(name, nid, file type) of the directory's entries other than `.` and `..`."""
        where = f"image.boot: directory {_show(directory.path)!r}"
        data = directory.dirents
        entries: list[tuple[bytes, int, int]] = []
        for start in range(0, len(data), ondisk.BLOCK_SIZE):
            entries += _dirent_block(data[start : start + ondisk.BLOCK_SIZE], where)
        for (a, _, _), (b, _, _) in itertools.pairwise(entries):
            if a >= b:
                raise LayerRejected(
                    f"{where}: dirents {_show(a)!r} and {_show(b)!r} are unsorted or repeated"
                )
        dots = {name: nid for name, nid, _ in entries if name in (b".", b"..")}
        if dots != {b".": directory.nid, b"..": directory.parent}:
            raise LayerRejected(
                f"{where}: '.' and '..' point to {dots}, expected nids {directory.nid} and "
                f"{directory.parent}"
            )
        return [entry for entry in entries if entry[0] not in (b".", b"..")]

    def _inode(self, nid: int, what: str) -> tuple[Inode, bytes]:
        """The inode at `nid` and, for a directory, its dirent bytes."""
        where = f"image.boot: inode of {what} (nid {nid})"
        offset = self._meta_base + nid * ondisk.SLOT_SIZE
        self._need(offset, ondisk.COMPACT_INODE_SIZE, where)
        i_format = int.from_bytes(self._data[offset : offset + 2], "little")
        if i_format & ~0xF:
            raise LayerRejected(f"{where}: i_format {i_format:#x} has unknown bits")
        layout = i_format >> 1
        if i_format & 1:
            self._need(offset, ondisk.EXTENDED_INODE_SIZE, where)
            (_, icount, mode, _, size, u, _, uid, gid, mtime, nsec, _) = (
                ondisk.EXTENDED_INODE_STRUCT.unpack_from(self._data, offset)
            )
            body = offset + ondisk.EXTENDED_INODE_SIZE
            if mtime >= _U64 // 2:
                mtime -= _U64
            if nsec >= _NSEC_PER_SEC:
                raise LayerRejected(f"{where}: mtime_nsec {nsec} is not below 10^9")
        else:
            (_, icount, mode, _, size, _, u, _, uid, gid) = ondisk.COMPACT_INODE_STRUCT.unpack_from(
                self._data, offset
            )
            body = offset + ondisk.COMPACT_INODE_SIZE
            mtime = nsec = 0
        kind = mode & ondisk.S_IFMT
        if kind not in ondisk.FILE_TYPES:
            raise LayerRejected(f"{where}: mode {mode:#o} is of no file type")
        xattrs, body = self._xattrs(body, icount, where)
        inode = Inode(mode=mode, uid=uid, gid=gid, mtime=mtime, mtime_nsec=nsec, xattrs=xattrs)
        if kind == ondisk.S_IFREG:
            if layout != ondisk.LAYOUT_CHUNK_BASED:
                raise LayerRejected(f"{where}: a regular file with data layout {layout}")
            inode.size = size
            inode.chunks = self._chunks
            inode.first_seq = len(self._numbers)
            self._chunk_refs(ondisk.round_up(body, ondisk.CHUNK_ADDR_SIZE), inode, where)
            return inode, b""
        if kind in (ondisk.S_IFDIR, ondisk.S_IFLNK):
            data = self._inode_data(layout, u, size, body, where)
            if kind == ondisk.S_IFDIR:
                inode.children = {}
                return inode, data
            if not 1 <= size <= ondisk.MAX_SYMLINK_TARGET:
                raise LayerRejected(
                    f"{where}: symlink target of {size} bytes, not 1..{ondisk.MAX_SYMLINK_TARGET}"
                )
            inode.target = data
            inode.size = size
            return inode, b""
        if size:
            raise LayerRejected(f"{where}: size {size} for a file of mode {mode:#o}")
        if kind in (ondisk.S_IFCHR, ondisk.S_IFBLK):
            inode.rdev = u
        return inode, b""

    def _xattrs(
        self, at: int, icount: int, where: str
    ) -> tuple[tuple[tuple[bytes, bytes], ...], int]:
        """The inline xattrs at `at` and where they end."""
        if not icount:
            return (), at
        size = ondisk.XATTR_IBODY_HEADER_SIZE + ondisk.XATTR_ENTRY_SIZE * (icount - 1)
        self._need(at, size, f"{where}: xattrs")
        if self._data[at + 4]:
            raise LayerRejected(f"{where}: shared xattrs (acceld writes inline ones only)")
        end = at + size
        position = at + ondisk.XATTR_IBODY_HEADER_SIZE
        pairs: list[tuple[bytes, bytes]] = []
        while position < end:
            if position + ondisk.XATTR_ENTRY_SIZE > end:
                raise LayerRejected(f"{where}: xattr entry at {position} runs past the xattrs")
            name_len, index, value_len = ondisk.XATTR_ENTRY_STRUCT.unpack_from(self._data, position)
            length = ondisk.round_up(ondisk.XATTR_ENTRY_SIZE + name_len + value_len, 4)
            prefix = _PREFIXES.get(index)
            if prefix is None or position + length > end:
                raise LayerRejected(
                    f"{where}: xattr entry at {position}: name index {index} unknown or "
                    "entry past the xattrs"
                )
            name_at = position + ondisk.XATTR_ENTRY_SIZE
            suffix = self._data[name_at : name_at + name_len]
            if suffix and index in _WHOLE_NAMES:
                raise LayerRejected(f"{where}: xattr {display(prefix + suffix)!r} is unknown")
            value = self._data[name_at + name_len : name_at + name_len + value_len]
            pairs.append((prefix + suffix, value))
            position += length
        for (a, _), (b, _) in itertools.pairwise(pairs):
            if a >= b:
                raise LayerRejected(
                    f"{where}: xattrs {display(a)!r} and {display(b)!r} are unsorted or repeated"
                )
        return tuple(pairs), end

    def _chunk_refs(self, at: int, inode: Inode, where: str) -> None:
        count = chunk_count(inode, self._chunk_size)
        self._need(at, ondisk.CHUNK_ADDR_SIZE * count, f"{where}: chunk indexes")
        sizes = self._chunks.uncompressed_sizes
        last = count - 1
        refs = self._data[at : at + ondisk.CHUNK_ADDR_SIZE * count]
        for number, (lo, hi, _) in enumerate(ondisk.CHUNK_ADDR_STRUCT.iter_unpack(refs)):
            blob, index = ondisk.chunk_addr_index(lo, hi)
            if blob != 0 or index >= self._chunks.count:
                raise LayerRejected(
                    f"{where}: chunk {number} is chunk {index} of blob {blob}; the layer's blob "
                    f"(index 0) has {self._chunks.count} chunks"
                )
            expected = self._chunk_size if number < last else inode.size - last * self._chunk_size
            if sizes[index] != expected:
                raise LayerRejected(
                    f"{where}: chunk {number} is blob chunk {index} of {sizes[index]} bytes, "
                    f"expected {expected}"
                )
            self._numbers.append(index)

    def _inode_data(self, layout: int, u: int, size: int, inline_at: int, where: str) -> bytes:
        """A directory's dirents or a symlink's target: whole blocks at block `u`, then (in
        FLAT_INLINE) the tail right after the inode and its xattrs."""
        if layout == ondisk.LAYOUT_FLAT_INLINE:
            head = size - size % ondisk.BLOCK_SIZE
        elif layout == ondisk.LAYOUT_FLAT_PLAIN:
            head = size
        else:
            raise LayerRejected(f"{where}: data layout {layout} for a directory or symlink")
        start = u * ondisk.BLOCK_SIZE
        self._need(start, head, f"{where}: data blocks")
        tail = size - head
        if inline_at % ondisk.BLOCK_SIZE + tail > ondisk.BLOCK_SIZE:
            raise LayerRejected(f"{where}: inline data of {tail} bytes crosses a block boundary")
        self._need(inline_at, tail, f"{where}: inline data")
        return self._data[start : start + head] + self._data[inline_at : inline_at + tail]

    def _need(self, offset: int, length: int, where: str) -> None:
        if offset + length > len(self._data):
            raise LayerRejected(
                f"{where}: bytes {offset}..{offset + length} lie past the end of the "
                f"{len(self._data)}-byte bootstrap"
            )


def _dirent_block(block: bytes, where: str) -> list[tuple[bytes, int, int]]:
    """The dirents of one block: heads first, then their names, back to back."""
    if len(block) < ondisk.DIRENT_SIZE:
        raise LayerRejected(f"{where}: a dirent block of {len(block)} bytes")
    first = ondisk.DIRENT_STRUCT.unpack_from(block, 0)[1]
    if first % ondisk.DIRENT_SIZE or not ondisk.DIRENT_SIZE <= first <= len(block):
        raise LayerRejected(f"{where}: first name offset {first} in a {len(block)}-byte block")
    heads = [
        ondisk.DIRENT_STRUCT.unpack_from(block, at) for at in range(0, first, ondisk.DIRENT_SIZE)
    ]
    entries = []
    for number, (nid, start, file_type) in enumerate(heads):
        last = number + 1 == len(heads)
        end = len(block) if last else heads[number + 1][1]
        if not start < end <= len(block):
            raise LayerRejected(f"{where}: dirent name offsets {start}..{end} out of order")
        name = block[start:end]
        if last:
            # EROFS pads a block after its last name with NULs; the name stops at the first.
            name = name.split(b"\0", 1)[0]
        if not 0 < len(name) <= ondisk.MAX_NAME_LEN or b"/" in name or b"\0" in name:
            raise LayerRejected(f"{where}: dirent name {_show(name)!r} is not a file name")
        entries.append((name, nid, file_type))
    return entries


def _show(path: bytes) -> str:
    return display(path) or "/"
