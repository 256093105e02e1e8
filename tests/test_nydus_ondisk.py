"""The byte layouts of `converters.nydus.ondisk` against nydus' own bytes and test vectors."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from converters.nydus import ondisk

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "nydus"
GENUINE_BLOB = FIXTURES / "be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef"


@pytest.fixture(scope="module")
def genuine_blob() -> bytes:
    if not GENUINE_BLOB.exists():
        pytest.skip(f"genuine nydus fixtures missing at {FIXTURES}")
    return GENUINE_BLOB.read_bytes()


def test_entry_tar_headers_are_byte_identical_to_nydus_image(genuine_blob: bytes) -> None:
    # image.blob's 7802 bytes of chunk data, then its header; the TOC's 512 bytes, then its.
    assert ondisk.entry_tar_header(b"image.blob", 7802) == genuine_blob[7802 : 7802 + 512]
    assert ondisk.entry_tar_header(b"rafs.blob.toc", 512) == genuine_blob[-512:]


def test_toc_entry_matches_nydus_image_layout(genuine_blob: bytes) -> None:
    first = genuine_blob[-1024 : -1024 + 128]
    flags, _, name, digest, offset, size, usize = struct.unpack("<II16s32sQQQ", first[:80])
    rebuilt = ondisk.toc_entry(
        name=name.rstrip(b"\x00"),
        compressed=flags == ondisk.TOC_COMPRESSION_ZSTD,
        digest=digest,
        compressed_offset=offset,
        compressed_size=size,
        uncompressed_size=usize,
    )
    # nydus-image 2.2 leaves stray bytes in the last reserved bytes; the fields must agree.
    assert rebuilt[:80] == first[:80]
    assert rebuilt[80:] == bytes(48)


@pytest.mark.parametrize(
    ("c_offset", "c_size", "u_offset", "u_size"),
    [
        (0x1000, 0x100, 0x1000, 0x100),
        (0xFF_FFFF_FFFF, 0x100_0000, 0xFFF_FFFF_F000, 0x100_0000),
        (0, 1, 0, 1),
        (123, 0x12_3456, 0x5000, 0xAB_CDEF),
    ],
)
def test_chunk_info_v1_packs_as_nydus_reads_it(
    c_offset: int, c_size: int, u_offset: int, u_size: int
) -> None:
    uncomp, comp = struct.unpack("<QQ", ondisk.chunk_info_v1(c_offset, c_size, u_offset, u_size))
    # The readers of storage/src/meta/chunk_info_v1.rs.
    assert comp & 0xFF_FFFF_FFFF == c_offset
    assert ((comp & 0xF00_0000_0000) >> 20 | comp >> 44) + 1 == c_size
    assert uncomp & 0xFFF_FFFF_F000 == u_offset
    assert ((uncomp & 0xF00) << 12 | uncomp >> 44) + 1 == u_size


def test_chunk_info_v1_matches_nydus_test_vector() -> None:
    # test_get_chunk_index_with_hole: uncomp 0x01ff_f000_0010_0000, comp 0x00ff_f000_0010_0000.
    packed = ondisk.chunk_info_v1(0x10_0000, 0x1000, 0x10_0000, 0x2000)
    assert struct.unpack("<QQ", packed) == (0x01FF_F000_0010_0000, 0x00FF_F000_0010_0000)


def test_chunk_address_splits_the_ci_index_as_nydus_does() -> None:
    lo, hi, blkaddr = struct.unpack("<HHI", ondisk.chunk_addr(3, 0x123456, 0xA5A53412))
    assert hi & 0xFF == 4  # blob index + 1: device 0 is the bootstrap
    assert (hi >> 8) << 16 | lo == 0x123456
    assert blkaddr == 0xA5A53412


def test_structures_have_their_on_disk_sizes() -> None:
    assert len(ondisk.superblock(root_nid=1, inos=1, blocks=0, meta_blkaddr=1, extra_devices=0))
    sizes = {
        "superblock": len(
            ondisk.superblock(root_nid=1, inos=1, blocks=0, meta_blkaddr=1, extra_devices=0)
        ),
        "extended": len(
            ondisk.extended_superblock(
                flags=0,
                blob_table=(0, 0),
                chunk_size=4096,
                chunk_table=(0, 0),
                prefetch_table=(0, 0),
            )
        ),
        "device": len(ondisk.device_slot(b"x" * 64, 1, 0)),
        "dirent": len(ondisk.dirent(1, 12, ondisk.FT_DIR)),
        "meta header": len(
            ondisk.blob_meta_header(
                features=0,
                ci_compressor=0,
                ci_entries=1,
                ci_offset=0,
                ci_compressed_size=16,
                ci_uncompressed_size=16,
            )
        ),
    }
    assert sizes == {
        "superblock": 128,
        "extended": 256,
        "device": 128,
        "dirent": 12,
        "meta header": 4096,
    }


def test_chunk_format_encodes_log2_of_the_chunk_size_over_the_block() -> None:
    assert ondisk.chunk_format(1 << 20) == 0x20 | 8
    assert ondisk.chunk_format(4096) == 0x20
