"""Large synthetic layers written straight to disk, for slow tests and the benchmark.

The payload is moderately compressible text (deflate gets it to about half), built from a
fixed-seed pool so runs are comparable; nothing is held in memory beyond the pool.
"""

from __future__ import annotations

import io
import random
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from isal import igzip

_POOL_SIZE = 8 << 20
_PIECE = 1 << 20


def text_pool(seed: int = 1) -> bytes:
    rng = random.Random(seed)
    alphabet = b"abcdefghijklmnopqrstuvwxyz"
    words = [bytes(rng.choices(alphabet, k=rng.randint(2, 10))) for _ in range(5000)]
    return b" ".join(rng.choices(words, k=_POOL_SIZE // 5))[:_POOL_SIZE]


def pieces(size: int, pool: bytes, seed: int = 2) -> Iterator[bytes]:
    rng = random.Random(seed)
    left = size
    while left:
        length = min(_PIECE, left)
        start = rng.randrange(0, len(pool) - length)
        yield pool[start : start + length]
        left -= length


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 1_700_000_000
    return info.tobuf(tarfile.PAX_FORMAT)


def write_single_file_layer(path: Path, size: int, pool: bytes) -> None:
    """A gzip layer holding one file of `size` bytes."""
    with igzip.open(path, "wb", compresslevel=1) as out:
        out.write(_header("data/big.bin", size))
        for piece in pieces(size, pool):
            out.write(piece)
        out.write(b"\x00" * (-size % 512) + b"\x00" * 1024)


def write_small_files_layer(path: Path, count: int, pool: bytes) -> None:
    """A gzip layer of `count` files of 200 B to 8 KiB in 100 directories."""
    rng = random.Random(3)
    with igzip.open(path, "wb", compresslevel=1) as out:
        _write_small_files(out, count, pool, rng)


def _write_small_files(out: BinaryIO, count: int, pool: bytes, rng: random.Random) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as archive:
        for directory in range(100):
            info = tarfile.TarInfo(f"d{directory:03d}")
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            archive.addfile(info)
        for number in range(count):
            size = rng.randint(200, 8192)
            start = rng.randrange(0, len(pool) - size)
            info = tarfile.TarInfo(f"d{number % 100:03d}/f{number:05d}.txt")
            info.size = size
            info.mtime = 1_700_000_000
            archive.addfile(info, io.BytesIO(pool[start : start + size]))
