"""Members written while the layer is still read give the same blob as two passes.

A seekable destination without prioritized files takes the early path; an unseekable one
always takes two passes, so comparing the two shows the early path changes no byte.
"""

from __future__ import annotations

import io
import random
import tarfile
import tempfile
from pathlib import Path
from typing import BinaryIO, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from converters import early_blob, estargz_blob
from converters.errors import LayerRejected
from converters.estargz import EstargzOptions, convert_layer
from tests.support.estargz_reader import EstargzBlob, read_estargz
from tests.support.layer_tars import Item, build_tar, compress, every_kind, item


class _Unseekable(io.RawIOBase):
    def __init__(self, target: BinaryIO) -> None:
        self._target = target

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data: bytes) -> int:  # type: ignore[override]
        return self._target.write(data)


def _convert(
    tar: bytes, dest: Path, work: Path, options: EstargzOptions, *, early: bool
) -> tuple[bytes, EstargzBlob]:
    work.mkdir(exist_ok=True)
    with dest.open("wb") as out:
        target = out if early else cast(BinaryIO, _Unseekable(out))
        layer = convert_layer(io.BytesIO(compress(tar, "gzip")), target, options, work)
    assert list(work.iterdir()) == [], "temporary files left in the work directory"
    blob = read_estargz(
        dest,
        toc_digest=layer.toc_digest,
        uncompressed_size=layer.uncompressed_size,
        shared_members=options.min_chunk_size > 0,
    )
    return dest.read_bytes(), blob


def _files(count: int, size: int, seed: int = 1) -> list[Item]:
    rng = random.Random(seed)
    return [item(f"f/{n:05d}", data=rng.randbytes(size)) for n in range(count)]


@pytest.mark.parametrize("min_chunk_size", [0, 64 << 10])
def test_early_and_two_pass_blobs_are_identical(tmp_path: Path, min_chunk_size: int) -> None:
    tar = build_tar([*every_kind(), *_files(1500, 700)])
    options = EstargzOptions(min_chunk_size=min_chunk_size, workers=2)
    early, _ = _convert(tar, tmp_path / "early", tmp_path / "w1", options, early=True)
    two_pass, _ = _convert(tar, tmp_path / "two", tmp_path / "w2", options, early=False)
    assert early == two_pass


@pytest.mark.parametrize("early", [True, False])
def test_entries_reach_the_blob_writer_before_the_layer_is_read_to_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, early: bool
) -> None:
    # 20 MB of incompressible files: the source is read in blocks of up to 8 MiB on a thread,
    # so a smaller one would be read whole before the first entry is parsed.
    source = io.BytesIO(compress(build_tar(_files(10_000, 2000)), "gzip"))
    read_at_first_add: list[int] = []

    class SpyWriter(estargz_blob.BlobWriter):
        def add(self, entries: list[estargz_blob.SpilledEntry]) -> None:
            if not read_at_first_add:
                read_at_first_add.append(source.tell())
            super().add(entries)

    monkeypatch.setattr(early_blob, "BlobWriter", SpyWriter)
    monkeypatch.setattr(estargz_blob, "BlobWriter", SpyWriter)
    work = tmp_path / "work"
    work.mkdir()
    with (tmp_path / "out").open("wb") as out:
        target = out if early else _Unseekable(out)
        options = EstargzOptions(workers=2, compression_level=1)
        convert_layer(source, cast(BinaryIO, target), options, work)
    (position,) = read_at_first_add
    assert (position < len(source.getvalue()) // 2) is early


def test_a_name_repeated_after_its_first_copy_was_written_falls_back_to_two_passes(
    tmp_path: Path,
) -> None:
    first = item("etc/app.conf", data=b"old\n")
    later = item("etc/app.conf", data=b"new contents\n", mode=0o600)
    items = [item("etc", tarfile.DIRTYPE, mode=0o755), first, *_files(1200, 2000), later]
    tar = build_tar(items)
    options = EstargzOptions(workers=2)
    early, blob = _convert(tar, tmp_path / "early", tmp_path / "w1", options, early=True)
    two_pass, _ = _convert(tar, tmp_path / "two", tmp_path / "w2", options, early=False)
    assert early == two_pass
    assert blob.order[-2] == "etc/app.conf", "the later copy keeps its later position"
    assert blob.order.count("etc/app.conf") == 1
    assert blob.tree["etc/app.conf"].size == len(b"new contents\n")


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (
            [item("loop/a", tarfile.SYMTYPE, link="b"), item("loop/b", tarfile.SYMTYPE, link="a")],
            "symlink loop",
        ),
        ([item("/abs", data=b"x")], "absolute"),
    ],
)
def test_a_layer_rejected_after_members_were_written_leaves_dest_empty(
    tmp_path: Path, tail: list[Item], message: str
) -> None:
    tar = build_tar([*_files(1500, 1500), *tail])
    work = tmp_path / "work"
    work.mkdir()
    dest = tmp_path / "out"
    with dest.open("wb") as out, pytest.raises(LayerRejected, match=message):
        convert_layer(io.BytesIO(compress(tar, "gzip")), out, EstargzOptions(workers=2), work)
    assert dest.read_bytes() == b""
    assert list(work.iterdir()) == []


def test_a_stream_cut_after_members_were_written_leaves_dest_empty(tmp_path: Path) -> None:
    tar = build_tar(_files(1500, 1500))
    work = tmp_path / "work"
    work.mkdir()
    dest = io.BytesIO()
    with pytest.raises(LayerRejected, match="truncated"):
        convert_layer(io.BytesIO(tar[: len(tar) * 3 // 4]), dest, EstargzOptions(workers=2), work)
    assert dest.getvalue() == b""
    assert list(work.iterdir()) == []


_SIZES = st.sampled_from([0, 1, 511, 4096, 70_000])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(_SIZES, min_size=1, max_size=40),
    repeat=st.booleans(),
    min_chunk_size=st.sampled_from([0, 10_000]),
)
def test_random_layers_give_the_same_bytes_both_ways(
    sizes: list[int], repeat: bool, min_chunk_size: int
) -> None:
    items = [item(f"d/{n}", data=bytes([n % 256]) * size) for n, size in enumerate(sizes)]
    if repeat:
        items.append(item("d/0", data=b"again"))
    tar = build_tar(items)
    options = EstargzOptions(chunk_size=30_000, min_chunk_size=min_chunk_size, workers=2)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        early, _ = _convert(tar, root / "early", root / "w1", options, early=True)
        two_pass, _ = _convert(tar, root / "two", root / "w2", options, early=False)
    assert early == two_pass
