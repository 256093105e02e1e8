"""The eStargz table of contents (`stargz.index.json`) and the 51-byte footer.

TOC JSON follows stargz-snapshotter's `TOCEntry` (types.go): keys in declaration order, zero
values omitted except `name` and `type`, xattr values base64, modtime UTC RFC 3339 in seconds,
tab-indented like Go's `json.MarshalIndent`, with `<`, `>`, `&` escaped as Go does.

Footer (a gzip member with an empty payload and an extra field carrying the TOC offset):

    1f 8b 08 04 00000000 00 ff    gzip header: FLG=FEXTRA, MTIME=0, XFL=0, OS=255
    1a 00                         XLEN=26
    'S' 'G' 16 00                 subfield SG, LEN=22
    %016x STARGZ                  TOC member offset, 16 lowercase hex digits + "STARGZ"
    01 00 00 ff ff                final stored block of length 0
    00000000 00000000             CRC32=0, ISIZE=0
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from harbor_api.annotations import STARGZ_TOC_DIGEST, STARGZ_UNCOMPRESSED_SIZE

TOC_VERSION = 1
FOOTER_SIZE = 51
# The blob's layer annotations; each key is defined once, in harbor_api.annotations.
ANNOTATION_TOC_DIGEST = STARGZ_TOC_DIGEST
ANNOTATION_UNCOMPRESSED_SIZE = STARGZ_UNCOMPRESSED_SIZE
LANDMARK_CONTENTS = b"\x0f"


@dataclass(frozen=True, slots=True)
class PayloadLocation:
    """Where a reg or chunk entry's payload landed, learnt after compression."""

    offset: int
    chunk_digest: str
    digest: str = ""
    """The whole file's digest, when it is the chunk digest (an unchunked file)."""
    inner_offset: int = 0
    """Uncompressed offset of the payload inside the member at `offset`."""


@dataclass(frozen=True, slots=True)
class TocEntry:
    """One TOC entry; field names are the JSON keys in snake case, in Go's order."""

    name: str
    type: str
    size: int = 0
    modtime: str = ""
    link_name: str = ""
    mode: int = 0
    uid: int = 0
    gid: int = 0
    user_name: str = ""
    group_name: str = ""
    offset: int = 0
    inner_offset: int = 0
    dev_major: int = 0
    dev_minor: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = field(default=())
    digest: str = ""
    chunk_offset: int = 0
    chunk_size: int = 0
    chunk_digest: str = ""

    def fields(self, late: PayloadLocation | None = None) -> list[tuple[str, Any]]:
        """(JSON key, value) pairs in Go's order, zero values left out.

        `late` values, when given, stand in for the entry's own: they are only known once the
        members have been compressed.
        """
        offset, inner_offset, digest, chunk_digest = (
            (late.offset, late.inner_offset, late.digest, late.chunk_digest)
            if late
            else (0, 0, "", "")
        )
        optional: list[tuple[str, Any]] = [
            ("size", self.size),
            ("modtime", self.modtime),
            ("linkName", self.link_name),
            ("mode", self.mode),
            ("uid", self.uid),
            ("gid", self.gid),
            ("userName", self.user_name),
            ("groupName", self.group_name),
            ("offset", offset or self.offset),
            ("innerOffset", inner_offset or self.inner_offset),
            ("devMajor", self.dev_major),
            ("devMinor", self.dev_minor),
            ("xattrs", self._encoded_xattrs() if self.xattrs else None),
            ("digest", digest or self.digest),
            ("chunkOffset", self.chunk_offset),
            ("chunkSize", self.chunk_size),
            ("chunkDigest", chunk_digest or self.chunk_digest),
        ]
        return [("name", self.name), ("type", self.type)] + [
            (key, value) for key, value in optional if value
        ]

    def _encoded_xattrs(self) -> dict[str, str]:
        return {key: base64.b64encode(value).decode("ascii") for key, value in self.xattrs}


@functools.lru_cache(maxsize=4096)
def format_modtime(seconds: int) -> str:
    if seconds == 0:
        return ""
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return ""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


_quote = json.encoder.encode_basestring  # the C encoder; json.dumps(indent=...) is pure Python


def _value(value: str | int | dict[str, str]) -> str:
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, int):
        return str(value)
    members = ",\n".join(f"\t\t\t\t{_quote(k)}: {_quote(v)}" for k, v in value.items())
    return "{\n" + members + "\n\t\t\t}"


TOC_JSON_START = b'{\n\t"version": %d,\n\t"entries": [\n' % TOC_VERSION
TOC_JSON_END = b"\t]\n}"


def toc_json_pieces(
    entries: Sequence[TocEntry], locate: Callable[[int], PayloadLocation | None] | None = None
) -> Iterator[bytes]:
    """The TOC JSON in pieces, laid out as Go's `json.MarshalIndent(toc, "", "\t")` does.

    `locate(index)` gives an entry's payload values known only after compression, if any.
    Pieces keep memory flat: a TOC of many entries is never one string.
    """
    yield TOC_JSON_START
    last = len(entries) - 1
    for index, entry in enumerate(entries):
        yield toc_entry_json(entry, locate(index) if locate else None, last=index == last)
    yield TOC_JSON_END


def toc_entry_json(entry: TocEntry, late: PayloadLocation | None, *, last: bool) -> bytes:
    """One element of the TOC's `entries` array, with the comma that follows all but the last."""
    lines = ",\n".join(f"\t\t\t{_quote(key)}: {_value(value)}" for key, value in entry.fields(late))
    block = "\t\t{\n" + lines + ("\n\t\t}\n" if last else "\n\t\t},\n")
    return _go_escapes(block).encode("utf-8")


def _go_escapes(text: str) -> str:
    for char, escape in _GO_ESCAPES:
        if char in text:
            text = text.replace(char, escape)
    return text


_GO_ESCAPES = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def footer(toc_offset: int) -> bytes:
    extra = b"SG\x16\x00" + b"%016xSTARGZ" % toc_offset
    data = (
        b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff"
        + len(extra).to_bytes(2, "little")
        + extra
        + b"\x01\x00\x00\xff\xff"
        + b"\x00" * 8
    )
    assert len(data) == FOOTER_SIZE
    return data
