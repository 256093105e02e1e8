"""Hand-built tar layers for the converter tests, written with the standard `tarfile`."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field

import zstandard
from isal import igzip

CAPABILITY = bytes.fromhex("0100000200200000000000000000000000000000")


@dataclass(frozen=True)
class Item:
    """One entry: a TarInfo template plus its payload (regular files only)."""

    info: tarfile.TarInfo
    data: bytes = b""
    binary_pax: dict[str, bytes] = field(default_factory=dict)


def item(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    data: bytes = b"",
    *,
    mode: int = 0o644,
    link: str = "",
    uid: int = 0,
    gid: int = 0,
    uname: str = "",
    gname: str = "",
    mtime: int = 1_700_000_000,
    dev: tuple[int, int] = (0, 0),
    pax: dict[str, str] | None = None,
    binary_pax: dict[str, bytes] | None = None,
) -> Item:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = link
    info.uid, info.gid, info.uname, info.gname = uid, gid, uname, gname
    info.mtime = mtime
    info.devmajor, info.devminor = dev
    info.pax_headers = dict(pax or {})
    return Item(info, data, dict(binary_pax or {}))


def build_tar(items: Iterable[Item], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt, encoding="utf-8") as archive:
        for entry in items:
            info = entry.info
            headers = dict(info.pax_headers)
            # tarfile keeps PAX values as str; raw bytes survive as surrogate escapes.
            headers.update(
                (key, value.decode("utf-8", "surrogateescape"))
                for key, value in entry.binary_pax.items()
            )
            info.pax_headers = headers
            if info.isreg():
                info.size = len(entry.data)
                archive.addfile(info, io.BytesIO(entry.data))
            else:
                archive.addfile(info)
    return out.getvalue()


def compress(tar: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return igzip.compress(tar, compresslevel=1, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(tar)
    return tar


def every_kind() -> list[Item]:
    """One layer with every entry kind and attribute the converter must keep."""
    return [
        item("./", tarfile.DIRTYPE, mode=0o755),
        item("bin", tarfile.DIRTYPE, mode=0o755),
        item(
            "bin/ping",
            data=b"\x7fELF" + bytes(range(256)) * 40,
            mode=0o4755,
            binary_pax={"SCHILY.xattr.security.capability": CAPABILITY},
        ),
        item("bin/sg", data=b"setgid", mode=0o2711, uid=0, gid=42, gname="shadow"),
        item("tmp", tarfile.DIRTYPE, mode=0o1777),
        item("home", tarfile.DIRTYPE, mode=0o755),
        item(
            "home/app",
            tarfile.DIRTYPE,
            mode=0o750,
            uid=1000,
            gid=1000,
            uname="app",
            gname="app",
            pax={"SCHILY.xattr.user.comment": "héllo"},
        ),
        item("home/app/empty", uid=1000, gid=1000, uname="app", gname="app"),
        item("home/app/big-ids", data=b"x", uid=3_000_000, gid=4_000_000, uname="u" * 40),
        item("bin/link", tarfile.SYMTYPE, link="ping", mode=0o777),
        item("bin/abs-link", tarfile.SYMTYPE, link="/etc/../bin/ping", mode=0o777),
        item("bin/hard", tarfile.LNKTYPE, link="bin/ping", mode=0o4755),
        item("dev", tarfile.DIRTYPE, mode=0o755),
        item("dev/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3)),
        item("dev/sda", tarfile.BLKTYPE, mode=0o660, dev=(8, 0), gid=6),
        item("dev/fifo", tarfile.FIFOTYPE, mode=0o600),
        item("deep/" + "d" * 90 + "/" + "n" * 120 + ".txt", data=b"long name"),
        item("bin/long-target", tarfile.SYMTYPE, link="../" + "t" * 150),
        item("café/ünïcode ✓.txt", data="données".encode()),
        item("var", tarfile.DIRTYPE, mode=0o755),
        item("var/.wh.removed"),
        item("var/cache", tarfile.DIRTYPE, mode=0o755),
        item("var/cache/.wh..wh..opq"),
        item("old-time", data=b"epoch", mtime=0),
        item("future", data=b"later", mtime=4_102_444_800),
        item("keeps-pax", data=b"pax", pax={"LIBARCHIVE.creationtime": "1600000000"}),
        item("html<&>", data=b"escape me"),
    ]
