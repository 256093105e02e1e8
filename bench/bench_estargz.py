"""Benchmark the eStargz converter against the raw codec work on the same bytes.

For a 300 MiB single-file layer and a 20,000-small-file layer it reports conversion throughput
(uncompressed MB/s) and the ratio to a baseline measured in the same run: decompress the source
with the same inflater, then deflate the converted uncompressed stream at the same level with
the same number of threads (4 MiB pieces). It also reports peak RSS converting 256 MiB and
1 GiB layers (each in its own process, VmHWM) and the output size against `gzip -9` of the
same tar. Timings are the best of `--repeat` interleaved runs, because a shared machine is
noisy; CPU seconds (all threads) are reported beside wall time for the same reason.

Layers of many small files are measured once per `--min-chunk-size` (default: 0, the one
member per file that every reader understands, and 256KiB); `--tree DIR` adds a layer built
from a real directory, such as /usr/lib/python3.11.

    python bench/bench_estargz.py [--repeat 2] [--skip-rss] [--workers N]
                                  [--min-chunk-size SIZE ...] [--tree DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from isal import igzip, isal_zlib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from converters.estargz import EstargzOptions, convert_layer  # noqa: E402
from policies.quantities import parse_size  # noqa: E402
from tests.support.synthetic_layers import (  # noqa: E402
    text_pool,
    write_single_file_layer,
    write_small_files_layer,
)

_PIECE = 4 << 20
_RSS_SCRIPT = """
import sys
from pathlib import Path
from converters.estargz import EstargzOptions, convert_layer
from tests.support.process_memory import peak_rss_kib
src, dst, work = map(Path, sys.argv[1:4])
with src.open("rb") as s, dst.open("wb") as d:
    convert_layer(s, d, EstargzOptions(workers=int(sys.argv[4])), work)
