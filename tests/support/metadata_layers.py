"""Tar streams whose metadata, not payload, is the burden: generated as they are read.

A converter child reads them through `GeneratedTar` straight from the generator, so the test
process never holds the gigabyte of xattrs or the 400,000 headers, and the child's peak RSS is
its own doing.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator

EMPTY_ENTRIES = 400_000
XATTR_ENTRIES = 1024
XATTR_BYTES = 1 << 20


def empty_entries(count: int = EMPTY_ENTRIES) -> Iterator[bytes]:
    """`count` empty regular files, no payload between them, then the end-of-archive marker."""
    for start in range(0, count, 1000):
        yield b"".join(
            tarfile.TarInfo(f"d/f{n:07d}").tobuf(tarfile.PAX_FORMAT)
            for n in range(start, min(count, start + 1000))
        )
    yield bytes(2 * tarfile.BLOCKSIZE)


def xattr_flood(count: int = XATTR_ENTRIES, xattr_bytes: int = XATTR_BYTES) -> Iterator[bytes]:
    """`count` empty files, each with one `user.big` xattr of about `xattr_bytes`."""
    value = "x" * (xattr_bytes - 64)
    for n in range(count):
        info = tarfile.TarInfo(f"f{n:05d}")
        info.pax_headers = {"SCHILY.xattr.user.big": value}
        yield info.tobuf(tarfile.PAX_FORMAT)
    yield bytes(2 * tarfile.BLOCKSIZE)


class GeneratedTar(io.RawIOBase):
    """A readable stream over the pieces of a generator."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            piece = next(self._pieces, None)
            if piece is None:
                return 0
            self._pending = memoryview(piece)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size
