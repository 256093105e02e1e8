"""The tar header codec: ustar blocks, base-256 numbers, PAX records, GNU long names.

Byte layout of one 512-byte header block (POSIX ustar; GNU uses the same fields up to
`devminor`, with magic "ustar  \\0" and no `prefix`):

    name 0:100  mode 100:108  uid 108:116  gid 116:124  size 124:136  mtime 136:148
    chksum 148:156  typeflag 156  linkname 157:257  magic 257:263  version 263:265
    uname 265:297  gname 297:329  devmajor 329:337  devminor 337:345  prefix 345:500

Names, link targets and PAX values stay bytes end to end, so nothing is lost to decoding
(binary `security.capability` xattr values in particular).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

BLOCK = 512
USTAR_MAGIC = b"ustar\x0000"
GNU_MAGIC = b"ustar  \x00"

REG = b"0"
AREG = b"\x00"
CONTIGUOUS = b"7"
LINK = b"1"
SYMLINK = b"2"
CHAR = b"3"
BLOCKDEV = b"4"
DIR = b"5"
FIFO = b"6"
PAX = b"x"
PAX_GLOBAL = b"g"
GNU_LONGNAME = b"L"
GNU_LONGLINK = b"K"

REGULAR_TYPES = (REG, AREG, CONTIGUOUS)
HEADER_ONLY_TYPES = (LINK, SYMLINK, CHAR, BLOCKDEV, DIR, FIFO)

# PAX keys the header fields below stand for; they are re-derived when a header is encoded.
FIELD_KEYS = frozenset({b"path", b"linkpath", b"size", b"uid", b"gid", b"uname", b"gname"})
XATTR_PREFIX = b"SCHILY.xattr."


class TarFormatError(ValueError):
    """A header block that is not valid tar; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class TarHeader:
    """One tar entry's metadata as it will be written back, PAX records included."""

    name: bytes
    typeflag: bytes
    mode: int = 0
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime: int = 0
    linkname: bytes = b""
    uname: bytes = b""
    gname: bytes = b""
    devmajor: int = 0
    devminor: int = 0
    pax: tuple[tuple[bytes, bytes], ...] = ()
    """PAX records other than those in FIELD_KEYS, in input order."""

    def xattrs(self) -> dict[bytes, bytes]:
        return {
            key[len(XATTR_PREFIX) :]: value
            for key, value in self.pax
            if key.startswith(XATTR_PREFIX)
        }


@dataclass(frozen=True)
class RawHeader:
    """The fields of one header block before PAX or GNU records are applied."""

    name: bytes
    typeflag: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    linkname: bytes
    uname: bytes
    gname: bytes
    devmajor: int
    devminor: int


_FIELDS = struct.Struct("100s8s8s8s12s12s8s1s100s8s32s32s8s8s155s12x")


def _cstring(field: bytes) -> bytes:
    return field.split(b"\x00", 1)[0]


