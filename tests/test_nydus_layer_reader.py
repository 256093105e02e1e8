"""A nydus blob read back with `read_layer` gives the layer `convert_layer` returned for it.

The read-back layer equals the converted one (`NydusLayer.__eq__`: facts, chunk table,
blob.meta and the tree with its hardlinks, implicit directories and chunk references), and the
bootstrap layer merged from read-back layers is byte for byte the one merged from the
converter's own. Blobs that are not what acceld writes are refused, and reading a blob reads
its metadata only, never the chunk data.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from converters.errors import LayerRejected
from converters.nydus import NydusLayer, NydusOptions, convert_layer, write_bootstrap_layer
from converters.nydus.layer_reader import read_layer
from converters.nydus.tree import Inode
from tests.support.layer_tars import Item, build_tar, compress, every_kind, item
from tests.support.rafs_reader import parse_blob, parse_bootstrap

_ONE_WORKER = NydusOptions(workers=1)


@dataclass
class _Reads:
    """A `read_at` over bytes that records what was read."""

    blob: bytes
    ranges: list[tuple[int, int]] = field(default_factory=list)

    def __call__(self, offset: int, length: int) -> bytes:
        self.ranges.append((offset, length))
        return self.blob[offset : offset + length]

    @property
    def total(self) -> int:
        return sum(length for _, length in self.ranges)


def _convert(
    source: bytes, tmp_path: Path, options: NydusOptions = _ONE_WORKER
) -> tuple[NydusLayer, bytes]:
    out = io.BytesIO()
    layer = convert_layer(io.BytesIO(source), out, options, tmp_path)
    return layer, out.getvalue()


def _read_back(blob: bytes, digest: str | None = None) -> NydusLayer:
    digest = digest or "sha256:" + hashlib.sha256(blob).hexdigest()
    return read_layer(_Reads(blob), len(blob), digest)


def _merged(layers: list[NydusLayer], options: NydusOptions = _ONE_WORKER) -> bytes:
    out = io.BytesIO()
    write_bootstrap_layer(layers, out, options)
    return out.getvalue()


_LOWER = [
    item("./", tarfile.DIRTYPE, mode=0o755, mtime=1000),
    item("etc", tarfile.DIRTYPE, mode=0o750, mtime=1_600_000_000, uid=7),
    item("etc/hosts", data=b"lower hosts\n"),
    item("etc/keep", data=b"kept"),
    item("etc/hard", tarfile.LNKTYPE, link="etc/hosts"),
    item("opaque", tarfile.DIRTYPE, mode=0o755),
    item("opaque/hidden", data=b"hidden by the opaque marker"),
    item("gone", tarfile.DIRTYPE),
    item("gone/file", data=b"whole directory removed"),
    item("file-to-dir", data=b"becomes a directory"),
]
_UPPER = [
    item("etc/hosts", data=b"upper hosts\n", mtime=1_700_000_001),
    item("opaque", tarfile.DIRTYPE, mode=0o700),
    item("opaque/.wh..wh..opq"),
    item("opaque/new", data=b"new"),
    item(".wh.gone"),
    item("file-to-dir", tarfile.DIRTYPE),
    item("file-to-dir/inside", data=b"inside"),
]
_BLOCK = os.urandom(4096)
_LAYERS: dict[str, tuple[list[Item], NydusOptions]] = {
    "every kind": (every_kind(), _ONE_WORKER),
    "whiteouts and opaque directories": (_UPPER, _ONE_WORKER),
    "hardlinks": (
        [
            item("a", data=b"shared"),
            item("b", tarfile.LNKTYPE, link="a"),
            item("dir/c", tarfile.LNKTYPE, link="a"),
            item("empty"),
            item("empty-link", tarfile.LNKTYPE, link="empty"),
        ],
        _ONE_WORKER,
    ),
    "multi-chunk files deduplicated": (
        [
            item("a", data=_BLOCK * 3 + b"tail"),
            item("b", data=_BLOCK * 3 + b"tail"),
            item("c", data=b"tail" + _BLOCK),
            item("d", data=_BLOCK[:100]),
        ],
        NydusOptions(chunk_size=4096, workers=2),
    ),
    "compressor none and sha256": (
        every_kind(),
        NydusOptions(compressor="none", digester="sha256", chunk_size=0x4000, workers=1),
    ),
    "no file data": (
        [
            item("dir", tarfile.DIRTYPE, mode=0o700, uid=5),
            item("dir/empty"),
            item("dir/link", tarfile.SYMTYPE, link="empty"),
            item(".wh.lower"),
        ],
        _ONE_WORKER,
    ),
    "chunks no file uses": (
        [item("a", data=b"replaced"), item("a", tarfile.SYMTYPE, link="b")],
        _ONE_WORKER,
    ),
    "files replaced and implicit parents": (
        [
            item("deep/er/f", data=b"first"),
            item("deep/er/f", data=b"second"),
            item("deep", tarfile.DIRTYPE, mode=0o755, mtime=0),
            item("x/y/z", data=b"z"),
        ],
        _ONE_WORKER,
    ),
    "times before 1970 and nanoseconds": (
        [
            item("old", data=b"o", pax={"mtime": "-1.25"}),
            item("precise", data=b"p", pax={"mtime": "1700000000.123456789"}),
        ],
        _ONE_WORKER,
    ),
    "long symlinks and large xattrs": (
        [
            item("long", tarfile.SYMTYPE, link="t/" * 2000),
            item(
                "dir",
                tarfile.DIRTYPE,
                pax={f"SCHILY.xattr.user.k{i}": "v" * 200 for i in range(12)},
            ),
            *(item(f"dir/{'e' * 150}{i}", data=b"") for i in range(40)),
        ],
        NydusOptions(chunk_size=4096, workers=1),
    ),
    "many files": (
        [item("wide", tarfile.DIRTYPE)]
        + [item(f"wide/{'f' * (i % 200)}-{i:05}", data=b"%d" % i) for i in range(3000)],
        NydusOptions(workers=2),
    ),
}


@pytest.mark.parametrize("kind", list(_LAYERS))
def test_layer_read_back_from_its_blob_equals_the_converted_one(kind: str, tmp_path: Path) -> None:
    items, options = _LAYERS[kind]
    layer, blob = _convert(compress(build_tar(items), "gzip"), tmp_path, options)
    back = _read_back(blob, layer.digest)
    assert back == layer
    assert back.blob == layer.blob
    assert back.chunks == layer.chunks
    assert back.blob_meta == layer.blob_meta


@pytest.mark.parametrize("kind", list(_LAYERS))
def test_merge_of_read_back_layers_is_byte_identical(kind: str, tmp_path: Path) -> None:
    items, options = _LAYERS[kind]
    lower, lower_blob = _convert(build_tar(_LOWER), tmp_path, options)
    upper, upper_blob = _convert(build_tar(items), tmp_path, options)
    for layers in ([upper], [lower, upper], [upper, lower]):
        read = [_read_back(lower_blob) if x is lower else _read_back(upper_blob) for x in layers]
        assert _merged(read, options) == _merged(layers, options)


def test_directory_a_layer_only_implies_keeps_the_lower_attributes_after_read_back(
    tmp_path: Path,
) -> None:
    _, lower_blob = _convert(build_tar(_LOWER), tmp_path)
    upper, upper_blob = _convert(build_tar([item("etc/new", data=b"n")]), tmp_path)
    assert _child(upper, b"etc").implicit
    back = _read_back(upper_blob)
    assert _child(back, b"etc").implicit
    path = tmp_path / "boot.tar.gz"
    path.write_bytes(_merged([_read_back(lower_blob), back]))
    with tarfile.open(path) as archive:
        member = archive.extractfile("image/image.boot")
        assert member is not None
        etc = parse_bootstrap(member.read()).tree["/etc"]
    assert (etc.mode & 0o7777, etc.uid, etc.mtime) == (0o750, 7, 1_600_000_000)


def test_equality_sees_attributes_hardlinks_and_implicit_directories(tmp_path: Path) -> None:
    source = build_tar([item("a", data=b"x"), item("b", tarfile.LNKTYPE, link="a"), item("d/f")])
    layer, blob = _convert(source, tmp_path)
    changes: list[Callable[[NydusLayer], None]] = [
        lambda back: setattr(_child(back, b"a"), "uid", 1),
        lambda back: setattr(_child(back, b"d"), "implicit", False),
        lambda back: _children(back).__setitem__(b"b", _copy(_child(back, b"a"))),
        lambda back: setattr(_child(back, b"a"), "first_seq", 1),
        lambda back: back.chunks.seq_to_index.append(0),
    ]
    for change in changes:
        back = _read_back(blob)
        assert back == layer
        change(back)
        assert back != layer


def _children(layer: NydusLayer) -> dict[bytes, Inode]:
    assert layer.root.children is not None
    return layer.root.children


def _child(layer: NydusLayer, name: bytes) -> Inode:
    return _children(layer)[name]


def _copy(inode: Inode) -> Inode:
    return Inode(mode=inode.mode, size=inode.size, chunks=inode.chunks, first_seq=inode.first_seq)


def test_reads_are_two_small_ranges_after_the_chunk_data(tmp_path: Path) -> None:
    totals = []
    for chunk_size in (4096, 1 << 20):
        data = os.urandom(4 * chunk_size)
        # Uncompressed, so that blob.meta has the same size whatever the chunk size.
        options = NydusOptions(chunk_size=chunk_size, compressor="none", workers=2)
        layer, blob = _convert(
            build_tar([item("big", data=data), item("small", data=b"s")]), tmp_path, options
        )
        reads = _Reads(blob)
        assert read_layer(reads, len(blob), layer.digest) == layer
        assert len(reads.ranges) <= 2
        assert all(offset >= layer.blob.ci_offset for offset, _ in reads.ranges)
        totals.append(reads.total)
    assert totals[0] == totals[1]
    assert totals[1] < 64 << 10


def test_every_changed_metadata_byte_is_refused(tmp_path: Path) -> None:
    layer, blob = _convert(
        build_tar([item("d", tarfile.DIRTYPE), item("d/f", data=b"data", uid=3)]), tmp_path
    )
    digest = layer.digest
    for at in range(layer.blob.ci_offset, len(blob)):
        changed = blob[:at] + bytes([blob[at] ^ 0x01]) + blob[at + 1 :]
        with pytest.raises(LayerRejected):
            read_layer(_Reads(changed), len(changed), digest)


def test_chunk_data_is_never_read_so_a_change_there_passes(tmp_path: Path) -> None:
    layer, blob = _convert(build_tar([item("f", data=os.urandom(5000))]), tmp_path)
    changed = bytes([blob[0] ^ 0xFF]) + blob[1:]
    assert _read_back(changed, layer.digest) == layer


@pytest.mark.parametrize("cut", [1, 511, 512, 4096])
def test_truncated_blobs_are_refused(cut: int, tmp_path: Path) -> None:
    layer, blob = _convert(build_tar(every_kind()), tmp_path)
    with pytest.raises(LayerRejected):
        _read_back(blob[:-cut], layer.digest)
    with pytest.raises(LayerRejected):
        _read_back(blob[cut:], layer.digest)


def test_blob_shorter_than_its_declared_size_is_refused(tmp_path: Path) -> None:
    layer, blob = _convert(build_tar(every_kind()), tmp_path)
    with pytest.raises(LayerRejected, match="gave"):
        read_layer(_Reads(blob), len(blob) + 100, layer.digest)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"", "shorter than the TOC's tar header"),
        (os.urandom(10_000), "expected the tar header of 'rafs.blob.toc'"),
        (compress(build_tar(every_kind()), "gzip"), "tar header of 'rafs.blob.toc'"),
        (build_tar([item("rafs.blob.toc", data=bytes(128))]), "the tar header of"),
    ],
)
def test_what_is_not_a_nydus_blob_is_refused(blob: bytes, message: str) -> None:
    with pytest.raises(LayerRejected, match=message):
        _read_back(blob)


def test_malformed_digest_is_refused(tmp_path: Path) -> None:
    _, blob = _convert(build_tar(every_kind()), tmp_path)
    with pytest.raises(LayerRejected, match="is not sha256"):
        read_layer(_Reads(blob), len(blob), "sha512:" + "0" * 64)


# --- hostile bootstraps, sealed with correct TOC digests ------------------------------------


def _reseal(blob: bytes, name: bytes, content: bytes) -> bytes:
    """`blob` with entry `name` replaced by `content` of the same length and its TOC digest
    updated, as a hostile writer would."""
    toc_size = int(blob[-512 + 124 : -512 + 135], 8)
    toc_start = len(blob) - 512 - toc_size
    out = bytearray(blob)
    for at in range(toc_start, toc_start + toc_size, 128):
        if out[at + 8 : at + 24].rstrip(b"\0") == name:
            offset, size = struct.unpack_from("<QQ", out, at + 56)
            assert size == len(content)
            out[offset : offset + size] = content
            out[at + 24 : at + 56] = hashlib.sha256(content).digest()
    return bytes(out)


def _bootstrap(blob: bytes) -> bytes:
    boot = parse_blob(blob).bootstrap
    assert boot is not None
    return boot


def _nid_offset(boot: bytes, nid: int) -> int:
    (meta_blkaddr,) = struct.unpack_from("<I", boot, 1024 + 40)
    return int(meta_blkaddr) * 4096 + 32 * nid


def _inode_end(boot: bytes, nid: int) -> int:
    """Where the inode at `nid` ends (it has no xattrs)."""
    at = _nid_offset(boot, nid)
    return at + (64 if boot[at] & 1 else 32)


def _dirent_nid_at(boot: bytes, directory_nid: int, name: bytes) -> int:
    """Byte offset of the nid of dirent `name` in an inline directory's tail."""
    tail = _inode_end(boot, directory_nid)
    count = struct.unpack_from("<H", boot, tail + 8)[0] // 12
    offsets = [struct.unpack_from("<H", boot, tail + 12 * i + 8)[0] for i in range(count)]
    for i, start in enumerate(offsets):
        end = offsets[i + 1] if i + 1 < count else start + len(name)
        if boot[tail + start : tail + end] == name:
            return tail + 12 * i
    raise AssertionError(f"no dirent {name!r}")