print(peak_rss_kib())
"""


@dataclass(frozen=True)
class Throughput:
    layer: str
    min_chunk_size: int
    tar_bytes: int
    convert_seconds: float
    baseline_seconds: float
    convert_cpu_seconds: float
    baseline_cpu_seconds: float
    output_bytes: int
    gzip9_bytes: int

    def row(self) -> dict[str, object]:
        mb = self.tar_bytes / 1e6
        return {
            "layer": self.layer,
            "min_chunk_size": self.min_chunk_size,
            "tar_MB": round(mb, 1),
            "convert_MB_per_s": round(mb / self.convert_seconds, 1),
            "baseline_MB_per_s": round(mb / self.baseline_seconds, 1),
            "ratio_to_baseline": round(self.convert_seconds / self.baseline_seconds, 3),
            "cpu_ratio_to_baseline": round(self.convert_cpu_seconds / self.baseline_cpu_seconds, 3),
            "size_vs_gzip9": round(self.output_bytes / self.gzip9_bytes, 4),
        }


def _timed(run: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of all threads of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def _convert(source: Path, dest: Path, work: Path, workers: int, min_chunk_size: int) -> None:
    options = EstargzOptions(workers=workers, min_chunk_size=min_chunk_size)
    with source.open("rb") as src, dest.open("wb") as out:
        convert_layer(src, out, options, work)


def _baseline(source: Path, converted_tar: Path, workers: int) -> None:
    with igzip.open(source, "rb") as inflated:
        while inflated.read(1 << 20):
            pass

    def deflate(piece: bytes) -> tuple[int, int]:
        return len(zlib.compress(piece, 9, wbits=-15)), isal_zlib.crc32(piece)

    with converted_tar.open("rb") as plain, ThreadPoolExecutor(workers) as pool:
        pending = []
        while piece := plain.read(_PIECE):
            pending.append(pool.submit(deflate, piece))
            if len(pending) > 2 * workers:
                pending.pop(0).result()
        for future in pending:
            future.result()


def _gzip9_size(source: Path, scratch: Path) -> int:
    tar = scratch / "plain.tar"
    with igzip.open(source, "rb") as inflated, tar.open("wb") as out:
        shutil.copyfileobj(inflated, out, 1 << 20)
    with tar.open("rb") as plain:
        compressed = subprocess.run(
            ["gzip", "-9", "-c"], stdin=plain, capture_output=True, check=True
        ).stdout
    tar.unlink()
    return len(compressed)


def measure(
    name: str, source: Path, scratch: Path, workers: int, repeat: int, min_chunk_size: int = 0
) -> Throughput:
    work = scratch / "work"
    work.mkdir(exist_ok=True)
    dest = scratch / f"{name}.esgz"
    converted_tar = scratch / f"{name}.esgz.tar"
    _convert(source, dest, work, workers, min_chunk_size)
    with gzip.open(dest, "rb") as blob, converted_tar.open("wb") as out:
        shutil.copyfileobj(blob, out, 1 << 20)
    tar_bytes = converted_tar.stat().st_size
    converts, baselines = [], []
    for _ in range(repeat):
        converts.append(_timed(lambda: _convert(source, dest, work, workers, min_chunk_size)))
        baselines.append(_timed(lambda: _baseline(source, converted_tar, workers)))
    result = Throughput(
        layer=name,
        min_chunk_size=min_chunk_size,
        tar_bytes=tar_bytes,
        convert_seconds=min(wall for wall, _ in converts),
        baseline_seconds=min(wall for wall, _ in baselines),
        convert_cpu_seconds=min(cpu for _, cpu in converts),
        baseline_cpu_seconds=min(cpu for _, cpu in baselines),
        output_bytes=dest.stat().st_size,
        gzip9_bytes=_gzip9_size(source, scratch),
    )
    converted_tar.unlink()
    dest.unlink()
    return result


def _write_tree_layer(path: Path, tree: Path) -> None:
    with (
        igzip.open(path, "wb", compresslevel=1) as out,
        tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as archive,
    ):
        archive.add(tree, arcname=tree.name)


def peak_rss_mib(source: Path, scratch: Path, workers: int) -> float:
    work = scratch / "work"
    work.mkdir(exist_ok=True)
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            _RSS_SCRIPT,
            str(source),
            str(scratch / "rss.esgz"),
            str(work),
            str(workers),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    (scratch / "rss.esgz").unlink()
    return int(run.stdout.strip()) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument(
        "--min-chunk-size",
        action="append",
        type=parse_size,
        help="a minimum chunk size to measure the many-file layers with (repeatable)",
    )
    parser.add_argument("--tree", type=Path, help="also measure a layer of this directory")
    args = parser.parse_args()
    minimums = args.min_chunk_size or [0, 256 << 10]
    pool = text_pool()
    with tempfile.TemporaryDirectory(prefix="bench-estargz-") as directory:
        scratch = Path(directory)
        layers = {
            "single-300MiB": lambda path: write_single_file_layer(path, 300 << 20, pool),
            "small-20000": lambda path: write_small_files_layer(path, 20_000, pool),
        }
        if args.tree is not None:
            layers[f"tree-{args.tree.name}"] = lambda path: _write_tree_layer(path, args.tree)
        for name, build in layers.items():
            source = scratch / "source.tar.gz"
            build(source)
            for minimum in [0] if name.startswith("single") else minimums:
                row = measure(name, source, scratch, args.workers, args.repeat, minimum).row()
                print(json.dumps(row))
            source.unlink()
        if args.skip_rss:
            return
        for size_mib in (256, 1024):
            source = scratch / f"rss-{size_mib}.tar.gz"
            write_single_file_layer(source, size_mib << 20, pool)
            rss = peak_rss_mib(source, scratch, args.workers)
            print(json.dumps({"layer": f"single-{size_mib}MiB", "peak_rss_MiB": round(rss, 1)}))
            source.unlink()


if __name__ == "__main__":
    main()
