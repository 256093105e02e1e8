"""An independent eStargz reader for tests, written from the format notes (formats.md §1).

It does not import `converters`: the converter's output is only trusted when this reader,
built from the format description alone, agrees with it. Every check raises AssertionError
with a message that says what differed and where.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import itertools
import json
import posixpath
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

FOOTER_SIZE = 51
TOC_NAME = "stargz.index.json"
LANDMARKS = (".prefetch.landmark", ".no.prefetch.landmark")
_READ = 1 << 20
_FIELD_KEYS = {"path", "linkpath", "size", "uid", "gid", "uname", "gname", "hdrcharset"}


@dataclass(frozen=True)
class Member:
    """One gzip member: where it starts compressed and uncompressed, and its header MTIME."""

    offset: int
    uncompressed_offset: int
    uncompressed_size: int
    mtime: int


@dataclass(frozen=True)
class EntrySummary:
    """What must survive a conversion, for one tar entry."""

    type: bytes
    mode: int
    uid: int
    gid: int
    uname: str
    gname: str
    mtime: int
    linkname: str
    devmajor: int
    devminor: int
    xattrs: tuple[tuple[str, bytes], ...]
    pax: tuple[tuple[str, str], ...]
    size: int
    content_digest: str


@dataclass(frozen=True)
class EstargzBlob:
    toc: dict[str, Any]
    toc_digest: str
    diff_id: str
    uncompressed_size: int
    members: tuple[Member, ...]
    tree: dict[str, EntrySummary]
    order: tuple[str, ...]


def walk_members(path: Path) -> Iterator[tuple[Member, bytes]]:
    """Each gzip member of the blob with its decompressed bytes (zlib checks every CRC)."""
    with path.open("rb") as blob:
        data = blob.read(_READ)
        consumed = 0
        uncompressed = 0
        while data:
            assert data[:3] == b"\x1f\x8b\x08", f"no gzip member header at offset {consumed}"
            while len(data) < 10:
                more = blob.read(_READ)
                assert more, f"truncated gzip header at offset {consumed}"
                data += more
            mtime = int.from_bytes(data[4:8], "little")
            inflater = zlib.decompressobj(wbits=31)
            out = []
            start = consumed
            while not inflater.eof:
                out.append(inflater.decompress(data))
                consumed += len(data) - len(inflater.unused_data)
                data = inflater.unused_data
                if not inflater.eof:
                    data = blob.read(_READ)
                    assert data, f"gzip member at offset {start} is truncated"
            payload = b"".join(out)
            yield Member(start, uncompressed, len(payload), mtime), payload
            uncompressed += len(payload)
            if not data:
                data = blob.read(_READ)


def footer_toc_offset(path: Path) -> int:
    with path.open("rb") as blob:
        blob.seek(-FOOTER_SIZE, 2)
        tail = blob.read(FOOTER_SIZE)
    expected_head = b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff\x1a\x00SG\x16\x00"
    assert tail[:16] == expected_head, f"footer header is {tail[:16].hex()}"
    assert tail[32:38] == b"STARGZ", f"footer magic is {tail[32:38]!r}"
    assert tail[38:] == b"\x01\x00\x00\xff\xff" + b"\x00" * 8, "footer tail is wrong"
    hex_offset = tail[16:32]
    assert hex_offset == hex_offset.lower(), "footer offset must be lowercase hex"
    return int(hex_offset, 16)


def read_member_prefix(path: Path, offset: int, size: int) -> bytes:
    """The first `size` decompressed bytes of the gzip member starting at `offset`."""
    inflater = zlib.decompressobj(wbits=31)
    out = b""
    with path.open("rb") as blob:
        blob.seek(offset)
        while len(out) < size and not inflater.eof:
            data = blob.read(64 << 10)
            assert data, f"member at {offset} ended before {size} bytes"
            out += inflater.decompress(data, size - len(out))
            while inflater.unconsumed_tail and len(out) < size:
                out += inflater.decompress(inflater.unconsumed_tail, size - len(out))
    assert len(out) >= size, f"member at {offset} holds {len(out)} bytes, wanted {size}"
    return out[:size]


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _clean(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def summarize(info: tarfile.TarInfo, content: BinaryIO | None) -> EntrySummary:
    digest = hashlib.sha256()
    if content is not None:
        while piece := content.read(_READ):
            digest.update(piece)
    xattrs = tuple(
        sorted(
            (key[len("SCHILY.xattr.") :], value.encode("utf-8", "surrogateescape"))
            for key, value in info.pax_headers.items()
            if key.startswith("SCHILY.xattr.")
        )
    )
    pax = tuple(
        sorted(
            (key, value)
            for key, value in info.pax_headers.items()
            if key not in _FIELD_KEYS and not key.startswith("SCHILY.xattr.")
        )
    )
    device = info.type in (tarfile.CHRTYPE, tarfile.BLKTYPE)
    return EntrySummary(
        type=tarfile.REGTYPE if info.type == tarfile.AREGTYPE else info.type,
        mode=info.mode,
        uid=info.uid,
        gid=info.gid,
        uname=info.uname,
        gname=info.gname,
        mtime=int(info.mtime),
        linkname=info.linkname,
        devmajor=info.devmajor if device else 0,
        devminor=info.devminor if device else 0,
        xattrs=xattrs,
        pax=pax,
        size=info.size if info.isreg() else 0,
        content_digest=digest.hexdigest() if info.isreg() else "",
    )


def layer_tree(stream: BinaryIO) -> tuple[dict[str, EntrySummary], list[tuple[str, int, int]]]:
    """Entries of an uncompressed tar stream by cleaned name (a later duplicate wins).

    Also returns (name, header offset, data offset) of every entry in stream order.
    """
    tree: dict[str, EntrySummary] = {}
    positions = []
    with tarfile.open(fileobj=stream, mode="r|", errors="surrogateescape") as archive:
        for info in archive:
            name = _clean(info.name)
            positions.append((name, info.offset, info.offset_data))
            content = archive.extractfile(info) if info.isreg() else None
            tree.pop(name, None)
            tree[name] = summarize(info, content)
    return tree, positions


def _modtime(seconds: int) -> str:
    if seconds == 0:
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_toc_entry(entry: dict[str, Any], summary: EntrySummary) -> None:
    name = entry["name"]
    kinds = {
        tarfile.REGTYPE: "reg",
        tarfile.DIRTYPE: "dir",
        tarfile.SYMTYPE: "symlink",
        tarfile.LNKTYPE: "hardlink",
        tarfile.CHRTYPE: "char",
        tarfile.BLKTYPE: "block",
        tarfile.FIFOTYPE: "fifo",
        tarfile.CONTTYPE: "reg",
    }
    expected = {
        "type": kinds[summary.type],
        "size": summary.size,
        "modtime": _modtime(summary.mtime),
        "linkName": summary.linkname,
        "mode": summary.mode,
        "uid": summary.uid,
        "gid": summary.gid,
        "devMajor": summary.devmajor,
        "devMinor": summary.devminor,
        "xattrs": {key: base64.b64encode(value).decode() for key, value in summary.xattrs},
    }
    for key, value in expected.items():
        got = entry.get(key, type(value)())
        assert got == value, f"TOC {name!r}: {key} is {got!r}, tar says {value!r}"
    if summary.type in (tarfile.REGTYPE, tarfile.CONTTYPE):
        assert entry.get("digest") == "sha256:" + summary.content_digest, (
            f"TOC {name!r}: digest differs from the tar content"
        )


def read_estargz(
    path: Path, *, toc_digest: str, uncompressed_size: int, shared_members: bool = False
) -> EstargzBlob:
    """Read and check an eStargz blob against its annotations and the format's rules.

    Unless `shared_members`, every payload chunk must start its own gzip member (no TOC
    `innerOffset`), the layout every reader understands.
    """
    toc_offset = footer_toc_offset(path)
    members: list[Member] = []
    diff = hashlib.sha256()
    toc_member_payload = b""
    for member, payload in walk_members(path):
        assert member.mtime == 0, f"gzip member at {member.offset} has MTIME {member.mtime}"
        members.append(member)
        diff.update(payload)
        if member.offset == toc_offset:
            toc_member_payload = payload
    size = path.stat().st_size
    assert members[-1].offset == size - FOOTER_SIZE, "the footer is not its own gzip member"
    assert members[-1].uncompressed_size == 0, "the footer member must be empty"
    assert members[-2].offset == toc_offset, "the TOC member must come right before the footer"
    total = members[-1].uncompressed_offset
    assert total == uncompressed_size, f"uncompressed size {total} != {uncompressed_size}"

    toc_json = _toc_from_member(toc_member_payload)
    assert _sha256(toc_json) == toc_digest, "TOC digest differs from the annotation"
    toc = json.loads(toc_json)
    assert toc["version"] == 1, f"TOC version {toc['version']}"

    with gzip.open(path, "rb") as stream:
        tree, positions = layer_tree(stream)  # type: ignore[arg-type]
    order = tuple(name for name, _, _ in positions)
    assert order[-1] == TOC_NAME, f"last tar entry is {order[-1]!r}, not {TOC_NAME}"
    assert len(set(order)) == len(order), "a name appears twice in the converted tar"
    _check_landmarks(order, tree, toc)
    _check_members(path, toc, tree, positions, members, shared_members)
    for entry in toc["entries"]:
        if entry["type"] != "chunk":
            _check_toc_entry(entry, tree[_clean(entry["name"])])
    return EstargzBlob(
        toc=toc,
        toc_digest=toc_digest,
        diff_id="sha256:" + diff.hexdigest(),
        uncompressed_size=total,
        members=tuple(members),
        tree={k: v for k, v in tree.items() if k not in (*LANDMARKS, TOC_NAME)},
        order=order,
    )


def _toc_from_member(payload: bytes) -> bytes:
    header = payload[:512]
    assert header[:100].rstrip(b"\x00") == TOC_NAME.encode(), "TOC member does not start with it"
    size = int(header[124:136].rstrip(b"\x00 ") or b"0", 8)
    padded = 512 + size + (-size % 512)
    assert payload[padded:] == b"\x00" * 1024, "TOC member must end with the 1024-byte tar EOF"
    return payload[512 : 512 + size]


def _check_landmarks(order: tuple[str, ...], tree: dict[str, EntrySummary], toc: Any) -> None:
    landmarks = [name for name in order if name in LANDMARKS]
    assert len(landmarks) == 1, f"expected exactly one landmark, found {landmarks}"
    landmark = landmarks[0]
    if landmark == ".no.prefetch.landmark":
        assert order[0] == landmark, ".no.prefetch.landmark must be the first entry"
    assert tree[landmark].content_digest == hashlib.sha256(b"\x0f").hexdigest()
    toc_names = [_clean(entry["name"]) for entry in toc["entries"] if entry["type"] != "chunk"]
    assert toc_names == list(order[:-1]), "TOC entries are not in tar order"


def _check_members(
    path: Path,
    toc: Any,
    tree: dict[str, EntrySummary],
    positions: list[tuple[str, int, int]],
    members: list[Member],
    shared_members: bool,
) -> None:
    by_offset = {member.offset: member for member in members}
    data_offset = {name: data for name, _, data in positions}
    allowed_starts = {0, members[-1].uncompressed_offset}
    allowed_starts.add(next(header for name, header, _ in positions if name == TOC_NAME))
    file_chunks: dict[str, list[bytes]] = {}
    for entry in toc["entries"]:
        if entry["type"] not in ("reg", "chunk"):
            continue
        name = _clean(entry["name"])
        size = tree[name].size
        if size == 0:
            assert "offset" not in entry, f"empty file {name!r} has an offset"
            continue
        offset = entry.get("offset", 0)  # omitted when 0, as Go's omitempty does
        member = by_offset.get(offset)
        assert member is not None, f"{name!r} chunk offset {offset} starts no member"
        chunk_offset = entry.get("chunkOffset", 0)
        start = data_offset[name] + chunk_offset
        inner = entry.get("innerOffset", 0)
        assert shared_members or not inner, f"{name!r} has innerOffset {inner}"
        assert not (inner and name in LANDMARKS), f"landmark {name!r} shares a gzip member"
        assert member.uncompressed_offset + inner == start, (
            f"{name!r} chunk at {chunk_offset}: member starts at {member.uncompressed_offset}, "
            f"innerOffset {inner}, payload at {start}"
        )
        if not inner:
            allowed_starts.add(start)
        length = entry.get("chunkSize") or size - chunk_offset
        chunk = read_member_prefix(path, offset, inner + length)[inner:]
        assert _sha256(chunk) == entry["chunkDigest"], f"{name!r} chunk {chunk_offset} digest"
        file_chunks.setdefault(name, []).append(chunk)
    for name, chunks in file_chunks.items():
        assert hashlib.sha256(b"".join(chunks)).hexdigest() == tree[name].content_digest, (
            f"{name!r}: chunks do not add up to the file"
        )
    for name, summary in tree.items():
        if summary.size and name != TOC_NAME:
            assert name in file_chunks, f"non-empty file {name!r} has no TOC payload entry"
    # A long run of headers without payload may be cut at an entry's header once the member
    # holds 4 MiB: it keeps the writer's memory bounded and moves no payload.
    headers = {header for _, header, _ in positions}
    allowed_starts.update(
        member.uncompressed_offset
        for before, member in itertools.pairwise(members)
        if member.uncompressed_offset in headers and before.uncompressed_size >= 4 << 20
    )
    extra = {m.uncompressed_offset for m in members} - allowed_starts
    assert not extra, f"gzip members start at unexpected uncompressed offsets {sorted(extra)}"
