"""Bad layers give a terminal LayerRejected that says what and where, and leave nothing behind."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from converters.errors import LayerRejected
from converters.estargz import EstargzOptions, convert_layer
from converters.limits import LayerLimits
from harbor_api.errors import AcceldError
from tests.support.layer_tars import Item, build_tar, compress, every_kind, item


def reject(data: bytes, tmp_path: Path, options: EstargzOptions | None = None) -> str:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    dest = io.BytesIO()
    with pytest.raises(LayerRejected) as caught:
        convert_layer(io.BytesIO(data), dest, options or EstargzOptions(), work)
    assert list(work.iterdir()) == [], "spill files left behind after a rejection"
    assert dest.getvalue() == b"", "a rejected layer wrote output"
    assert isinstance(caught.value, AcceldError)
    return str(caught.value)


def good_tar() -> bytes:
    return build_tar(every_kind())


def test_corrupt_gzip_is_rejected(tmp_path: Path) -> None:
    data = bytearray(compress(good_tar(), "gzip"))
    data[len(data) // 2 : len(data) // 2 + 16] = b"\xff" * 16
    assert "corrupt gzip stream" in reject(bytes(data), tmp_path)


def test_truncated_gzip_is_rejected_with_its_offset(tmp_path: Path) -> None:
    data = compress(good_tar(), "gzip")
    message = reject(data[: len(data) - 20], tmp_path)
    assert "truncated gzip stream after" in message


def test_corrupt_zstd_is_rejected(tmp_path: Path) -> None:
    data = bytearray(compress(good_tar(), "zstd"))
    data[20:40] = b"\x00" * 20
    assert "corrupt zstd stream after 0 decompressed bytes" in reject(bytes(data), tmp_path)


def test_truncated_zstd_is_rejected_as_a_truncated_tar(tmp_path: Path) -> None:
    data = compress(good_tar(), "zstd")
    assert "truncated tar stream" in reject(data[: len(data) // 2], tmp_path)


def test_plain_tar_cut_inside_a_payload_names_the_entry(tmp_path: Path) -> None:
    tar = build_tar([item("first", data=b"a" * 2000), item("second", data=b"b" * 5000)])
    message = reject(tar[:4000], tmp_path)
    assert "truncated tar stream" in message
    assert "'second'" in message


def test_tar_without_end_marker_is_truncated(tmp_path: Path) -> None:
    tar = build_tar([item("only", data=b"x")])
    assert "end-of-archive" in reject(tar[:1024], tmp_path)


@pytest.mark.parametrize("data", [b"", b"hello, this is not a tar archive\n" * 40])
def test_non_tar_input_is_rejected(tmp_path: Path, data: bytes) -> None:
    message = reject(data, tmp_path)
    assert "not a tar stream" in message or "truncated tar stream" in message


def test_absolute_path_is_rejected_with_offset(tmp_path: Path) -> None:
    tar = build_tar([item("ok", data=b"x"), item("/etc/passwd", data=b"root")])
    message = reject(tar, tmp_path)
    assert "absolute path '/etc/passwd'" in message
    assert "offset 1024" in message


def test_empty_entry_name_is_rejected(tmp_path: Path) -> None:
    assert "empty name" in reject(build_tar([item("", data=b"x")]), tmp_path)


def test_dot_dot_component_is_rejected(tmp_path: Path) -> None:
    assert "'..' component" in reject(build_tar([item("a/../../etc/x", data=b"x")]), tmp_path)


def test_hardlink_to_a_later_entry_is_rejected(tmp_path: Path) -> None:
    tar = build_tar([item("link", tarfile.LNKTYPE, link="target"), item("target", data=b"x")])
    assert "not earlier in the layer" in reject(tar, tmp_path)


def test_hardlink_escaping_with_dot_dot_is_rejected(tmp_path: Path) -> None:
    tar = build_tar([item("link", tarfile.LNKTYPE, link="../etc/shadow")])
    assert "'..' component" in reject(tar, tmp_path)


def test_symlink_cycle_is_rejected_with_its_chain(tmp_path: Path) -> None:
    tar = build_tar(
        [
            item("a", tarfile.SYMTYPE, link="b"),
            item("b", tarfile.SYMTYPE, link="/c"),
            item("c", tarfile.SYMTYPE, link="./a"),
        ]
    )
    assert "symlink loop in the layer: 'a' -> 'b' -> 'c'" in reject(tar, tmp_path)


def test_symlink_through_its_own_directory_is_a_loop(tmp_path: Path) -> None:
    tar = build_tar([item("d", tarfile.SYMTYPE, link="d/x")])
    assert "symlink loop" in reject(tar, tmp_path)


def test_gzip_bomb_over_the_ratio_limit_is_rejected(tmp_path: Path) -> None:
    data = compress(build_tar([item("zeros", data=bytes(8 << 20))]), "gzip")
    options = EstargzOptions(limits=LayerLimits(max_compression_ratio=50))
    assert "compression ratio exceeds the limit of 50" in reject(data, tmp_path, options)


def test_layer_over_the_size_limit_is_rejected(tmp_path: Path) -> None:
    noise = bytes((n * 7919 >> 3) % 251 for n in range(1 << 16))
    data = compress(build_tar([item("big", data=noise * 48)]), "zstd")
    options = EstargzOptions(limits=LayerLimits(max_uncompressed_size=2 << 20))
    assert "decompressed size exceeds the limit of 2097152" in reject(data, tmp_path, options)


def test_huge_pax_header_is_rejected(tmp_path: Path) -> None:
    tar = build_tar([item("f", data=b"x", pax={"comment": "c" * (2 << 20)})])
    message = reject(tar, tmp_path)
    assert "extended header of" in message
    assert "exceeds the limit of 1048576 bytes" in message


def test_too_many_entries_are_rejected(tmp_path: Path) -> None:
    tar = build_tar([item(f"f{n}") for n in range(6)])
    options = EstargzOptions(limits=LayerLimits(max_entries=5))
    message = reject(tar, tmp_path, options)
    assert "more than 5 entries" in message
    assert "'f5'" in message


def test_global_pax_header_is_rejected(tmp_path: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(
        fileobj=out, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "global"}
    ) as archive:
        archive.addfile(tarfile.TarInfo("f"), io.BytesIO())
    assert "global PAX headers are not supported" in reject(out.getvalue(), tmp_path)


def test_sparse_file_is_rejected(tmp_path: Path) -> None:
    tar = build_tar([item("sparse", data=b"x", pax={"GNU.sparse.major": "1"})])
    assert "sparse files are not supported" in reject(tar, tmp_path)


def test_corrupt_header_checksum_names_the_offset(tmp_path: Path) -> None:
    tar = bytearray(build_tar([item("a", data=b"x"), item("b", data=b"y")]))
    tar[1024 + 10] ^= 0x55
    assert "corrupt tar header at offset 1024" in reject(bytes(tar), tmp_path)


@pytest.mark.parametrize(
    "kwargs",
    [{"chunk_size": 0}, {"compression_level": 10}, {"workers": 0}],
)
def test_invalid_options_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be"):
        EstargzOptions(**kwargs)  # type: ignore[arg-type]


# What the Go eStargz reader needs: hardlinks in the final order, numbers, UTF-8 names.


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (
            [item("h", data=b"x"), item("h", tarfile.LNKTYPE, link="h")],
            "hardlink 'h' points to 'h', itself",
        ),
        (
            [
                item("a", data=b"a"),
                item("b", data=b"b"),
                item("a", tarfile.LNKTYPE, link="b"),
                item("b", tarfile.LNKTYPE, link="a"),
            ],
            "hardlink 'a' points to 'b', which is not earlier in the final entry order",
        ),
        (
            [
                item("t", data=b"x"),
                item("t", tarfile.SYMTYPE, link="elsewhere"),
                item("l", tarfile.LNKTYPE, link="t"),
            ],
            "hardlink 'l' points to 't', which is a symlink",
        ),
        (
            [item("d", tarfile.DIRTYPE, mode=0o755), item("l", tarfile.LNKTYPE, link="d")],
            "hardlink 'l' points to 'd', which is a directory",
        ),
        (
            [
                item("f", data=b"x"),
                item("l1", tarfile.LNKTYPE, link="f"),
                item("l2", tarfile.LNKTYPE, link="l1"),
            ],
            "hardlink 'l2' points to 'l1', which is another hardlink",
        ),
    ],
    ids=["self-link", "cycle", "target-became-symlink", "to-directory", "to-hardlink"],
)
def test_hardlink_not_to_an_earlier_regular_file_in_final_order_is_rejected(
    tmp_path: Path, items: list[Item], expected: str
) -> None:
    message = reject(build_tar(items), tmp_path)
    assert expected in message
    assert "must be a regular file earlier in the layer" in message


def test_prioritized_hardlink_still_finds_its_target_first(tmp_path: Path) -> None:
    tar = build_tar([item("f", data=b"x"), item("l", tarfile.LNKTYPE, link="f")])
    options = EstargzOptions(prioritized_files=("l",))
    convert_layer(io.BytesIO(tar), io.BytesIO(), options, tmp_path)


@pytest.mark.parametrize(
    ("pax", "field"),
    [
        ({"uid": "1" + "0" * 40}, "uid 1000000000…(41 digits)"),
        ({"gid": "2147483648"}, "gid 2147483648"),
        ({"uid": "-1"}, "uid -1"),
        ({"mtime": "253402300800"}, "mtime 253402300800"),
        ({"mtime": "-62135596801.5"}, "mtime -62135596801"),
    ],
)
def test_number_a_go_reader_cannot_represent_is_rejected_naming_the_entry(
    tmp_path: Path, pax: dict[str, str], field: str
) -> None:
    tar = build_tar([item("ok", data=b"x"), item("etc/odd", data=b"y", pax=pax)])
    message = reject(tar, tmp_path)
    assert f"tar entry at offset 2048: {field} of 'etc/odd' is outside" in message


def test_device_number_over_go_int32_is_rejected(tmp_path: Path) -> None:
    tar = build_tar([item("dev/big", tarfile.CHRTYPE, dev=(1 << 31, 0))], tarfile.GNU_FORMAT)
    assert "devmajor 2147483648 of 'dev/big' is outside 0..2147483647" in reject(tar, tmp_path)


def test_largest_representable_numbers_convert(tmp_path: Path) -> None:
    tar = build_tar(
        [
            item("f", data=b"x", uid=(1 << 31) - 1, gid=(1 << 31) - 1, mtime=253402300799),
            item("dev/c", tarfile.CHRTYPE, dev=((1 << 31) - 1, (1 << 31) - 1)),
        ],
        tarfile.GNU_FORMAT,
    )
    convert_layer(io.BytesIO(tar), io.BytesIO(), EstargzOptions(), tmp_path)


def test_names_differing_only_in_invalid_utf8_are_rejected(tmp_path: Path) -> None:
    tar = build_tar(
        [item("a\udcff", data=b"first"), item("a\udcfe", data=b"second")], tarfile.USTAR_FORMAT
    )
    message = reject(tar, tmp_path)
    assert "entry name 'a\ufffd' is not valid UTF-8 (byte 0xff at 1)" in message
    assert "offset 0" in message


def test_symlink_target_in_invalid_utf8_is_rejected(tmp_path: Path) -> None:
    tar = build_tar([item("s", tarfile.SYMTYPE, link="caf\udce9")], tarfile.USTAR_FORMAT)
    assert "link target of 's' is not valid UTF-8" in reject(tar, tmp_path)


def test_xattr_name_in_invalid_utf8_is_rejected(tmp_path: Path) -> None:
    # tarfile writes PAX keys as strict UTF-8: the invalid bytes go in afterwards.
    tar = build_tar([item("f", data=b"x", pax={"SCHILY.xattr.user.@@": "v"})])
    tar = tar.replace(b"user.@@", b"user.\xff\xfe")
    assert "xattr name of 'f' is not valid UTF-8" in reject(tar, tmp_path)


# Bounded metadata: every header byte counts, per entry and per layer, before it is kept.


def test_chained_pax_headers_over_the_entry_metadata_limit_are_rejected(tmp_path: Path) -> None:
    info = tarfile.TarInfo("f")
    info.pax_headers = {"comment": "c" * (900 << 10)}
    pax_header = info.tobuf(tarfile.PAX_FORMAT)[: -tarfile.BLOCKSIZE]
    # Each header is under max_pax_header_size; three of them before one entry are not.
    tar = pax_header * 3 + tarfile.TarInfo("f").tobuf(tarfile.PAX_FORMAT) + bytes(1024)
    message = reject(tar, tmp_path)
    assert "take more than 2097152 bytes (limit max_entry_metadata)" in message


def test_xattrs_over_the_layer_metadata_limit_are_rejected(tmp_path: Path) -> None:
    value = b"v" * (256 << 10)
    tar = build_tar([item(f"f{n}", binary_pax={"SCHILY.xattr.user.big": value}) for n in range(16)])
    options = EstargzOptions(limits=LayerLimits(max_layer_metadata=2 << 20))
    message = reject(tar, tmp_path, options)
    assert "take more than 2097152 bytes (limit max_layer_metadata)" in message
    assert "entries so far" in message


def test_many_empty_entries_over_the_layer_metadata_limit_are_rejected(tmp_path: Path) -> None:
    tar = build_tar([item(f"e{n}") for n in range(3000)])
    options = EstargzOptions(limits=LayerLimits(max_layer_metadata=1 << 20))
    assert "(limit max_layer_metadata)" in reject(tar, tmp_path, options)
