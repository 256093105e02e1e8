"""The second pass of the eStargz conversion: entries in their final order become gzip members.

A new member starts at the blob start, at every payload chunk and at the TOC; headers of the
entries that follow a payload share its member, as in the Go writer. With a minimum chunk size,
a payload starts a new member only once the open one holds that many uncompressed bytes (or the
payload is a landmark); until then it joins the open member at an `innerOffset`. Members are
compressed on several threads (`MemberWriter`); their offsets and the payload digests computed
on the workers fill in the TOC, which goes last, in its own member, before the footer.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from converters import tar_header as th
from converters.batched_writes import BatchedWriter
from converters.entry_names import display
from converters.entry_order import NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK, TOC_NAME
from converters.gzip_members import MemberWriter, Span, write_member
from converters.hashing_writer import HashingWriter
from converters.toc import (
    ANNOTATION_TOC_DIGEST,
    ANNOTATION_UNCOMPRESSED_SIZE,
    TOC_JSON_END,
    TOC_JSON_START,
    PayloadLocation,
    TocEntry,
    footer,
    format_modtime,
    toc_entry_json,
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
_TOC_WRITE = 1 << 20
_HASH_BATCH = 1 << 20
_SPILL_BLOCK = 1 << 20
# Headers after a payload share its member; a long run of entries without payload (400,000
# empty files) would make that one member of hundreds of MiB, held whole in memory twice.
_MAX_HEADER_RUN = 4 << 20
_EMPTY_DIGEST = "sha256:" + hashlib.sha256(b"").hexdigest()
# Stands in for a file's TOC entry until its payload is written and the entry can be made.
_FIRST_CHUNK = TocEntry(name="", type="reg")
# Stands in for an entry whose JSON has been written out.
_WRITTEN = TocEntry(name="", type="")


@dataclass(frozen=True)
class ConvertedLayer:
    """What a conversion produced: the blob's descriptor facts and its annotations."""

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


@dataclass(frozen=True, slots=True)
class SpilledEntry:
    """An entry of the source layer; a regular file's payload sits in the spill file."""

    key: bytes
    header: th.TarHeader
    spill_offset: int = 0


SpillRoom = Callable[[int], object]
"""Called with the size of a write to the spill file before it is made; raises to stop."""


def no_limit(_: int) -> None:
    return None


_OWN_MEMBER = frozenset({PREFETCH_LANDMARK, NO_PREFETCH_LANDMARK})


@dataclass(frozen=True, slots=True)
class _PayloadRef:
    """Where the payload of a TOC entry (the key it is stored under) starts.

    It is `inner_offset` uncompressed bytes into member `member`, and its bytes are that
    member's span number `span`, hashed on the worker: that hash is the chunk digest, and for
    an unchunked file the file digest too.
    """

    member: int
    span: int
    inner_offset: int
    whole_file: bool


class _BlobState:
    """The uncompressed stream of the second pass, cut into members where the format says."""

    def __init__(self, members: MemberWriter, min_chunk_size: int) -> None:
        self.members = members
        self.diff_id = hashlib.sha256()
        self.uncompressed = 0
        self.toc: list[TocEntry] = []
        self.payloads: dict[int, _PayloadRef] = {}
        self._min_chunk_size = min_chunk_size
        self._pieces: list[bytes] = []
        self._open_size = 0
        self._header_run = 0
        self._spans: list[Span] = []
        self._unhashed: list[bytes] = []
        self._unhashed_size = 0
        self._closed = 0

    def append(self, data: bytes) -> None:
        self._pieces.append(data)
        self._open_size += len(data)

    def append_header(self, data: bytes) -> None:
        """Append an entry's header blocks, first closing a member that holds a long run of
        them (member boundaries between headers change nothing a reader sees)."""
        if self._header_run >= _MAX_HEADER_RUN:
            self.start_member()
        self.append(data)
        self._header_run += len(data)

    def _hash_later(self, data: bytes) -> None:
        # One sha256 call per MiB, not per member: each call releases and retakes the GIL,
        # and with thousands of small members the retaking costs more than the hashing.
        self._unhashed.append(data)
        self._unhashed_size += len(data)
        self.uncompressed += len(data)
        if self._unhashed_size >= _HASH_BATCH:
            self.hash_pending()

    def hash_pending(self) -> None:
        self.diff_id.update(b"".join(self._unhashed))
        self._unhashed = []
        self._unhashed_size = 0

    def hashed(self, pieces: Iterable[bytes]) -> Iterator[bytes]:
        """`pieces`, counted into the uncompressed stream as they pass."""
        self.hash_pending()
        for piece in pieces:
            self.diff_id.update(piece)
            self.uncompressed += len(piece)
            yield piece

    def start_member(self) -> None:
        """Close the open member so the next bytes start a new one."""
        if self._pieces:
            data = b"".join(self._pieces)
            self._hash_later(data)
            self.members.add(data, tuple(self._spans))
            self._closed += 1
        self._pieces = []
        self._open_size = 0
        self._header_run = 0
        self._spans = []

    def place_payload(self, length: int, *, own_member: bool, whole_file: bool) -> _PayloadRef:
        """Where the `length` payload bytes appended next go, starting a member if due.

        Counting uncompressed bytes, unlike the Go writer's compressed ones, keeps member
        boundaries independent of the compressor, so parallel compression stays exact.
        """
        if own_member or self._open_size >= self._min_chunk_size:
            self.start_member()
        self._header_run = 0
        self._spans.append((self._open_size, length))
        return _PayloadRef(self._closed, len(self._spans) - 1, self._open_size, whole_file)


