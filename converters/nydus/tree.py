"""The filesystem tree a layer describes, as RAFS needs it: inodes joined by named edges.

A directory's `children` maps each name to an `Inode`; two names holding the same `Inode` are
hardlinks. Regular files refer to their data as a run of chunk sequence numbers in the
`LayerChunks` of the layer that wrote them, so a merged tree can mix files of many layers and
still find every chunk. Trees are built once per layer (the converter numbers the chunk
references in tree order when the layer is complete, `renumber_chunks`) and never changed
afterwards: a merge makes new directory inodes and shares everything else.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from converters.nydus import ondisk


@dataclass(slots=True)
class LayerChunks:
    """The chunks of one layer's blob, in blob order, and how file chunks map onto them.

    `seq_to_index[s]` is the blob chunk holding the file chunk submitted as sequence number s
    (duplicates map to the first chunk with the same digest).
    """

    digests: bytearray = field(default_factory=bytearray)
    compressed_offsets: array[int] = field(default_factory=lambda: array("Q"))
    compressed_sizes: array[int] = field(default_factory=lambda: array("I"))
    uncompressed_offsets: array[int] = field(default_factory=lambda: array("Q"))
    uncompressed_sizes: array[int] = field(default_factory=lambda: array("I"))
    seq_to_index: array[int] = field(default_factory=lambda: array("I"))
    blob: BlobFacts | None = None
    """Set once the layer's blob is complete."""

    @property
    def count(self) -> int:
        return len(self.compressed_offsets)

    def digest(self, index: int) -> bytes:
        return bytes(self.digests[32 * index : 32 * index + 32])

    @property
    def uncompressed_size(self) -> int:
        """The blob's uncompressed size: the end of its last chunk, 4 KiB aligned."""
        if not self.count:
            return 0
        return ondisk.round_up(
            self.uncompressed_offsets[-1] + self.uncompressed_sizes[-1], ondisk.BLOCK_SIZE
        )


@dataclass(frozen=True)
class BlobFacts:
    """What a bootstrap's device slot and blob table say about one finished blob."""

    blob_id: str
    """Hex sha256 of the whole blob file: its name in the registry."""
    size: int
    """Size of the blob file in bytes."""
    chunk_size: int
    chunk_count: int
    compressor: int
    digester: int
    features: int
    uncompressed_size: int
    ci_compressor: int
    ci_offset: int
    ci_compressed_size: int
    ci_uncompressed_size: int
    toc_size: int
    toc_digest: bytes


@dataclass(slots=True, eq=False)
class Inode:
    """One inode. `mode` includes the file type bits (S_IFREG, S_IFDIR, ...)."""

    mode: int
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    mtime_nsec: int = 0
    size: int = 0
    rdev: int = 0
    target: bytes = b""
    """Symlink target."""
    xattrs: tuple[tuple[bytes, bytes], ...] = ()
    """(name, value) pairs sorted by name."""
    chunks: LayerChunks | None = None
    first_seq: int = 0
    """Sequence number of the file's first chunk in `chunks`; its chunks follow in order."""
    children: dict[bytes, Inode] | None = None
    """Directories only: name -> inode."""
    implicit: bool = False
    """A directory the layer has no entry for (a parent of one): its attributes are defaults,
    so a lower layer's directory keeps its own when they merge."""

    @property
    def file_type(self) -> int:
        return self.mode & ondisk.S_IFMT

    @property
    def is_dir(self) -> bool:
        return self.file_type == ondisk.S_IFDIR

    def with_children(self, children: dict[bytes, Inode]) -> Inode:
        """A copy of this directory inode holding `children`."""
        return Inode(
            mode=self.mode,
            uid=self.uid,
            gid=self.gid,
            mtime=self.mtime,
            mtime_nsec=self.mtime_nsec,
            xattrs=self.xattrs,
            children=children,
        )


def implicit_directory() -> Inode:
    """A directory a layer needs but has no entry for: mode 0755, owner 0, mtime 0."""
    return Inode(mode=ondisk.S_IFDIR | 0o755, children={}, implicit=True)


def chunk_count(inode: Inode, chunk_size: int) -> int:
    return -(-inode.size // chunk_size)


def walk(root: Inode) -> list[Inode]:
    """Every inode of the tree once, breadth first, each directory's entries in name order:
    the order a bootstrap numbers its inodes in."""
    order = [root]
    seen = {id(root)}
    queue = deque(order)
    while queue:
        children = queue.popleft().children or {}
        for name in sorted(children):
            child = children[name]
            if id(child) not in seen:
                seen.add(id(child))
                order.append(child)
                if child.is_dir:
                    queue.append(child)
    return order


def renumber_chunks(order: Sequence[Inode], chunks: LayerChunks, chunk_size: int) -> None:
    """Give the file chunks of `chunks` sequence numbers in the order of the files in `order`.

    File chunks no file refers to (those of a file a later tar entry replaced) are dropped.
    Two trees of the same shape get the same numbers whatever order their files were added in,
    which is what lets a layer read back from its blob equal the converted one.
    """
    numbered = array("I")
    for inode in order:
        if inode.chunks is chunks:
            first = len(numbered)
            numbered += chunks.seq_to_index[
                inode.first_seq : inode.first_seq + chunk_count(inode, chunk_size)
            ]
            inode.first_seq = first
    chunks.seq_to_index = numbered


def same_tree(a: Inode, b: Inode) -> bool:
    """Whether two trees hold the same inodes under the same names: same attributes, same
    hardlinks, files at the same sequence numbers of equal chunk tables."""
    paired = {id(a): b}
    taken = {id(b)}
    tables: dict[int, LayerChunks] = {}
    pending = [(a, b)]
    while pending:
        x, y = pending.pop()
        if not _same_attributes(x, y) or not _same_table(x.chunks, y.chunks, tables):
            return False
        if x.children is None or y.children is None:
            continue
        if x.children.keys() != y.children.keys():
            return False
        for name, child in x.children.items():
            other = y.children[name]
            known = paired.get(id(child))
            if known is None:
                if id(other) in taken:
                    return False
                paired[id(child)] = other
                taken.add(id(other))
                pending.append((child, other))
            elif known is not other:
                return False
    return True


def _same_attributes(x: Inode, y: Inode) -> bool:
    return (
        x.mode == y.mode
        and x.uid == y.uid
        and x.gid == y.gid
        and x.mtime == y.mtime
        and x.mtime_nsec == y.mtime_nsec
        and x.size == y.size
        and x.rdev == y.rdev
        and x.target == y.target
        and x.xattrs == y.xattrs
        and x.first_seq == y.first_seq
        and x.implicit == y.implicit
        and (x.children is None) == (y.children is None)
    )


def _same_table(
    x: LayerChunks | None, y: LayerChunks | None, tables: dict[int, LayerChunks]
) -> bool:
    if x is None or y is None:
        return x is y
    known = tables.get(id(x))
    if known is None:
        tables[id(x)] = y
        return x == y
    return known is y
