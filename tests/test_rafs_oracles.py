"""The Nydus test oracles prove themselves on genuine nydus-image output and on broken copies.

Each oracle (the validator in `support/rafs_reader.py`, the kernel's EROFS mount and
`fsck.erofs` in `support/erofs_mount.py`) must accept the genuine fixtures and reject a
fixture copy with one patched field, or it proves nothing about the converter's output.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import struct
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import blake3
import pytest

from tests.support import erofs_mount, images, layer_tars, oci_flatten, rafs_reader
from tests.support.rafs_reader import Bootstrap, RafsInvalid

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "nydus"
BOOT_22 = FIXTURES / "rafs-v6-2.2.boot"
BLOB_22 = FIXTURES / "be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef"
BOOT_ACCELD = FIXTURES / "acceld-v6.boot"
EXT_SUPERBLOCK = 1152


def _boot22() -> Bootstrap:
    return rafs_reader.parse_bootstrap(BOOT_22.read_bytes())


def _inode_offset(boot: Bootstrap, path: str) -> int:
    return boot.meta_blkaddr * 4096 + boot.tree[path].nid * 32


def _chunk_index_offset(boot: Bootstrap, path: str) -> int:
    """Where a file's first chunk-index entry sits: after the inode, 8-byte aligned."""
    node = boot.tree[path]
    start = _inode_offset(boot, path)
    (fmt, icount) = struct.unpack_from("<HH", BOOT_22.read_bytes(), start)
    isize = 64 if fmt & 1 else 32
    xattr_size = 12 + (icount - 1) * 4 if icount else 0
    assert node.chunks, path
    return rafs_reader.round_up(start + isize + xattr_size, 8)


