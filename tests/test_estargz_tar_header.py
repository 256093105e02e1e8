"""The tar header codec keeps values ustar cannot hold (8 GiB+ sizes, big ids, long names)."""

from __future__ import annotations

import io
import tarfile

from converters import tar_header as th
from converters.layer_source import LayerSource
from converters.limits import LayerLimits
from converters.tar_reader import TarReader

NINE_GIB = 9 << 30


def read_back(header: th.TarHeader) -> th.TarHeader:
    blocks = th.encode_header(header)
    reader = TarReader(LayerSource(io.BytesIO(blocks), LayerLimits()), LayerLimits())
    parsed = reader.next_header()
    assert parsed is not None
    return parsed


def test_size_over_8_gib_goes_through_pax_and_is_read_back() -> None:
    header = th.TarHeader(name=b"huge", typeflag=th.REG, mode=0o644, size=NINE_GIB)
    assert read_back(header) == header
    stdlib = tarfile.TarInfo.frombuf(th.encode_header(header)[:512], "utf-8", "strict")
    assert stdlib.name == "././@PaxHeader"
    with tarfile.open(
        fileobj=io.BytesIO(th.encode_header(header) + bytes(1024)), mode="r|"
    ) as archive:
        info = archive.next()
        assert info is not None
        assert info.size == NINE_GIB


def test_base256_size_from_gnu_tar_is_read() -> None:
    info = tarfile.TarInfo("gnu-huge")
    info.size = NINE_GIB
    block = info.tobuf(tarfile.GNU_FORMAT)
    assert block[124] & 0x80
    assert th.parse_block(block).size == NINE_GIB


def test_ids_names_and_binary_values_survive_encoding() -> None:
    header = th.TarHeader(
        name="ü/".encode() + b"n" * 300 + b"\xff",
        typeflag=th.SYMLINK,
        mode=0o4755,
        uid=5_000_000,
        gid=6_000_000,
        mtime=-5,
        linkname=b"t" * 200,
        uname=b"very-long-user-name-over-32-bytes!",
        gname="grüppe".encode(),
        pax=((b"SCHILY.xattr.security.capability", b"\x01\x00\xff\x00\n="),),
    )
    assert read_back(header) == header


def test_pax_record_length_counts_its_own_digits() -> None:
    for size in range(1, 300):
        record = th.pax_record(b"k", b"v" * size)
        assert int(record.split(b" ", 1)[0]) == len(record)


def test_short_ascii_names_need_no_pax_header() -> None:
    header = th.TarHeader(name=b"usr/bin/tool", typeflag=th.REG, size=10, uid=1, gid=2)
    assert len(th.encode_header(header)) == th.BLOCK


def test_name_split_into_ustar_prefix_is_read_back() -> None:
    name = b"p" * 120 + b"/" + b"n" * 90
    header = th.TarHeader(name=name, typeflag=th.REG)
    assert len(th.encode_header(header)) == th.BLOCK
    assert read_back(header) == header
