"""What an eStargz reader needs of the entries, checked before anything is written out.

The reader that matters is stargz-snapshotter's Go `estargz.Reader`, run by every lazy-pulling
node. It decodes the TOC JSON into Go integers, names entries by their UTF-8 TOC names, and
resolves a hardlink by looking up its target's TOC entry and, recursively, that entry's target
(`getSource`): a cycle overflows its stack and kills the process. So a layer is refused when:

- a number does not fit the Go field it lands in. uid, gid, devmajor and devminor are Go `int`,
  which is 32 bits on arm/v7 and 386 where the snapshotter also runs, and Linux ids are
  unsigned: 0..2**31-1. mode is limited to the 21 bits its octal tar field holds, size to Go's
  int64, and mtime to what RFC 3339 can write (years 0001 to 9999; otherwise Go reads a zero
  time and the file's time is silently lost);
- a name, link target or xattr name is not valid UTF-8: the TOC shows invalid bytes as U+FFFD,
  so `a\\xff` and `a\\xfe` would become one name and a symlink would point elsewhere;
- in the final entry order (duplicates resolved, prioritized files moved) a hardlink's target is
  not a regular file that comes earlier. That also rules out self-links and cycles.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from typing import Protocol

from converters import tar_header as th
from converters.entry_names import display
from converters.errors import LayerRejected

MAX_ID = (1 << 31) - 1
MAX_MODE = 0o7777777
MAX_SIZE = (1 << 63) - 1
# 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z in seconds since the epoch.
MIN_MTIME = -62_135_596_800
MAX_MTIME = 253_402_300_799


class _Entry(Protocol):
    @property
    def key(self) -> bytes: ...

    @property
    def header(self) -> th.TarHeader: ...


def check_header(header: th.TarHeader, where: str) -> None:
    """Refuse an entry whose names or numbers the TOC cannot carry unchanged."""
    device = header.typeflag in (th.CHAR, th.BLOCKDEV)
    # One comparison chain per entry: layers of 400,000 entries pass through here.
    if not (
        0 <= header.uid <= MAX_ID
        and 0 <= header.gid <= MAX_ID
        and 0 <= header.mode <= MAX_MODE
        and 0 <= header.size <= MAX_SIZE
        and MIN_MTIME <= header.mtime <= MAX_MTIME
        and (not device or (0 <= header.devmajor <= MAX_ID and 0 <= header.devminor <= MAX_ID))
    ):
        _refuse_number(header, where, device)
    if not (header.name.isascii() and header.linkname.isascii()):
        name = display(header.name)
        _check_utf8(header.name, f"{where}: entry name {name!r}")
        if header.typeflag in (th.LINK, th.SYMLINK):
            _check_utf8(header.linkname, f"{where}: link target of {name!r}")
    for key, _ in header.pax:
        if key.startswith(th.XATTR_PREFIX):
            _check_utf8(
                key[len(th.XATTR_PREFIX) :], f"{where}: xattr name of {display(header.name)!r}"
            )


def _refuse_number(header: th.TarHeader, where: str, device: bool) -> None:
    numbers = [
        ("uid", header.uid, 0, MAX_ID),
        ("gid", header.gid, 0, MAX_ID),
        ("mode", header.mode, 0, MAX_MODE),
        ("size", header.size, 0, MAX_SIZE),
        ("mtime", header.mtime, MIN_MTIME, MAX_MTIME),
    ]
    if device:
        numbers += [
            ("devmajor", header.devmajor, 0, MAX_ID),
            ("devminor", header.devminor, 0, MAX_ID),
        ]
    for field, value, low, high in numbers:
        if not low <= value <= high:
            raise LayerRejected(
                f"{where}: {field} {_short(value)} of {display(header.name)!r} is outside "
                f"{low}..{high}, what an eStargz reader can represent"
            )


def _check_utf8(value: bytes, what: str) -> None:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise LayerRejected(
            f"{what} is not valid UTF-8 (byte {value[error.start]:#04x} at {error.start}); "
            "the eStargz TOC would replace it and could merge it with another name"
        ) from None


def _short(value: int) -> str:
    text = str(value)
    return text if len(text) <= 24 else f"{text[:10]}…({len(text)} digits)"


def check_final_order(entries: Iterable[_Entry]) -> None:
    """Refuse hardlinks that do not point at a regular file earlier in `entries`."""
    types: dict[bytes, bytes] = {}
    for entry in entries:
        header = entry.header
        if header.typeflag == th.LINK:
            target = posixpath.normpath(b"/" + header.linkname).lstrip(b"/")
            found = types.get(target)
            if found not in th.REGULAR_TYPES:
                raise LayerRejected(
                    f"hardlink {display(header.name)!r} points to {display(header.linkname)!r}, "
                    f"{_what_target_is(target, entry.key, found)}; after duplicates are resolved "
                    "a hardlink's target must be a regular file earlier in the layer"
                )
        types[entry.key] = header.typeflag


_KINDS = {
    th.LINK: "another hardlink",
    th.SYMLINK: "a symlink",
    th.DIR: "a directory",
    th.CHAR: "a character device",
    th.BLOCKDEV: "a block device",
    th.FIFO: "a FIFO",
}


def _what_target_is(target: bytes, key: bytes, found: bytes | None) -> str:
    if target == key:
        return "itself"
    if found is None:
        return "which is not earlier in the final entry order"
    return f"which is {_KINDS[found]}"
