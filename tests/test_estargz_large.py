"""Big layers: many small files, one file far larger than a chunk, memory that stays flat."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from converters.estargz import EstargzOptions, convert_layer
from tests.support.estargz_reader import layer_tree, read_estargz
from tests.support.synthetic_layers import (
    text_pool,
    write_single_file_layer,
    write_small_files_layer,
)

ROOT = Path(__file__).resolve().parents[1]


def convert_file(source: Path, dest: Path, work: Path, options: EstargzOptions) -> None:
    with source.open("rb") as src, dest.open("wb") as out:
        layer = convert_layer(src, out, options, work)
    blob = read_estargz(
        dest, toc_digest=layer.toc_digest, uncompressed_size=layer.uncompressed_size
    )
    with gzip.open(source, "rb") as original_stream:
        original, _ = layer_tree(original_stream)  # type: ignore[arg-type]
    assert blob.tree == original
    assert list(work.iterdir()) == []


@pytest.mark.slow
def test_twenty_thousand_small_files_round_trip(tmp_path: Path) -> None:
    source = tmp_path / "small.tar.gz"
    write_small_files_layer(source, 20_000, text_pool())
    work = tmp_path / "work"
    work.mkdir()
    convert_file(source, tmp_path / "small.esgz", work, EstargzOptions(compression_level=1))


@pytest.mark.slow
def test_300_mib_file_round_trips_in_chunks_with_flat_memory(tmp_path: Path) -> None:
    source = tmp_path / "big.tar.gz"
    write_single_file_layer(source, 300 << 20, text_pool())
    work = tmp_path / "work"
    work.mkdir()
    dest = tmp_path / "big.esgz"
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from converters.estargz import EstargzOptions, convert_layer\n"
        "from tests.support.process_memory import peak_rss_kib\n"
        "src, dst, work = map(Path, sys.argv[1:4])\n"
        "with src.open('rb') as s, dst.open('wb') as d:\n"
        "    layer = convert_layer(s, d, EstargzOptions(compression_level=1), work)\n"
        "print(layer.toc_digest, layer.uncompressed_size,"
        " peak_rss_kib())\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(source), str(dest), str(work)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    toc_digest, uncompressed, max_rss_kib = run.stdout.split()
    assert int(max_rss_kib) < 128 << 10, f"peak RSS {int(max_rss_kib) >> 10} MiB"
    blob = read_estargz(dest, toc_digest=toc_digest, uncompressed_size=int(uncompressed))
    chunks = [e for e in blob.toc["entries"] if e["name"] == "data/big.bin"]
    assert len(chunks) == 75
    with gzip.open(source, "rb") as original_stream:
        original, _ = layer_tree(original_stream)  # type: ignore[arg-type]
    assert blob.tree == original
    assert list(work.iterdir()) == []
