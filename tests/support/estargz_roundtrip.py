"""Convert a tar with the converter and read the result back with the independent reader."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from converters.estargz import ConvertedLayer, EstargzOptions, convert_layer
from tests.support.estargz_reader import EstargzBlob, layer_tree, read_estargz
from tests.support.layer_tars import compress


@dataclass(frozen=True)
class RoundTrip:
    layer: ConvertedLayer
    blob: EstargzBlob
    path: Path


def subdir(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir()
    return path


def convert_tar(
    tar: bytes, tmp_path: Path, options: EstargzOptions | None = None, compression: str = "gzip"
) -> RoundTrip:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    path = tmp_path / f"out-{compression}.esgz"
    with path.open("wb") as dest:
        layer = convert_layer(
            io.BytesIO(compress(tar, compression)), dest, options or EstargzOptions(), work
        )
    assert list(work.iterdir()) == [], "spill files left in the work directory"
    blob = read_estargz(
        path,
        toc_digest=layer.toc_digest,
        uncompressed_size=layer.uncompressed_size,
        shared_members=bool(options and options.min_chunk_size),
    )
    assert path.stat().st_size == layer.size
    assert blob.diff_id == layer.diff_id
    return RoundTrip(layer, blob, path)


def assert_same_tree(tar: bytes, converted: EstargzBlob) -> None:
    original, _ = layer_tree(io.BytesIO(tar))
    original = {
        name: entry
        for name, entry in original.items()
        if name not in (".prefetch.landmark", ".no.prefetch.landmark", "stargz.index.json")
    }
    assert sorted(converted.tree) == sorted(original)
    for name, entry in original.items():
        assert converted.tree[name] == entry, name
