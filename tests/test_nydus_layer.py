"""A layer becomes a nydus blob the independent validator accepts; hostile layers are refused."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from converters.errors import LayerRejected
from converters.nydus import NydusOptions, convert_layer
from tests.support.layer_tars import build_tar, compress, every_kind, item
from tests.support.nydus_conversion import convert_image
from tests.support.rafs_reader import parse_blob, parse_bootstrap, validate_image


def _convert(source: bytes, tmp_path: Path, options: NydusOptions | None = None) -> bytes:
    out = io.BytesIO()
    convert_layer(io.BytesIO(source), out, options or NydusOptions(workers=1), tmp_path)
    return out.getvalue()


def test_blob_is_a_valid_tar_like_stream_with_toc_and_inline_bootstrap(tmp_path: Path) -> None:
    blob = parse_blob(_convert(compress(build_tar(every_kind()), "gzip"), tmp_path))
    assert [e.name for e in blob.entries] == [
        "image.blob",
        "blob.meta",
        "blob.digest",
        "acceld.implicit",
        "image.boot",
        "rafs.blob.toc",
    ]
    assert blob.bootstrap is not None
    parse_bootstrap(blob.bootstrap)


def test_same_layer_gives_the_same_bytes_whatever_the_worker_count(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    source = compress(build_tar([item("a", data=data), item("b", data=data[::-1])]), "gzip")
    one = _convert(source, tmp_path, NydusOptions(chunk_size=1 << 16, workers=1))
    three = _convert(source, tmp_path, NydusOptions(chunk_size=1 << 16, workers=3))
    assert hashlib.sha256(one).digest() == hashlib.sha256(three).digest()


def test_gzip_zstd_and_plain_sources_give_the_same_blob(tmp_path: Path) -> None:
    tar = build_tar(every_kind())
    blobs = {_convert(compress(tar, kind), tmp_path) for kind in ("gzip", "zstd", "none")}
    assert len(blobs) == 1


def test_identical_chunks_are_stored_once(tmp_path: Path) -> None:
    data = os.urandom(64 << 10)
    source = build_tar([item("a", data=data * 4), item("b", data=data)])
    blob = parse_blob(_convert(source, tmp_path, NydusOptions(chunk_size=64 << 10, workers=2)))
    assert len(blob.chunks) == 1


def test_incompressible_chunks_are_stored_raw(tmp_path: Path) -> None:
    source = build_tar([item("noise", data=os.urandom(100_000))])
    blob = parse_blob(_convert(source, tmp_path))
    assert [c.is_compressed for c in blob.chunks] == [False]


def test_image_validates_with_blob_ids_equal_to_blob_digests(tmp_path: Path) -> None:
    layers = [compress(build_tar(every_kind()), "gzip"), build_tar([item("bin/extra", data=b"x")])]
    image = convert_image(layers, tmp_path / "out")
    boot, _ = validate_image(
        image.bootstrap.read_bytes(),
        {blob_id: path.read_bytes() for blob_id, path in image.blob_paths.items()},
        blob_id=lambda data: hashlib.sha256(data).hexdigest(),
    )
    assert [b.blob_id for b in boot.blobs] == [layer.blob.blob_id for layer in image.layers]
    assert boot.warnings == ()


def test_bootstrap_layer_holds_the_bootstrap_and_one_blob_meta_per_blob(tmp_path: Path) -> None:
    image = convert_image([build_tar([item("a", data=b"a")])], tmp_path / "out")
    with tarfile.open(image.bootstrap_layer_path, "r:gz") as archive:
        members = [(m.name, m.type, m.mode) for m in archive.getmembers()]
        blob_id = image.layers[0].blob.blob_id
        meta = archive.extractfile(f"image/{blob_id}.blob.meta")
        assert meta is not None
        assert meta.read() == image.layers[0].blob_meta
    assert members == [
        ("image", tarfile.DIRTYPE, 0o755),
        ("image/image.boot", tarfile.REGTYPE, 0o444),
        (f"image/{blob_id}.blob.meta", tarfile.REGTYPE, 0o444),
    ]
    assert (
        image.bootstrap_layer.digest
        == "sha256:" + hashlib.sha256(image.bootstrap_layer_path.read_bytes()).hexdigest()
    )


def test_blobs_without_used_chunks_are_left_out_of_the_bootstrap(tmp_path: Path) -> None:
    layers = [
        build_tar([item("a", data=b"lower data")]),
        build_tar([item(".wh.a"), item("dir", tarfile.DIRTYPE)]),
        build_tar([item("b", data=b"upper data")]),
    ]
    image = convert_image(layers, tmp_path / "out")
    boot = parse_bootstrap(image.bootstrap.read_bytes())
    assert [b.blob_id for b in boot.blobs] == [image.layers[2].blob.blob_id]
    assert set(image.blob_metas) == {image.layers[2].blob.blob_id}


def test_whiteout_of_one_hardlink_name_leaves_the_other(tmp_path: Path) -> None:
    layers = [
        build_tar([item("a", data=b"shared"), item("b", tarfile.LNKTYPE, link="a")]),
        build_tar([item(".wh.a")]),
    ]
    tree = parse_bootstrap(convert_image(layers, tmp_path / "out").bootstrap.read_bytes()).tree
    assert "/a" not in tree
    assert tree["/b"].nlink == 1


def test_flags_record_owners_and_xattrs(tmp_path: Path) -> None:
    plain = parse_bootstrap(
        convert_image([build_tar([item("a", data=b"a")])], tmp_path / "p").bootstrap.read_bytes()
    )
    owned = parse_bootstrap(
        convert_image([build_tar(every_kind())], tmp_path / "o").bootstrap.read_bytes()
    )
    explicit_uid_gid, has_xattr = 0x10, 0x20
    assert plain.flags & (explicit_uid_gid | has_xattr) == 0
    assert owned.flags & explicit_uid_gid
    assert owned.flags & has_xattr


def test_prefetch_paths_become_the_prefetch_table_in_order(tmp_path: Path) -> None:
    options = NydusOptions(prefetch=("/bin/sg", "/missing", "/home"), workers=1)
    image = convert_image([build_tar(every_kind())], tmp_path / "out", options)
    boot = parse_bootstrap(image.bootstrap.read_bytes())
    tree = boot.tree
    assert boot.prefetch == (tree["/bin/sg"].nid, tree["/home"].nid)


def test_file_of_many_chunks_lists_each_chunk(tmp_path: Path) -> None:
    data = os.urandom(5 * 4096 + 1)
    image = convert_image(
        [build_tar([item("f", data=data)])], tmp_path / "out", NydusOptions(chunk_size=4096)
    )
    node = parse_bootstrap(image.bootstrap.read_bytes()).tree["/f"]
    assert [c.ci_index for c in node.chunks] == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (
            [item("f", data=b"x", pax={"SCHILY.xattr.com.apple.quarantine": "q"})],
            "'f' has xattr 'com.apple.quarantine'; RAFS holds only the user., trusted., "
            "security. and system.posix_acl_* namespaces",
        ),
        ([item("l", tarfile.SYMTYPE, link="x" * 4096)], "symlink 'l' has a target of 4096 bytes"),
        ([item("h", tarfile.LNKTYPE, link="nowhere")], "which is not in the layer"),
        (
            [item("d", tarfile.DIRTYPE), item("h", tarfile.LNKTYPE, link="d")],
            "hardlink 'h' points to directory 'd'",
        ),
        ([item("n" * 256, data=b"")], "is longer than 255 bytes"),
        (
            [item("a", tarfile.SYMTYPE, link="b"), item("b", tarfile.SYMTYPE, link="a")],
            "symlink loop in the layer",
        ),
        ([item("f", data=b""), item("f/g", data=b"")], "'f/g' is inside 'f', which is not a dir"),
        ([item("../escape", data=b"")], "has a '..' component"),
    ],
)
def test_layers_rafs_cannot_hold_are_rejected_naming_the_entry(
    tmp_path: Path, entries: list[object], message: str
) -> None:
    with pytest.raises(LayerRejected) as caught:
        _convert(build_tar(entries), tmp_path)  # type: ignore[arg-type]
    assert message in caught.value.reason


def test_truncated_gzip_is_rejected(tmp_path: Path) -> None:
    source = compress(build_tar(every_kind()), "gzip")
    with pytest.raises(LayerRejected, match="truncated gzip stream"):
        _convert(source[: len(source) // 2], tmp_path)


def test_descriptors_carry_the_annotations_nydus_snapshotter_and_harbor_read(
    tmp_path: Path,
) -> None:
    image = convert_image([build_tar([item("a", data=b"a")])], tmp_path / "out")
    assert image.layers[0].annotations() == {"containerd.io/snapshot/nydus-blob": "true"}
    assert image.bootstrap_layer.annotations() == {
        "containerd.io/snapshot/nydus-bootstrap": "true",
        "containerd.io/snapshot/nydus-fs-version": "6",
    }