def parse_number(field: bytes, what: str) -> int:
    if field and field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        if field[0] == 0xFF:
            value -= 1 << (8 * (len(field) - 1))
        return value
    # The usual field: digits, or nothing, then NULs or spaces. Anything odd takes the slow path.
    digits = field.rstrip(b"\x00 ")
    if not digits:
        return 0
    try:
        return int(digits, 8)
    except ValueError:
        pass
    text = field.split(b"\x00", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarFormatError(f"invalid octal number in {what} field: {text!r}") from None


def _byte_sum(block: bytes) -> int:
    """Sum of the bytes of a 512-byte block, in C.

    Adler-32's low half is 1 + the byte sum modulo 65521; a 256-byte half sums to at most
    65280, so per half it is the exact sum.
    """
    view = memoryview(block)
    return (zlib.adler32(view[:256]) & 0xFFFF) + (zlib.adler32(view[256:]) & 0xFFFF) - 2


def is_zero_block(block: bytes) -> bool:
    return block.count(0) == BLOCK


def _signed_checksum(block: bytes) -> int:
    """The checksum some old tars computed with signed chars."""
    fields = block[:148] + b" " * 8 + block[156:]
    return sum(byte - 256 if byte & 0x80 else byte for byte in fields)


def parse_block(block: bytes) -> RawHeader:
    """Decode one header block, checking its checksum."""
    stored = parse_number(block[148:156], "chksum")
    unsigned = _byte_sum(block) - sum(block[148:156]) + 8 * 32
    if stored != unsigned and stored != _signed_checksum(block):
        raise TarFormatError(f"header checksum {stored} does not match computed {unsigned}")
    (
        name,
        mode,
        uid,
        gid,
        size,
        mtime,
        _,
        typeflag,
        linkname,
        magic,
        uname,
        gname,
        devmajor,
        devminor,
        prefix,
    ) = _FIELDS.unpack(block)
    name = _cstring(name)
    if magic == USTAR_MAGIC:
        prefix = _cstring(prefix)
        if prefix:
            name = prefix + b"/" + name
    if typeflag == AREG and name.endswith(b"/"):
        typeflag = DIR
    return RawHeader(
        name=name,
        typeflag=typeflag,
        mode=parse_number(mode, "mode"),
        uid=parse_number(uid, "uid"),
        gid=parse_number(gid, "gid"),
        size=parse_number(size, "size"),
        mtime=parse_number(mtime, "mtime"),
        linkname=_cstring(linkname),
        uname=_cstring(uname),
        gname=_cstring(gname),
        devmajor=parse_number(devmajor, "devmajor"),
        devminor=parse_number(devminor, "devminor"),
    )


def parse_pax_records(data: bytes) -> list[tuple[bytes, bytes]]:
    """Split a PAX extended header payload into (key, value) records, values as raw bytes."""
    records: list[tuple[bytes, bytes]] = []
    position = 0
    while position < len(data):
        if data[position] == 0:
            break
        space = data.find(b" ", position)
        if space < 0:
            raise TarFormatError(f"PAX record at byte {position} has no length")
        try:
            length = int(data[position:space])
        except ValueError:
            raise TarFormatError(f"PAX record at byte {position} has a bad length") from None
        end = position + length
        if length <= space - position + 1 or end > len(data) or data[end - 1] != 0x0A:
            raise TarFormatError(f"PAX record at byte {position} has a bad length {length}")
        key, equals, value = data[space + 1 : end - 1].partition(b"=")
        if not equals or not key:
            raise TarFormatError(f"PAX record at byte {position} has no key=value")
        records.append((key, value))
        position = end
    return records


def pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\x00" % (width - 1, value)


def _fits_octal(value: int, width: int) -> bool:
    return 0 <= value < 1 << (3 * (width - 1))


def _number(value: int, width: int) -> bytes:
    if _fits_octal(value, width):
        return _octal(value, width)
    return b"\x80" + (value % (1 << (8 * (width - 1)))).to_bytes(width - 1, "big")


def _split_ustar_name(name: bytes) -> tuple[bytes, bytes] | None:
    """(prefix, name) when `name` fits ustar's two fields, else None."""
    if len(name) <= 100:
        return b"", name
    cut = name.rfind(b"/", 0, 156)
    while cut > 0:
        if len(name) - cut - 1 <= 100 and cut <= 155:
            return name[:cut], name[cut + 1 :]
        cut = name.rfind(b"/", 0, cut)
    return None


def _block(header: TarHeader, name: bytes, prefix: bytes, size: int, linkname: bytes) -> bytes:
    """One ustar block; `name`, `prefix` and `linkname` already fit their fields.

    Fields longer than their width (uname, gname) are cut by the packing.
    """
    fields = _FIELDS.pack(
        name,
        _octal(header.mode & 0o7777777, 8),
        _number(header.uid, 8),
        _number(header.gid, 8),
        _number(size, 12),
        _number(max(header.mtime, 0), 12),
        b" " * 8,
        header.typeflag,
        linkname,
        USTAR_MAGIC,
        header.uname,
        header.gname,
        _number(header.devmajor, 8),
        _number(header.devminor, 8),
        prefix,
    )
    return fields[:148] + b"%06o\x00 " % _byte_sum(fields) + fields[156:]


def padding(size: int) -> bytes:
    return b"\x00" * (-size % BLOCK)


def encode_header(header: TarHeader) -> bytes:
    """The header blocks for `header`: a PAX extended header first when ustar cannot hold it."""
    records: list[tuple[bytes, bytes]] = []
    split = _split_ustar_name(header.name) if header.name.isascii() else None
    if split is None:
        records.append((b"path", header.name))
        split = (b"", header.name[:100])
    linkname = header.linkname
    if len(linkname) > 100 or not linkname.isascii():
        records.append((b"linkpath", linkname))
        linkname = linkname[:100]
    if not _fits_octal(header.size, 12):
        records.append((b"size", b"%d" % header.size))
    for key, value in ((b"uid", header.uid), (b"gid", header.gid)):
        if not _fits_octal(value, 8):
            records.append((key, b"%d" % value))
    for key, text in ((b"uname", header.uname), (b"gname", header.gname)):
        if len(text) > 32 or not text.isascii():
            records.append((key, text))
    if not _fits_octal(header.mtime, 12) and all(key != b"mtime" for key, _ in header.pax):
        records.append((b"mtime", b"%d" % header.mtime))
    records.extend(header.pax)
    prefix, name = split
    main = _block(header, name, prefix, header.size, linkname)
    if not records:
        return main
    payload = b"".join(pax_record(key, value) for key, value in records)
    extended = _block(_PAX_HEADER, b"././@PaxHeader", b"", len(payload), b"")
    return extended + payload + padding(len(payload)) + main


_PAX_HEADER = TarHeader(name=b"", typeflag=PAX)