class _SpillReader:
    """Reads payloads back from the spill file, small ones through a 1 MiB read-ahead block.

    Small files follow each other in the spill, so one read serves hundreds of them.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._block = b""
        self._block_start = 0

    def read(self, offset: int, length: int) -> bytes:
        if length >= _SPILL_BLOCK:
            return os.pread(self._fd, length, offset)
        start = offset - self._block_start
        if start < 0 or start + length > len(self._block):
            self._block = os.pread(self._fd, _SPILL_BLOCK, offset)
            self._block_start = offset
            start = 0
        return self._block[start : start + length]


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


def write_blob(
    entries: list[SpilledEntry],
    spill_fd: int,
    dest: BinaryIO,
    *,
    level: int,
    workers: int,
    chunk_size: int,
    min_chunk_size: int = 0,
    spill_room: SpillRoom = no_limit,
) -> ConvertedLayer:
    """Write `entries` (payloads read from `spill_fd`) to `dest` as an eStargz blob.

    Consumes `entries`: the list is empty afterwards. The TOC JSON is spilled to the end of
    `spill_fd`, each write claimed from `spill_room` first.
    """
    out = HashingWriter(dest)
    members = MemberWriter(out, level, workers)
    state = _BlobState(members, min_chunk_size)
    owners = _Owners()
    spill = _SpillReader(spill_fd)
    # Popping from a reversed list drops each entry once written: with many files the entry
    # metadata is the largest thing in memory, and the TOC still has to be built after it.
    entries.reverse()
    toc_spill = _TocSpill(spill_fd, spill_room)
    try:
        while entries:
            _write_entry(entries.pop(), spill, state, owners, chunk_size)
            toc_spill.write_ready(state)
        state.start_member()
        members.flush()
    finally:
        members.close()
    toc = toc_spill.finish(state)
    toc_offset = out.written
    write_member(out, state.hashed(_toc_tar_pieces(toc, spill_fd)), level, workers)
    out.write(footer(toc_offset))
    return ConvertedLayer(
        digest="sha256:" + out.digest.hexdigest(),
        size=out.written,
        diff_id="sha256:" + state.diff_id.hexdigest(),
        toc_digest=toc.digest,
        uncompressed_size=state.uncompressed,
    )


@dataclass(frozen=True)
class _SpilledToc:
    """The TOC JSON, written to the end of the spill file to keep it out of memory."""

    start: int
    size: int
    digest: str


class _TocSpill:
    """Writes the TOC JSON to the end of the spill file while the members are being compressed.

    An entry goes out as soon as the member holding its payload has been written (its offset
    and digest are known), so the JSON is mostly done when the last member is. The newest entry
    is held back until another follows: only the last entry lacks the trailing comma.
    """

    def __init__(self, spill_fd: int, spill_room: SpillRoom) -> None:
        self._fd = spill_fd
        self._room = spill_room
        self._start = os.fstat(spill_fd).st_size
        self._digest = hashlib.sha256()
        self._size = 0
        self._out = BatchedWriter(self._write_at_end)
        self._out.write(TOC_JSON_START)
        self._next = 0

    def write_ready(self, state: _BlobState) -> None:
        """Write the entries whose payload locations are known, keeping the newest back."""
        held_back = len(state.toc) - 1
        written = len(state.members.offsets)
        index = self._next
        while index < held_back:
            ref = state.payloads.get(index)
            if ref is not None and ref.member >= written:
                break
            self._write(state, index, ref, last=False)
            index += 1
        self._next = index

    def _write(self, state: _BlobState, index: int, ref: _PayloadRef | None, *, last: bool) -> None:
        self._out.write(toc_entry_json(state.toc[index], _location(state, ref), last=last))
        # Written entries are dropped: with many files the TOC would be the most memory held.
        state.toc[index] = _WRITTEN
        state.payloads.pop(index, None)

    def _write_at_end(self, data: bytes) -> None:
        self._room(len(data))
        os.pwrite(self._fd, data, self._start + self._size)
        self._digest.update(data)
        self._size += len(data)

    def finish(self, state: _BlobState) -> _SpilledToc:
        """Write the rest; every member must have been written."""
        self.write_ready(state)
        last = len(state.toc) - 1
        for index in range(self._next, last + 1):
            self._write(state, index, state.payloads.get(index), last=index == last)
        self._out.write(TOC_JSON_END)
        self._out.flush()
        return _SpilledToc(self._start, self._size, "sha256:" + self._digest.hexdigest())


def _location(state: _BlobState, ref: _PayloadRef | None) -> PayloadLocation | None:
    if ref is None:
        return None
    digest = state.members.span_digests[ref.member][ref.span]
    return PayloadLocation(
        state.members.offsets[ref.member],
        digest,
        digest if ref.whole_file else "",
        ref.inner_offset,
    )


def _toc_tar_pieces(toc: _SpilledToc, spill_fd: int) -> Iterator[bytes]:
    """The TOC tar entry followed by the end-of-archive blocks."""
    yield th.encode_header(th.TarHeader(name=TOC_NAME, typeflag=th.REG, size=toc.size))
    for offset in range(0, toc.size, _TOC_WRITE):
        yield os.pread(spill_fd, min(_TOC_WRITE, toc.size - offset), toc.start + offset)
    yield th.padding(toc.size) + _EOF_BLOCKS


def _toc_entry(
    entry: SpilledEntry, owners: _Owners, chunk_size: int = 0, digest: str = ""
) -> TocEntry:
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
        xattrs=_xattrs(header) if header.pax else (),
        digest=(digest or _EMPTY_DIGEST) if regular else "",
        chunk_size=chunk_size,
    )


def _xattrs(header: th.TarHeader) -> tuple[tuple[str, bytes], ...]:
    return tuple(sorted((display(key), value) for key, value in header.xattrs().items()))


def _write_entry(
    entry: SpilledEntry, spill: _SpillReader, state: _BlobState, owners: _Owners, chunk_size: int
) -> None:
    header = entry.header
    state.append_header(th.encode_header(header))
    if header.typeflag not in th.REGULAR_TYPES or header.size == 0:
        state.toc.append(_toc_entry(entry, owners))
        return
    chunked = header.size > chunk_size
    first_index = len(state.toc)
    file_digest = hashlib.sha256() if chunked else None
    first_chunk_size = 0
    own_member = entry.key in _OWN_MEMBER
    for chunk_offset in range(0, header.size, chunk_size):
        length = min(chunk_size, header.size - chunk_offset)
        ref = state.place_payload(length, own_member=own_member, whole_file=not chunked)
        chunk = spill.read(entry.spill_offset + chunk_offset, length)
        if file_digest is not None:
            file_digest.update(chunk)
        state.append(chunk)
        # Go sets chunkSize whenever a full chunk remains, so an exact multiple keeps it.
        size = chunk_size if header.size - chunk_offset >= chunk_size else 0
        state.payloads[len(state.toc)] = ref
        if chunk_offset == 0:
            first_chunk_size = size
            state.toc.append(_FIRST_CHUNK)
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