def _patched(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def _with_unsorted_root(data: bytes) -> bytes:
    """The 2.2 fixture with its root dirents rewritten as `.`, `..`, sync_io.rs, lib.rs."""
    boot = rafs_reader.parse_bootstrap(data)
    root = boot.tree["/"]
    inline = _inode_offset(boot, "/") + 64
    tree = boot.tree
    order = [
        (b".", root.nid, 2),
        (b"..", root.nid, 2),
        (b"sync_io.rs", tree["/sync_io.rs"].nid, 1),
        (b"lib.rs", tree["/lib.rs"].nid, 1),
    ]
    block = bytearray()
    nameoff = 12 * len(order)
    for name, nid, ftype in order:
        block += struct.pack("<QHBB", nid, nameoff, ftype, 0)
        nameoff += len(name)
    block += b"".join(name for name, _, _ in order)
    assert len(block) == root.size
    out = bytearray(data)
    out[inline : inline + len(block)] = block
    return bytes(out)


@pytest.fixture
def cache_22(tmp_path: Path) -> list[Path]:
    return erofs_mount.write_cache_images(_boot22(), {BLOB_22.name: BLOB_22}, tmp_path)


def _mount(tmp_path: Path, boot: bytes, cache: list[Path]) -> AbstractContextManager[Path]:
    erofs_mount.require_mount()
    boot_path = tmp_path / "image.boot"
    boot_path.write_bytes(boot)
    return erofs_mount.mounted_rafs(boot_path, cache, tmp_path / "mnt")


# --- the genuine fixtures pass -------------------------------------------------------------


def test_validator_accepts_the_22_fixture_with_its_blob() -> None:
    boot, blobs = rafs_reader.validate_image(
        BOOT_22.read_bytes(), {BLOB_22.name: BLOB_22.read_bytes()}
    )

    assert boot.warnings == ()
    assert (boot.compressor, boot.digester) == ("zstd", "blake3")
    assert sorted(boot.tree) == ["/", "/lib.rs", "/sync_io.rs"]
    assert [e.name for e in blobs[BLOB_22.name].entries] == [
        "image.blob",
        "blob.meta",
        "blob.digest",
        "rafs.blob.toc",
    ]


def test_validator_reads_file_contents_that_match_the_chunk_digests() -> None:
    data = {BLOB_22.name: BLOB_22.read_bytes()}
    boot, blobs = rafs_reader.validate_image(BOOT_22.read_bytes(), data)

    lib = rafs_reader.read_file(boot, blobs, data, "/lib.rs")

    assert lib.startswith(b"// Copyright (C) 2020 Alibaba Cloud.")
    record = boot.chunk_record(0, boot.tree["/lib.rs"].chunks[0].ci_index)
    assert record is not None
    assert blake3.blake3(lib).digest() == record.digest


def test_validator_accepts_the_acceld_fixture_with_a_uid_gid_warning() -> None:
    boot = rafs_reader.parse_bootstrap(BOOT_ACCELD.read_bytes())

    assert len(boot.nodes) == 3517
    assert (boot.compressor, boot.digester) == ("lz4_block", "blake3")
    assert boot.tree["/etc/shadow"].gid == 42
    assert [w for w in boot.warnings if "EXPLICIT_UID_GID" in w]


def test_validator_groups_the_acceld_fixture_hardlinks_by_inode_number() -> None:
    boot = rafs_reader.parse_bootstrap(BOOT_ACCELD.read_bytes())

    assert rafs_reader.hardlink_groups(boot.nodes) == {
        frozenset({"/usr/bin/gunzip", "/usr/bin/uncompress"}),
        frozenset({"/usr/bin/perl", "/usr/bin/perl5.34.0"}),
    }


def test_kernel_mount_shows_the_22_fixture_files(tmp_path: Path, cache_22: list[Path]) -> None:
    data = {BLOB_22.name: BLOB_22.read_bytes()}
    boot, blobs = rafs_reader.validate_image(BOOT_22.read_bytes(), data)

    with _mount(tmp_path, BOOT_22.read_bytes(), cache_22) as root:
        names = sorted(p.name for p in root.iterdir())
        contents = {name: (root / name).read_bytes() for name in names}
        st = (root / "lib.rs").stat()

    assert names == ["lib.rs", "sync_io.rs"]
    for name in names:
        assert contents[name] == rafs_reader.read_file(boot, blobs, data, "/" + name)
    assert b"use nydus_rafs::fs::Rafs;" in contents["lib.rs"]
    assert (st.st_size, st.st_mode, st.st_mtime_ns) == (16931, 0o100644, 1676819553628661334)


def test_mount_releases_its_loop_devices(tmp_path: Path, cache_22: list[Path]) -> None:
    before = erofs_mount.attached_loop_devices()

    with _mount(tmp_path, BOOT_22.read_bytes(), cache_22):
        assert len(erofs_mount.attached_loop_devices() - before) == 1 + len(cache_22)

    assert erofs_mount.attached_loop_devices() == before
    assert not (tmp_path / "mnt").is_mount()


def test_fsck_passes_on_the_22_fixture(cache_22: list[Path]) -> None:
    erofs_mount.require_fsck()

    result = erofs_mount.fsck_erofs(BOOT_22, cache_22)

    assert result.ok, result.output


def test_fsck_passes_on_the_acceld_fixture_without_its_data(tmp_path: Path) -> None:
    erofs_mount.require_fsck()
    boot = rafs_reader.parse_bootstrap(BOOT_ACCELD.read_bytes())
    device = tmp_path / "sparse.cache"
    with device.open("wb") as f:
        f.truncate(boot.blobs[0].uncompressed_size)

    result = erofs_mount.fsck_erofs(BOOT_ACCELD, [device])

    assert result.ok, result.output


# --- each oracle rejects a broken copy ------------------------------------------------------


def test_unsorted_dirents_fail_the_validator() -> None:
    with pytest.raises(RafsInvalid, match="wrong dirent name order"):
        rafs_reader.parse_bootstrap(_with_unsorted_root(BOOT_22.read_bytes()))


def test_unsorted_dirents_fail_fsck(tmp_path: Path, cache_22: list[Path]) -> None:
    erofs_mount.require_fsck()
    broken = tmp_path / "unsorted.boot"
    broken.write_bytes(_with_unsorted_root(BOOT_22.read_bytes()))

    result = erofs_mount.fsck_erofs(broken, cache_22)

    assert not result.ok
    assert "wrong dirent name order" in result.output


def test_unsorted_dirents_fail_a_kernel_lookup(tmp_path: Path, cache_22: list[Path]) -> None:
    with _mount(tmp_path, _with_unsorted_root(BOOT_22.read_bytes()), cache_22) as root:
        found = [(root / name).exists() for name in ("lib.rs", "sync_io.rs")]

    assert not all(found)


def _far_chunk(data: bytes) -> bytes:
    return _patched(data, _chunk_index_offset(_boot22(), "/lib.rs") + 4, "<I", 0x10_0000)


def _off_by_one_chunk(data: bytes) -> bytes:
    boot = _boot22()
    blkaddr = boot.tree["/sync_io.rs"].chunks[0].blkaddr
    return _patched(data, _chunk_index_offset(boot, "/sync_io.rs") + 4, "<I", blkaddr - 1)


def test_a_chunk_address_past_the_device_fails_the_validator() -> None:
    with pytest.raises(RafsInvalid, match="past the blob's uncompressed size"):
        rafs_reader.parse_bootstrap(_far_chunk(BOOT_22.read_bytes()))


def test_a_chunk_address_past_the_device_is_an_eio_read(
    tmp_path: Path, cache_22: list[Path]
) -> None:
    with _mount(tmp_path, _far_chunk(BOOT_22.read_bytes()), cache_22) as root:
        with pytest.raises(OSError, match="Input/output error") as raised:
            (root / "lib.rs").read_bytes()
        intact = (root / "sync_io.rs").read_bytes()

    assert raised.value.errno == errno.EIO
    assert len(intact) == 13400


def test_a_chunk_address_past_the_device_passes_plain_fsck_but_not_extract(
    tmp_path: Path, cache_22: list[Path]
) -> None:
    erofs_mount.require_fsck()
    broken = tmp_path / "far.boot"
    broken.write_bytes(_far_chunk(BOOT_22.read_bytes()))

    plain = erofs_mount.fsck_erofs(broken, cache_22)
    extracted = erofs_mount.fsck_erofs(broken, cache_22, extract_to=tmp_path / "out")

    assert plain.ok, plain.output
    assert not extracted.ok


def test_a_chunk_address_off_by_one_reads_wrong_content_caught_by_digest(
    tmp_path: Path, cache_22: list[Path]
) -> None:
    boot = _boot22()
    ref = boot.tree["/sync_io.rs"].chunks[0]
    record = boot.chunk_record(ref.blob_index, ref.ci_index)
    assert record is not None

    with _mount(tmp_path, _off_by_one_chunk(BOOT_22.read_bytes()), cache_22) as root:
        content = (root / "sync_io.rs").read_bytes()

    assert len(content) == 13400
    assert blake3.blake3(content).digest() != record.digest


def test_a_chunk_address_off_by_one_passes_fsck(tmp_path: Path, cache_22: list[Path]) -> None:
    erofs_mount.require_fsck()
    broken = tmp_path / "off-by-one.boot"
    broken.write_bytes(_off_by_one_chunk(BOOT_22.read_bytes()))

    assert erofs_mount.fsck_erofs(broken, cache_22).ok
    assert erofs_mount.fsck_erofs(broken, cache_22, extract_to=tmp_path / "out").ok


def test_a_chunk_address_off_by_one_fails_the_validator() -> None:
    with pytest.raises(RafsInvalid, match="chunk table says"):
        rafs_reader.parse_bootstrap(_off_by_one_chunk(BOOT_22.read_bytes()))


def _blob_table_field(offset_in_entry: int) -> int:
    return _boot22_blob_table_offset() + offset_in_entry


def _boot22_blob_table_offset() -> int:
    (offset,) = struct.unpack_from("<Q", BOOT_22.read_bytes(), EXT_SUPERBLOCK + 8)
    return int(offset)


BOOTSTRAP_MUTATIONS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "blob table ci_uncompressed_size": (
        lambda d: _patched(d, _blob_table_field(128), "<Q", 48),
        "ci_uncompressed_size 48 != 16 x chunk_count",
    ),
    "unknown superblock flag": (
        lambda d: _patched(d, EXT_SUPERBLOCK, "<Q", 0x194 | 0x400),
        "unknown bits 0x400",
    ),
    "two compressor flags": (
        lambda d: _patched(d, EXT_SUPERBLOCK, "<Q", 0x194 | 0x1),
        "2 compressor bits",
    ),
    "no digester flag": (
        lambda d: _patched(d, EXT_SUPERBLOCK, "<Q", 0x194 & ~0x4),
        "0 digester bits",
    ),
    "incompat feature bits": (
        lambda d: _patched(d, 1024 + 80, "<I", 0x0D),
        "feature_incompat is 0xd",
    ),
    "blob without ALIGNED": (
        lambda d: _patched(d, _blob_table_field(84), "<I", 0x7000_0020),
        "lack ALIGNED",
    ),
    "blob chunk_size differs": (
        lambda d: _patched(d, _blob_table_field(68), "<I", 2 << 20),
        "chunk_size 2097152 != superblock",
    ),
    "nlink 0": (
        lambda d: _patched(d, _inode_offset(_boot22(), "/lib.rs") + 44, "<I", 0),
        "nlink is 0",
    ),
    "size not a block multiple": (lambda d: d + b"\0" * 100, "not a multiple of 4096"),
}


