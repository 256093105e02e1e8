"""Convert one layer blob (gzip, zstd or plain tar) into an eStargz blob.

Two passes. The first decompresses the source, checks every entry and spills payloads to a
temporary file in `work_dir` (duplicates and prioritized files reorder entries, so nothing can
be written before the whole layer is known). The second writes the entries in eStargz order as
gzip members compressed on several threads, then the TOC member and the footer. Memory stays
bounded by the entry metadata plus a few chunks in flight, whatever the layer size.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from converters import tar_header as th
from converters.entry_names import clean_name, display
from converters.entry_order import (
    NO_PREFETCH_LANDMARK,
    PREFETCH_LANDMARK,
    TOC_NAME,
    deduplicate,
    prioritize,
)
from converters.errors import LayerRejected
from converters.gzip_members import MemberWriter, gzip_member
from converters.layer_source import LayerSource
from converters.limits import LayerLimits
from converters.symlinks import find_symlink_loop
from converters.tar_reader import TarReader
from converters.toc import (
    ANNOTATION_TOC_DIGEST,
    ANNOTATION_UNCOMPRESSED_SIZE,
    LANDMARK_CONTENTS,
    PayloadLocation,
    TocEntry,
    encode_toc,
    footer,
    format_modtime,
)

_EOF_BLOCKS = b"\x00" * (2 * th.BLOCK)
_TOC_TYPES = {
    th.REG: "reg",
    th.AREG: "reg",
    th.CONTIGUOUS: "reg",
    th.LINK: "hardlink",
    th.SYMLINK: "symlink",
    th.DIR: "dir",
    th.CHAR: "char",
    th.BLOCKDEV: "block",
    th.FIFO: "fifo",
}
_EMPTY_DIGEST = "sha256:" + hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class EstargzOptions:
    """How to build the eStargz blob. `workers` changes speed only, never the output bytes."""

    chunk_size: int = 4 << 20
    """Files larger than this are split into chunks, one gzip member each."""
    compression_level: int = 9
    """zlib level of every gzip member."""
    prioritized_files: tuple[str, ...] = ()
    """Files to put first, before `.prefetch.landmark`, in this order."""
    workers: int | None = None
    """Compression threads; None means one per CPU."""
    limits: LayerLimits = field(default_factory=LayerLimits)

    def __post_init__(self) -> None:
        if self.chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {self.chunk_size}")
        if not 0 <= self.compression_level <= 9:
            raise ValueError(f"compression_level must be 0..9, got {self.compression_level}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")

    def thread_count(self) -> int:
        return self.workers if self.workers is not None else os.cpu_count() or 1


@dataclass(frozen=True)
class ConvertedLayer:
    digest: str
    """sha256 of the eStargz blob."""
    size: int
    """Size of the eStargz blob in bytes."""
    diff_id: str
    """sha256 of the blob's uncompressed tar stream."""
    toc_digest: str
    """sha256 of the uncompressed TOC JSON."""
    uncompressed_size: int
    """Size of the uncompressed tar stream, TOC entry and end-of-archive blocks included."""

    def annotations(self) -> dict[str, str]:
        return {
            ANNOTATION_TOC_DIGEST: self.toc_digest,
            ANNOTATION_UNCOMPRESSED_SIZE: str(self.uncompressed_size),
        }


@dataclass(frozen=True)
class _Spilled:
    key: bytes
    header: th.TarHeader
    spill_offset: int = 0


def convert_layer(
    source: BinaryIO, dest: BinaryIO, options: EstargzOptions, work_dir: Path
) -> ConvertedLayer:
    """Write the eStargz form of the layer read from `source` to `dest`.

    Raises `LayerRejected` when the source is not a sound layer. Every check runs in the
    first pass, so a rejected layer leaves `dest` untouched.
    """
    with tempfile.TemporaryFile(dir=work_dir, prefix="estargz-spill-") as spill:
        entries = _spill_layer(source, spill, options)
        spill.flush()
        return _write_blob(entries, spill.fileno(), dest, options)


def _spill_layer(source: BinaryIO, spill: BinaryIO, options: EstargzOptions) -> list[_Spilled]:
    layer = LayerSource(source, options.limits, threads=1 if options.thread_count() > 1 else 0)
    try:
        entries = _read_entries(TarReader(layer, options.limits), spill)
        layer.drain()
    finally:
        layer.close()
    entries = deduplicate(entries)
    _check_symlinks(entries)
    return _with_landmarks(entries, options.prioritized_files, spill)


