"""A minimum chunk size lets small payloads share gzip members (TOC `innerOffset`)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from converters.estargz import EstargzOptions
from tests.support.estargz_reader import read_estargz
from tests.support.estargz_roundtrip import assert_same_tree, convert_tar, subdir
from tests.support.layer_tars import Item, build_tar, every_kind, item


def _words(seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    vocabulary = [bytes(rng.choices(b"abcdefghij", k=rng.randint(2, 8))) for _ in range(300)]
    return b" ".join(rng.choices(vocabulary, k=size))[:size]


def _small_files(count: int) -> list[Item]:
    return [item(f"lib/f{n:04d}.txt", data=_words(n, 200 + n * 53 % 3000)) for n in range(count)]


def _payload_entries(result_toc: dict[str, object]) -> list[dict[str, object]]:
    entries = result_toc["entries"]
    assert isinstance(entries, list)
    return [e for e in entries if e["type"] in ("reg", "chunk") and e.get("size", 1)]


def test_small_files_share_members_and_read_back_exactly(tmp_path: Path) -> None:
    tar = build_tar([*every_kind(), *_small_files(200)])
    alone = convert_tar(tar, subdir(tmp_path, "alone"))
    shared = convert_tar(tar, subdir(tmp_path, "shared"), EstargzOptions(min_chunk_size=16384))
    assert_same_tree(tar, shared.blob)
    payloads = _payload_entries(shared.blob.toc)
    assert any(e.get("innerOffset") for e in payloads)
    assert not any(e.get("innerOffset") for e in _payload_entries(alone.blob.toc))
    assert len(shared.blob.members) < len(alone.blob.members) // 4
    assert shared.layer.size < alone.layer.size


def test_a_member_fills_to_the_minimum_before_the_next_one_starts(tmp_path: Path) -> None:
    minimum = 8192
    tar = build_tar(_small_files(120))
    result = convert_tar(tar, tmp_path, EstargzOptions(min_chunk_size=minimum))
    sizes = [m.uncompressed_size for m in result.blob.members]
    # Every member but the first (landmark), the last payload one, the TOC and the footer
    # holds at least the minimum: a payload only opens a new member once that is reached.
    assert all(size >= minimum for size in sizes[1:-3]), sizes


def test_the_landmark_keeps_its_own_member_so_the_prefetch_range_stays_exact(
    tmp_path: Path,
) -> None:
    tar = build_tar(_small_files(60))
    options = EstargzOptions(
        min_chunk_size=1 << 20, prioritized_files=("lib/f0007.txt", "lib/f0003.txt")
    )
    result = convert_tar(tar, tmp_path, options)
    entries = result.blob.toc["entries"]
    landmark = next(e for e in entries if e["name"] == ".prefetch.landmark")
    assert "innerOffset" not in landmark
    before = [e for e in entries[: entries.index(landmark)] if e["type"] == "reg"]
    assert [e["name"] for e in before] == ["lib/f0007.txt", "lib/f0003.txt"]
    assert all(e.get("offset", 0) < landmark["offset"] for e in before)
    after = [e for e in entries[entries.index(landmark) + 1 :] if e["type"] == "reg"]
    assert all(e["offset"] == landmark["offset"] for e in after), "one member after the landmark"


def test_chunks_of_a_big_file_share_members_below_the_minimum(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40
    tar = build_tar([item("big", data=data)])
    result = convert_tar(tar, tmp_path, EstargzOptions(chunk_size=1000, min_chunk_size=4000))
    assert_same_tree(tar, result.blob)
    chunks = [e for e in result.blob.toc["entries"] if e["name"] == "big"]
    assert len(chunks) == 11
    assert 1 < len({c["offset"] for c in chunks}) < len(chunks)


@pytest.mark.parametrize("workers", [2, 3])
def test_shared_members_do_not_depend_on_worker_count(tmp_path: Path, workers: int) -> None:
    tar = build_tar([*every_kind(), *_small_files(150)])
    one = EstargzOptions(min_chunk_size=10_000, workers=1)
    many = EstargzOptions(min_chunk_size=10_000, workers=workers)
    single = convert_tar(tar, subdir(tmp_path, "1"), one)
    parallel = convert_tar(tar, subdir(tmp_path, "n"), many)
    assert single.path.read_bytes() == parallel.path.read_bytes()
    assert single.layer == parallel.layer


def test_the_reader_refuses_shared_members_unless_told_to_expect_them(tmp_path: Path) -> None:
    tar = build_tar(_small_files(20))
    result = convert_tar(tar, tmp_path, EstargzOptions(min_chunk_size=4096))
    with pytest.raises(AssertionError, match="innerOffset"):
        read_estargz(
            result.path,
            toc_digest=result.layer.toc_digest,
            uncompressed_size=result.layer.uncompressed_size,
        )


def test_negative_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="min_chunk_size must be 0 or more"):
        EstargzOptions(min_chunk_size=-1)