@pytest.mark.parametrize("mutation", sorted(BOOTSTRAP_MUTATIONS))
def test_a_broken_bootstrap_field_fails_the_validator(mutation: str) -> None:
    patch, message = BOOTSTRAP_MUTATIONS[mutation]

    with pytest.raises(RafsInvalid, match=message):
        rafs_reader.parse_bootstrap(patch(BOOT_22.read_bytes()))


def _blob_meta_header_offset(blob: bytes) -> int:
    meta = rafs_reader.parse_blob(blob).entry("blob.meta")
    assert meta is not None
    return meta.offset + meta.size - 4096


def test_a_wrong_blob_meta_size_in_the_blob_fails_the_validator() -> None:
    blob = BLOB_22.read_bytes()
    broken = _patched(blob, _blob_meta_header_offset(blob) + 24, "<Q", 48)

    with pytest.raises(RafsInvalid, match="ci_compressed_size 48"):
        rafs_reader.parse_blob(broken)


def test_a_blob_meta_disagreeing_with_the_blob_table_fails_the_validator() -> None:
    boot = BOOT_22.read_bytes()
    broken = _patched(boot, _blob_table_field(120), "<Q", 16)

    with pytest.raises(
        RafsInvalid, match=re.escape("blob.meta ci_compressed_size 32 != blob table 16")
    ):
        rafs_reader.validate_image(broken, {BLOB_22.name: BLOB_22.read_bytes()})