def _read_entries(reader: TarReader, spill: BinaryIO) -> list[_Spilled]:
    entries: list[_Spilled] = []
    seen: set[bytes] = set()
    spilled = 0
    while (header := reader.next_header()) is not None:
        where = f"tar entry at offset {reader.header_offset}"
        key = clean_name(header.name, where)
        if header.typeflag == th.LINK:
            target = clean_name(header.linkname, f"{where} ({display(header.name)!r})")
            if target not in seen:
                raise LayerRejected(
                    f"{where}: hardlink {display(header.name)!r} points to "
                    f"{display(header.linkname)!r}, which is not earlier in the layer"
                )
        seen.add(key)
        if header.typeflag not in th.REGULAR_TYPES:
            entries.append(_Spilled(key, header))
            continue
        for piece in reader.payload():
            spill.write(piece)
        entries.append(_Spilled(key, header, spilled))
        spilled += header.size
    return entries


def _check_symlinks(entries: list[_Spilled]) -> None:
    links = {e.key: e.header.linkname for e in entries if e.header.typeflag == th.SYMLINK}
    chain = find_symlink_loop(links)
    if chain is not None:
        path = " -> ".join(repr(display(name)) for name in chain)
        raise LayerRejected(f"symlink loop in the layer: {path}")


def _with_landmarks(
    entries: list[_Spilled], prioritized: tuple[str, ...], spill: BinaryIO
) -> list[_Spilled]:
    front, rest = prioritize(entries, [name.encode("utf-8") for name in prioritized])
    landmark_offset = spill.tell()
    spill.write(LANDMARK_CONTENTS)
    name = PREFETCH_LANDMARK if front else NO_PREFETCH_LANDMARK
    landmark = _Spilled(
        name,
        th.TarHeader(name=name, typeflag=th.REG, size=len(LANDMARK_CONTENTS)),
        landmark_offset,
    )
    return [*front, landmark, *rest]


class _HashingWriter:
    """Writes to the destination while hashing and counting what went out."""

    def __init__(self, dest: BinaryIO) -> None:
        self._dest = dest
        self.digest = hashlib.sha256()
        self.written = 0

    def write(self, data: bytes) -> int:
        self._dest.write(data)
        self.digest.update(data)
        self.written += len(data)
        return len(data)


@dataclass(frozen=True)
class _PayloadRef:
    """A TOC entry whose `offset` is the start of member `member`.

    The member's leading bytes are the payload chunk, hashed on the worker: that hash is the
    chunk digest, and for an unchunked file the file digest too.
    """

    toc_index: int
    member: int
    whole_file: bool


class _BlobState:
    """The uncompressed stream of the second pass, cut into members where the format says."""

    def __init__(self, members: MemberWriter) -> None:
        self.members = members
        self.diff_id = hashlib.sha256()
        self.uncompressed = 0
        self.toc: list[TocEntry] = []
        self.payloads: list[_PayloadRef] = []
        self._pieces: list[bytes] = []
        self._prefix = 0
        self._closed = 0

    def append(self, data: bytes) -> None:
        self._pieces.append(data)

    def start_member(self, digest_prefix: int = 0) -> int:
        """Close the open member so the next bytes start a new one; returns the new index.

        The new member's first `digest_prefix` bytes get their sha256 computed.
        """
        if self._pieces:
            data = b"".join(self._pieces)
            self._pieces = []
            self.diff_id.update(data)
            self.uncompressed += len(data)
            self.members.add(data, self._prefix)
            self._closed += 1
        self._prefix = digest_prefix
        return self._closed


class _Owners:
    """userName/groupName appear only when they change for an id (Go's `nameIfChanged`)."""

    def __init__(self) -> None:
        self._users: dict[int, bytes] = {}
        self._groups: dict[int, bytes] = {}

    @staticmethod
    def _changed(names: dict[int, bytes], ident: int, name: bytes) -> str:
        if not name or names.get(ident) == name:
            return ""
        names[ident] = name
        return display(name)

    def user(self, header: th.TarHeader) -> str:
        return self._changed(self._users, header.uid, header.uname)

    def group(self, header: th.TarHeader) -> str:
        return self._changed(self._groups, header.gid, header.gname)


