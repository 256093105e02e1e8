"""One gzip member deflated in blocks on several threads is a single valid member."""

from __future__ import annotations

import gzip
import io
import random
import zlib

import pytest

from converters.gzip_members import write_member

MIB = 1 << 20


def _text(size: int) -> bytes:
    rng = random.Random(size)
    words = [bytes(rng.choices(b"abcdefgh", k=rng.randint(2, 9))) for _ in range(2000)]
    return b" ".join(rng.choices(words, k=size))[:size]


def _member(data: bytes, workers: int, piece: int = 300_000) -> bytes:
    out = io.BytesIO()
    pieces = (data[i : i + piece] for i in range(0, len(data), piece))
    write_member(out, pieces, 9, workers)
    return out.getvalue()


@pytest.mark.parametrize("size", [0, 1, MIB - 1, MIB, 2 * MIB, 3 * MIB + 12_345])
def test_the_member_decompresses_to_its_input_whatever_the_block_split(size: int) -> None:
    data = _text(size)
    member = _member(data, workers=3)
    inflater = zlib.decompressobj(wbits=31)
    assert inflater.decompress(member) == data
    assert inflater.eof, "the member must end"
    assert inflater.unused_data == b"", "exactly one gzip member"
    assert gzip.decompress(member) == data


def test_bytes_do_not_depend_on_workers_or_how_the_input_is_cut() -> None:
    data = _text(3 * MIB + 999)
    one = _member(data, workers=1)
    assert _member(data, workers=4) == one
    assert _member(data, workers=2, piece=77_777) == one


def test_priming_each_block_keeps_the_size_of_a_serial_deflate() -> None:
    data = _text(4 * MIB)
    serial = len(gzip.compress(data, 9))
    assert len(_member(data, workers=2)) <= serial * 1.002