def test_a_wrong_chunk_digest_fails_the_validator() -> None:
    (chunk_table,) = struct.unpack_from("<Q", BOOT_22.read_bytes(), EXT_SUPERBLOCK + 24)
    broken = _patched(BOOT_22.read_bytes(), chunk_table, "<I", 0xDEADBEEF)

    with pytest.raises(RafsInvalid, match="differs from the chunk table"):
        rafs_reader.validate_image(broken, {BLOB_22.name: BLOB_22.read_bytes()})


def test_corrupt_chunk_data_fails_the_validator() -> None:
    blob = bytearray(BLOB_22.read_bytes())
    blob[100] ^= 0xFF

    with pytest.raises(RafsInvalid, match=re.escape("'image.blob': digest")):
        rafs_reader.validate_image(BOOT_22.read_bytes(), {BLOB_22.name: bytes(blob)})


# --- the independent flattening -------------------------------------------------------------


def _oci_image(layers: list[bytes]) -> tuple[bytes, dict[str, bytes | Path]]:
    blobs: dict[str, bytes | Path] = {}
    descriptors = []
    for raw in layers:
        gz = layer_tars.compress(raw, "gzip")
        blobs[images.sha256(gz)] = gz
        descriptors.append(
            {"mediaType": oci_flatten.GZIP_LAYERS[0], "digest": images.sha256(gz), "size": len(gz)}
        )
    config = json.dumps(images.image_config([images.sha256(raw) for raw in layers])).encode()
    blobs[images.sha256(config)] = config
    manifest = {
        "schemaVersion": 2,
        "mediaType": oci_flatten.OCI_MANIFEST,
        "config": {
            "mediaType": images.OCI_CONFIG,
            "digest": images.sha256(config),
            "size": len(config),
        },
        "layers": descriptors,
    }
    return json.dumps(manifest).encode(), blobs


