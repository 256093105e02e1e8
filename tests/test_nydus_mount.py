"""The kernel's EROFS mounts what the nydus converter writes, and shows the original's tree.

Each image is converted, every blob's cache image is rebuilt from its own blob.meta
(tests/support/erofs_mount, independent of the converter), the bootstrap taken from the
bootstrap layer is mounted read-only, and the mounted tree is compared with umoci's
flattening of the original image: paths, kinds, modes, owners, mtimes, sizes, contents,
symlink targets, device numbers, xattrs and hardlink groups. fsck.erofs checks the same
bootstrap, reading every file's data with --extract.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from converters.nydus import NydusOptions, convert_layer, write_bootstrap_layer
from tests.support.erofs_mount import (
    fsck_erofs,
    mount_unavailable,
    mounted_rafs,
    require_fsck,
    write_cache_images,
)
from tests.support.layer_tars import build_tar, compress, every_kind, item
from tests.support.nydus_conversion import ConvertedImage, convert_image, oci_layout_of
from tests.support.oci_flatten import (
    TreeSnapshot,
    snapshot_tree,
    tree_differences,
    umoci_unpack,
)
from tests.support.rafs_reader import parse_bootstrap, validate_image
from tests.support.synthetic_layers import text_pool, write_small_files_layer

pytestmark = pytest.mark.skipif(mount_unavailable() is not None, reason=str(mount_unavailable()))


def _sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def _with_implicit_dirs(snapshot: TreeSnapshot, paths: tuple[str, ...]) -> TreeSnapshot:
    """umoci makes directories a layer has no entry for at unpack time; RAFS gives them 0."""
    entries = tuple(replace(e, mtime_ns=0) if e.path in paths else e for e in snapshot.entries)
    return replace(snapshot, entries=entries)


def _assert_matches_umoci(
    image: ConvertedImage,
    gzip_layers: list[bytes],
    tmp: Path,
    implicit_dirs: tuple[str, ...] = (),
) -> None:
    boot, _ = validate_image(
        image.bootstrap.read_bytes(),
        {blob_id: path.read_bytes() for blob_id, path in image.blob_paths.items()},
        blob_id=_sha256,
    )
    caches = write_cache_images(boot, image.blob_paths, tmp / "cache")
    rootfs = umoci_unpack(oci_layout_of(gzip_layers, tmp / "layout"), tmp / "bundle")
    expected = _with_implicit_dirs(snapshot_tree(rootfs), implicit_dirs)
    with mounted_rafs(image.bootstrap, caches, tmp / "mnt") as mountpoint:
        actual = snapshot_tree(mountpoint)
    differences = tree_differences(expected, actual)
    assert not differences, "\n".join(differences)
    require_fsck()
    checked = fsck_erofs(image.bootstrap, caches, extract_to=tmp / "extract")
    assert checked.ok, checked.output


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    (tmp_path / "cache").mkdir()
    return tmp_path


def test_every_kind_of_entry_mounts_as_umoci_unpacks_it(cache_dir: Path) -> None:
    layer = compress(build_tar(every_kind()), "gzip")
    image = convert_image([layer], cache_dir / "out")
    implicit = ("/café", "/deep", "/deep/" + "d" * 90)
    _assert_matches_umoci(image, [layer], cache_dir, implicit)


def test_whiteouts_and_opaque_directories_apply_across_layers(cache_dir: Path) -> None:
    lower = build_tar(
        [
            item("./", tarfile.DIRTYPE, mode=0o755, mtime=1000),
            item("etc", tarfile.DIRTYPE, mode=0o750, mtime=1_600_000_000),
            item("etc/hosts", data=b"lower hosts\n"),
            item("etc/keep", data=b"kept"),
            item("etc/hard", tarfile.LNKTYPE, link="etc/hosts"),
            item("opaque", tarfile.DIRTYPE, mode=0o755),
            item("opaque/hidden", data=b"hidden by the opaque marker"),
            item("opaque/sub", tarfile.DIRTYPE),
            item("gone", tarfile.DIRTYPE),
            item("gone/file", data=b"whole directory removed"),
            item("file-to-dir", data=b"becomes a directory"),
        ]
    )
    upper = build_tar(
        [
            item("etc/hosts", data=b"upper hosts\n", mtime=1_700_000_001),
            item("opaque", tarfile.DIRTYPE, mode=0o700),
            item("opaque/.wh..wh..opq"),
            item("opaque/new", data=b"new"),
            item(".wh.gone"),
            item("file-to-dir", tarfile.DIRTYPE),
            item("file-to-dir/inside", data=b"inside"),
        ]
    )
    layers = [compress(lower, "gzip"), compress(upper, "gzip")]
    image = convert_image(layers, cache_dir / "out")
    _assert_matches_umoci(image, layers, cache_dir)


def test_large_deduplicated_files_read_back_whole(cache_dir: Path) -> None:
    block = os.urandom(1 << 20)
    data = block * 3 + os.urandom(5000)
    layers = [
        compress(
            build_tar(
                [
                    item("a", data=data),
                    item("b", data=data),
                    item("c", data=block[:4096]),
                    item("d", data=b"tiny"),
                ]
            ),
            "gzip",
        )
    ]
    image = convert_image(layers, cache_dir / "out", NydusOptions(chunk_size=1 << 20, workers=2))
    assert image.layers[0].blob.chunk_count == 4
    _assert_matches_umoci(image, layers, cache_dir)


def test_uncompressed_sha256_blobs_mount(cache_dir: Path) -> None:
    layers = [compress(build_tar(every_kind()), "gzip")]
    options = NydusOptions(compressor="none", digester="sha256", chunk_size=0x4000)
    image = convert_image(layers, cache_dir / "out", options)
    implicit = ("/café", "/deep", "/deep/" + "d" * 90)
    _assert_matches_umoci(image, layers, cache_dir, implicit)


def test_many_small_files_and_wide_directories_mount(cache_dir: Path) -> None:
    items = [item("wide", tarfile.DIRTYPE)]
    items += [item(f"wide/{'f' * (i % 200)}-{i:05}", data=b"%d" % i) for i in range(3000)]
    layers = [compress(build_tar(items), "gzip")]
    image = convert_image(layers, cache_dir / "out")
    _assert_matches_umoci(image, layers, cache_dir)


class _ZeroFileTar(io.RawIOBase):
    """A plain tar of one file of `size` zero bytes ending in b"end", generated as it is read."""

    def __init__(self, size: int) -> None:
        info = tarfile.TarInfo("huge")
        info.size = size
        info.mode = 0o644
        header = info.tobuf(tarfile.PAX_FORMAT)
        tail = b"end" + bytes(-size % 512 + 1024)
        self._parts = [(header, len(header)), (None, size - 3), (tail, len(tail))]
        self._part = 0
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while self._part < len(self._parts):
            data, size = self._parts[self._part]
            if self._offset < size:
                count = min(len(buffer), size - self._offset)
                if data is None:
                    buffer[:count] = bytes(count)
                else:
                    buffer[:count] = data[self._offset : self._offset + count]
                self._offset += count
                return count
            self._part += 1
            self._offset = 0
        return 0


@pytest.mark.slow
def test_file_of_more_than_4_gib_keeps_its_size_and_tail(tmp_path: Path) -> None:
    size = (4 << 30) + 12345
    options = NydusOptions(chunk_size=16 << 20, workers=2)
    blob = tmp_path / "huge.nydus"
    with blob.open("wb") as dest:
        layer = convert_layer(io.BufferedReader(_ZeroFileTar(size)), dest, options, tmp_path)
    with (tmp_path / "boot.tar.gz").open("wb") as dest:
        write_bootstrap_layer([layer], dest, options)
    with tarfile.open(tmp_path / "boot.tar.gz") as archive:
        member = archive.extractfile("image/image.boot")
        assert member is not None
        (tmp_path / "image.boot").write_bytes(member.read())
    boot = parse_bootstrap((tmp_path / "image.boot").read_bytes())
    caches = write_cache_images(boot, {layer.blob.blob_id: blob}, tmp_path)
    with mounted_rafs(tmp_path / "image.boot", caches, tmp_path / "mnt") as mountpoint:
        huge = mountpoint / "huge"
        assert huge.stat().st_size == size
        with huge.open("rb") as f:
            f.seek(size - 4096)
            tail = f.read()
            f.seek(3 << 30)
            middle = f.read(1 << 20)
    assert tail == bytes(4093) + b"end"
    assert middle == bytes(1 << 20)


def test_long_symlink_targets_and_large_xattrs_fall_back_to_plain_blocks(cache_dir: Path) -> None:
    big_xattrs = {f"SCHILY.xattr.user.k{i}": "v" * 200 for i in range(12)}
    layers = [
        compress(
            build_tar(
                [
                    item("long", tarfile.SYMTYPE, link="t/" * 2000),
                    item("medium", tarfile.SYMTYPE, link="m" * 4095),
                    item("dir", tarfile.DIRTYPE, pax=big_xattrs),
                    *(item(f"dir/{'e' * 150}{i}", data=b"") for i in range(40)),
                    item("file", data=b"payload", pax=big_xattrs),
                ]
            ),
            "gzip",
        )
    ]
    image = convert_image(layers, cache_dir / "out", NydusOptions(chunk_size=4096, workers=1))
    _assert_matches_umoci(image, layers, cache_dir)


@pytest.mark.slow
def test_twenty_thousand_small_files_mount(cache_dir: Path) -> None:
    source = cache_dir / "small.tar.gz"
    write_small_files_layer(source, 20_000, text_pool())
    layers = [source.read_bytes()]
    image = convert_image(layers, cache_dir / "out")
    _assert_matches_umoci(image, layers, cache_dir)
