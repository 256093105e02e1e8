"""The converter keeps every entry and attribute, in the byte layout eStargz readers expect."""

from __future__ import annotations

import base64
import hashlib
import tarfile
from pathlib import Path

import pytest
import zstandard

from converters.estargz import EstargzOptions
from tests.support.estargz_reader import walk_members
from tests.support.estargz_roundtrip import assert_same_tree, convert_tar, subdir
from tests.support.layer_tars import CAPABILITY, build_tar, every_kind, item


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_every_entry_kind_survives_from_each_source_compression(
    tmp_path: Path, compression: str
) -> None:
    tar = build_tar(every_kind())
    result = convert_tar(tar, tmp_path, compression=compression)
    assert_same_tree(tar, result.blob)
    toc = {entry["name"]: entry for entry in result.blob.toc["entries"]}
    assert base64.b64decode(toc["bin/ping"]["xattrs"]["security.capability"]) == CAPABILITY
    assert toc["dev/null"]["devMajor"] == 1
    assert toc["dev/null"]["devMinor"] == 3
    assert toc["bin/hard"]["linkName"] == "bin/ping"
    assert toc["home/app/empty"]["digest"] == "sha256:" + hashlib.sha256(b"").hexdigest()
    assert "offset" not in toc["home/app/empty"]
    assert toc["home/app/"]["userName"] == "app"
    assert "userName" not in toc["home/app/empty"], "userName repeats only when it changes"
    assert toc["old-time"].get("modtime") is None
    assert toc["future"]["modtime"] == "2100-01-01T00:00:00Z"


def test_source_compression_does_not_change_the_output(tmp_path: Path) -> None:
    tar = build_tar(every_kind())
    digests = {
        convert_tar(tar, tmp_path, compression=compression).layer.digest
        for compression in ("gzip", "zstd", "none")
    }
    assert len(digests) == 1


def test_gnu_long_names_survive(tmp_path: Path) -> None:
    items = [
        item("g" * 130 + "/file", data=b"gnu long name"),
        item("short-link", tarfile.SYMTYPE, link="l" * 140),
    ]
    tar = build_tar(items, tarfile.GNU_FORMAT)
    assert b"././@LongLink" in tar
    assert_same_tree(tar, convert_tar(tar, tmp_path).blob)


def test_big_file_is_split_into_chunk_members(tmp_path: Path) -> None:
    data = bytes(range(256)) * 100 + b"tail"
    tar = build_tar([item("big", data=data), item("exact", data=b"e" * 1000)])
    result = convert_tar(tar, tmp_path, EstargzOptions(chunk_size=1000))
    assert_same_tree(tar, result.blob)
    chunks = [e for e in result.blob.toc["entries"] if e["name"] == "big"]
    assert [c["type"] for c in chunks] == ["reg"] + ["chunk"] * 25
    assert [c.get("chunkOffset", 0) for c in chunks] == list(range(0, 26000, 1000))
    assert all(c["chunkSize"] == 1000 for c in chunks[:-1])
    assert "chunkSize" not in chunks[-1]
    exact = [e for e in result.blob.toc["entries"] if e["name"] == "exact"]
    assert exact[0]["chunkSize"] == 1000, "a file of exactly one chunk keeps chunkSize"
    assert len({c["offset"] for c in chunks}) == 26


def test_without_prioritized_files_the_no_prefetch_landmark_comes_first(tmp_path: Path) -> None:
    result = convert_tar(build_tar(every_kind()), tmp_path)
    assert result.blob.order[0] == ".no.prefetch.landmark"
    assert ".prefetch.landmark" not in result.blob.order


def test_prioritized_files_come_first_with_parents_and_hardlink_targets(tmp_path: Path) -> None:
    tar = build_tar(every_kind())
    options = EstargzOptions(prioritized_files=("/home/app/empty", "bin/hard", "not/there"))
    result = convert_tar(tar, tmp_path, options)
    assert result.blob.order[:7] == (
        "",
        "home",
        "home/app",
        "home/app/empty",
        "bin",
        "bin/ping",
        "bin/hard",
    )
    assert result.blob.order[7] == ".prefetch.landmark"
    assert_same_tree(tar, result.blob)


def test_only_missing_prioritized_files_give_the_no_prefetch_landmark(tmp_path: Path) -> None:
    options = EstargzOptions(prioritized_files=("missing",))
    result = convert_tar(build_tar(every_kind()), tmp_path, options)
    assert result.blob.order[0] == ".no.prefetch.landmark"


def test_later_duplicate_replaces_earlier_and_takes_its_position(tmp_path: Path) -> None:
    tar = build_tar(
        [
            item("a", data=b"first"),
            item("b", data=b"b"),
            item("a", data=b"second", mode=0o600),
        ]
    )
    result = convert_tar(tar, tmp_path)
    assert result.blob.order[1:3] == ("b", "a")
    assert_same_tree(tar, result.blob)


def test_converting_an_estargz_blob_again_drops_its_landmark_and_toc(tmp_path: Path) -> None:
    tar = build_tar(every_kind())
    first = convert_tar(tar, subdir(tmp_path, "one"))
    again = convert_tar(first.path.read_bytes(), subdir(tmp_path, "two"), compression="none")
    assert again.blob.order.count("stargz.index.json") == 1
    assert again.layer.toc_digest == first.layer.toc_digest
    assert again.blob.tree == first.blob.tree


@pytest.mark.parametrize("workers", [2, 4])
def test_output_bytes_do_not_depend_on_worker_count(tmp_path: Path, workers: int) -> None:
    items = [*every_kind()] + [
        item(f"files/{n}", data=bytes([n % 251]) * (n * 37 % 5000)) for n in range(300)
    ]
    tar = build_tar(items)
    single = convert_tar(tar, subdir(tmp_path, "1"), EstargzOptions(chunk_size=2048, workers=1))
    many = convert_tar(tar, subdir(tmp_path, "n"), EstargzOptions(chunk_size=2048, workers=workers))
    assert single.path.read_bytes() == many.path.read_bytes()
    assert single.layer == many.layer


def test_every_gzip_member_has_zero_mtime_and_unknown_os(tmp_path: Path) -> None:
    result = convert_tar(build_tar(every_kind()), tmp_path)
    with result.path.open("rb") as blob:
        for member, _ in walk_members(result.path):
            blob.seek(member.offset)
            header = blob.read(10)
            assert header[4:8] == b"\x00\x00\x00\x00"
            assert header[9] == 0xFF


def test_annotations_name_the_toc_digest_and_uncompressed_size(tmp_path: Path) -> None:
    result = convert_tar(build_tar(every_kind()), tmp_path)
    assert result.layer.annotations() == {
        "containerd.io/snapshot/stargz/toc.digest": result.blob.toc_digest,
        "io.containers.estargz.uncompressed-size": str(result.blob.uncompressed_size),
    }


def test_zstd_source_of_several_frames_is_read_to_the_end(tmp_path: Path) -> None:
    tar = build_tar(every_kind())
    frames = b"".join(
        zstandard.ZstdCompressor().compress(tar[start : start + 1536])
        for start in range(0, len(tar), 1536)
    )
    result = convert_tar(frames, tmp_path, compression="none")
    assert_same_tree(tar, result.blob)