def _unpacked(tmp_path: Path, layers: list[bytes]) -> Path:
    if shutil.which("umoci") is None:
        pytest.skip("umoci is not installed (Debian package umoci)")
    manifest, blobs = _oci_image(layers)
    layout = oci_flatten.write_oci_layout(tmp_path / "layout", manifest, blobs)
    return oci_flatten.umoci_unpack(layout, tmp_path / "bundle")


def test_umoci_applies_whiteouts_and_keeps_links_devices_and_xattrs(tmp_path: Path) -> None:
    upper = layer_tars.build_tar(
        [
            layer_tars.item("bin/.wh.sg"),
            layer_tars.item("var/cache/.wh..wh..opq"),
            layer_tars.item("var/cache/new", data=b"new"),
        ]
    )
    tree = oci_flatten.snapshot_tree(
        _unpacked(tmp_path, [layer_tars.build_tar(layer_tars.every_kind()), upper])
    )
    entries = tree.by_path

    assert "/bin/sg" not in entries
    assert "/var/removed" not in entries
    assert "/var/.wh.removed" not in entries
    assert [p for p in entries if p.startswith("/var/cache/")] == ["/var/cache/new"]
    assert frozenset({"/bin/ping", "/bin/hard"}) in tree.hardlinks
    assert entries["/bin/ping"].mode == 0o4755
    assert dict(entries["/bin/ping"].xattrs)["security.capability"] == layer_tars.CAPABILITY
    assert entries["/tmp"].mode == 0o1777
    assert (entries["/dev/null"].kind, entries["/dev/null"].rdev) == ("char", os.makedev(1, 3))
    assert (entries["/old-time"].mtime_ns, entries["/future"].mtime_ns) == (
        0,
        4_102_444_800 * 10**9,
    )


def test_mounted_fixture_and_its_umoci_unpacked_original_compare_equal(
    tmp_path: Path, cache_22: list[Path]
) -> None:
    with _mount(tmp_path, BOOT_22.read_bytes(), cache_22) as root:
        mounted = oci_flatten.snapshot_tree(root)
        original = [
            layer_tars.item(
                e.path.lstrip("/"),
                data=(root / e.path.lstrip("/")).read_bytes(),
                mode=e.mode,
                pax={"mtime": f"{e.mtime_ns // 10**9}.{e.mtime_ns % 10**9:09d}"},
            )
            for e in mounted.entries
        ]

    unpacked = oci_flatten.snapshot_tree(_unpacked(tmp_path, [layer_tars.build_tar(original)]))

    assert oci_flatten.tree_differences(unpacked, mounted) == []
    assert unpacked == mounted