@pytest.mark.parametrize(
    ("dirent", "target", "message"),
    [
        (("/a/b", b".."), "/", "'..' point to"),
        (("/a", b"b"), "/a", "is directory nid .*, which another name already holds"),
        (("/a", b"b"), "/", "is directory nid .*, which another name already holds"),
    ],
)
def test_bootstrap_whose_directories_loop_is_refused(
    tmp_path: Path, dirent: tuple[str, bytes], target: str, message: str
) -> None:
    _, blob = _convert(
        build_tar([item("a", tarfile.DIRTYPE), item("a/b", tarfile.DIRTYPE), item("f", data=b"x")]),
        tmp_path,
    )
    boot = bytearray(_bootstrap(blob))
    tree = parse_bootstrap(bytes(boot)).tree
    directory, name = dirent
    struct.pack_into(
        "<Q", boot, _dirent_nid_at(bytes(boot), tree[directory].nid, name), tree[target].nid
    )
    with pytest.raises(LayerRejected, match=message):
        _read_back(_reseal(blob, b"image.boot", bytes(boot)))


def test_chunk_reference_past_the_chunk_table_is_refused(tmp_path: Path) -> None:
    _, blob = _convert(build_tar([item("f", data=b"x")]), tmp_path)
    boot = bytearray(_bootstrap(blob))
    node = parse_bootstrap(bytes(boot)).tree["/f"]
    at = _inode_end(bytes(boot), node.nid)
    assert struct.unpack_from("<HH", boot, at) == (0, 1)
    struct.pack_into("<H", boot, at, 5)
    with pytest.raises(
        LayerRejected, match=r"is chunk 5 of blob 0; the layer's blob \(index 0\) has 1"
    ):
        _read_back(_reseal(blob, b"image.boot", bytes(boot)))


def test_implicit_entry_naming_a_file_is_refused(tmp_path: Path) -> None:
    _, blob = _convert(build_tar([item("d/f", data=b"x")]), tmp_path)
    assert parse_blob(blob).entries[3].name == "acceld.implicit"
    with pytest.raises(LayerRejected, match="is not a directory with default attributes"):
        _read_back(_reseal(blob, b"acceld.implicit", struct.pack("<II", 0, 2)))


def test_bootstrap_not_as_acceld_writes_it_is_refused(tmp_path: Path) -> None:
    _, blob = _convert(build_tar([item("f", data=b"x")]), tmp_path)
    boot = bytearray(_bootstrap(blob))
    boot[-1] ^= 1
    with pytest.raises(
        LayerRejected, match=r"image\.boot differs from the bootstrap acceld writes"
    ):
        _read_back(_reseal(blob, b"image.boot", bytes(boot)))


def test_mtime_a_bootstrap_cannot_read_back_is_refused_at_conversion(tmp_path: Path) -> None:
    source = build_tar([item("f", data=b"x", pax={"mtime": "9" * 20})])
    with pytest.raises(LayerRejected, match="outside the signed 64-bit range RAFS holds"):
        _convert(source, tmp_path)
