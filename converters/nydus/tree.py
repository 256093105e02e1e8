"""The filesystem tree a layer describes, as RAFS needs it: inodes joined by named edges.

A directory's `children` maps each name to an `Inode`; two names holding the same `Inode` are
hardlinks. Regular files refer to their data as a run of chunk sequence numbers in the
`LayerChunks` of the layer that wrote them, so a merged tree can mix files of many layers and
still find every chunk. Trees are built once per layer and never changed afterwards: a merge
makes new directory inodes and shares everything else.
"""

from __future__ import annotations

from array import array
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
