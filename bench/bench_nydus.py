"""Benchmark the nydus converter against the raw codec work on the same bytes.

For a 300 MiB single-file layer and a 20,000-small-file layer it reports conversion time and
its ratio to a baseline measured in the same run: decompress the source with the same
inflater, then blake3 and zstd-compress (same level, same thread count) the same chunks the
converter cuts. It also reports peak RSS converting 256 MiB and 1 GiB layers, each in its own
process (VmHWM), and the blob size against the eStargz blob of the same layer. Timings are
the best of `--repeat` interleaved runs; CPU seconds (all threads) are reported beside wall.

    python bench/bench_nydus.py [--repeat 2] [--skip-rss] [--workers N]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import blake3
import zstandard
from isal import igzip

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from converters.estargz import EstargzOptions  # noqa: E402
from converters.estargz import convert_layer as convert_estargz  # noqa: E402
from converters.nydus import NydusOptions, convert_layer  # noqa: E402
from tests.support.synthetic_layers import (  # noqa: E402
    text_pool,
    write_single_file_layer,
    write_small_files_layer,
)

_RSS_SCRIPT = """
import sys
from pathlib import Path
from converters.nydus import NydusOptions, convert_layer
from tests.support.process_memory import peak_rss_kib
src, dst, work = map(Path, sys.argv[1:4])
with src.open("rb") as s, dst.open("wb") as d:
    convert_layer(s, d, NydusOptions(workers=int(sys.argv[4])), work)
print(peak_rss_kib())
"""


def _timed(run: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def _file_chunks(source: Path, chunk_size: int) -> Iterator[bytes]:
    """Each regular file's data cut into chunks, as the converter cuts it."""
    with igzip.open(source, "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as archive:
        for member in archive:
            data = archive.extractfile(member) if member.isfile() else None
            while data is not None and (chunk := data.read(chunk_size)):
                yield chunk


def _codec_work(source: Path, options: NydusOptions) -> None:
    def one(chunk: bytes) -> int:
        blake3.blake3(chunk).digest()
        return len(zstandard.ZstdCompressor(level=options.compression_level).compress(chunk))

    with ThreadPoolExecutor(options.thread_count()) as pool:
        for _ in pool.map(one, _file_chunks(source, options.chunk_size)):
            pass


def _convert(source: Path, options: NydusOptions, work: Path) -> int:
    with source.open("rb") as src, (work / "out.nydus").open("wb") as dest:
        return convert_layer(src, dest, options, work).size


def _estargz_size(source: Path, work: Path) -> int:
    out = io.BytesIO()
    with source.open("rb") as src:
        return convert_estargz(src, out, EstargzOptions(), work).size


def _peak_rss_mib(source: Path, work: Path, workers: int) -> float:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _RSS_SCRIPT,
            str(source),
            str(work / "rss.nydus"),
            str(work),
            str(workers),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return int(done.stdout.strip()) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--skip-rss", action="store_true")
    args = parser.parse_args()
    options = NydusOptions(workers=args.workers)
    pool = text_pool()
    with tempfile.TemporaryDirectory(prefix="bench-nydus-") as tmp:
        work = Path(tmp)
        layers = {
            "300 MiB one file": work / "one.tar.gz",
            "20,000 small files": work / "small.tar.gz",
        }
        write_single_file_layer(layers["300 MiB one file"], 300 << 20, pool)
        write_small_files_layer(layers["20,000 small files"], 20_000, pool)
        for name, source in layers.items():
            base = conv = (float("inf"), 0.0)
            for _ in range(args.repeat):
                base = min(base, _timed(lambda s=source: _codec_work(s, options)))
                conv = min(conv, _timed(lambda s=source: _convert(s, options, work)))
            size = _convert(source, options, work)
            estargz = _estargz_size(source, work)
            print(
                f"{name}: convert {conv[0]:.2f}s (cpu {conv[1]:.2f}s), raw codec work "
                f"{base[0]:.2f}s (cpu {base[1]:.2f}s), ratio {conv[0] / base[0]:.2f}x; "
                f"blob {size / 1e6:.1f} MB, eStargz {estargz / 1e6:.1f} MB "
                f"({size / estargz:.2f}x)"
            )
        if not args.skip_rss:
            for size_mib in (256, 1024):
                source = work / f"rss-{size_mib}.tar.gz"
                write_single_file_layer(source, size_mib << 20, pool)
                rss = _peak_rss_mib(source, work, options.thread_count())
                print(f"peak RSS converting a {size_mib} MiB layer: {rss:.0f} MiB")
                source.unlink()


if __name__ == "__main__":
    main()