def _write_blob(
    entries: list[_Spilled], spill_fd: int, dest: BinaryIO, options: EstargzOptions
) -> ConvertedLayer:
    out = _HashingWriter(dest)
    members = MemberWriter(out, options.compression_level, options.thread_count())
    state = _BlobState(members)
    owners = _Owners()
    try:
        for entry in entries:
            _write_entry(entry, spill_fd, state, owners, options.chunk_size)
        state.start_member()
        members.flush()
    finally:
        members.close()
    toc_json = encode_toc(state.toc, _payload_locations(state))
    toc_tar = (
        th.encode_header(th.TarHeader(name=TOC_NAME, typeflag=th.REG, size=len(toc_json)))
        + toc_json
        + th.padding(len(toc_json))
        + _EOF_BLOCKS
    )
    toc_offset = out.written
    out.write(gzip_member(toc_tar, options.compression_level))
    out.write(footer(toc_offset))
    state.diff_id.update(toc_tar)
    return ConvertedLayer(
        digest="sha256:" + out.digest.hexdigest(),
        size=out.written,
        diff_id="sha256:" + state.diff_id.hexdigest(),
        toc_digest="sha256:" + hashlib.sha256(toc_json).hexdigest(),
        uncompressed_size=state.uncompressed + len(toc_tar),
    )


def _payload_locations(state: _BlobState) -> dict[int, PayloadLocation]:
    offsets = state.members.offsets
    digests = state.members.prefix_digests
    return {
        ref.toc_index: PayloadLocation(
            offset=offsets[ref.member],
            chunk_digest=digests[ref.member],
            digest=digests[ref.member] if ref.whole_file else "",
        )
        for ref in state.payloads
    }


def _toc_entry(entry: _Spilled, owners: _Owners, chunk_size: int = 0, digest: str = "") -> TocEntry:
    header = entry.header
    regular = header.typeflag in th.REGULAR_TYPES
    device = header.typeflag in (th.CHAR, th.BLOCKDEV)
    return TocEntry(
        name=display(header.name),
        type=_TOC_TYPES[header.typeflag],
        size=header.size,
        modtime=format_modtime(header.mtime),
        link_name=display(header.linkname) if header.typeflag in (th.LINK, th.SYMLINK) else "",
        mode=header.mode,
        uid=header.uid,
        gid=header.gid,
        user_name=owners.user(header),
        group_name=owners.group(header),
        dev_major=header.devmajor if device else 0,
        dev_minor=header.devminor if device else 0,
        xattrs=tuple(sorted((display(key), value) for key, value in header.xattrs().items())),
        digest=(digest or _EMPTY_DIGEST) if regular else "",
        chunk_size=chunk_size,
    )


def _write_entry(
    entry: _Spilled, spill_fd: int, state: _BlobState, owners: _Owners, chunk_size: int
) -> None:
    header = entry.header
    state.append(th.encode_header(header))
    if header.typeflag not in th.REGULAR_TYPES or header.size == 0:
        state.toc.append(_toc_entry(entry, owners))
        return
    chunked = header.size > chunk_size
    first_index = len(state.toc)
    file_digest = hashlib.sha256() if chunked else None
    first_chunk_size = 0
    for chunk_offset in range(0, header.size, chunk_size):
        length = min(chunk_size, header.size - chunk_offset)
        member = state.start_member(length)
        chunk = os.pread(spill_fd, length, entry.spill_offset + chunk_offset)
        if file_digest is not None:
            file_digest.update(chunk)
        state.append(chunk)
        # Go sets chunkSize whenever a full chunk remains, so an exact multiple keeps it.
        size = chunk_size if header.size - chunk_offset >= chunk_size else 0
        state.payloads.append(_PayloadRef(len(state.toc), member, not chunked))
        if chunk_offset == 0:
            first_chunk_size = size
            state.toc.append(TocEntry(name="", type="reg"))
        else:
            state.toc.append(
                TocEntry(
                    name=display(header.name),
                    type="chunk",
                    chunk_offset=chunk_offset,
                    chunk_size=size,
                )
            )
    digest = "sha256:" + file_digest.hexdigest() if file_digest is not None else ""
    state.toc[first_index] = _toc_entry(entry, owners, first_chunk_size, digest)
    state.append(th.padding(header.size))
