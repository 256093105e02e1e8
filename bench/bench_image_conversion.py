"""Cold conversion of an image vs its fully cached re-conversion, on a real loopback registry.

Pushes a three-layer image (a base of many small files, a large file, a small top layer),
converts it to eStargz with an empty layer cache (cold), converts it again with the same cache
(warm: the target is to take at most 5 % of the cold time and upload 0 bytes), then converts
the same image pushed to a second repository (cache hit + cross-repository mount). Prints
seconds, bytes moved and the ratios. Run from the repository root:

    python bench/bench_image_conversion.py [--large-mib 64] [--files 5000] [--level 9]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# Run as `python bench/NAME.py`: the repository root, not bench/, must be importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from converters.estargz import EstargzOptions
from harbor_api.registry import RegistryClient
from harbor_api.transport import TlsOptions
from reconciler.conversion.image_conversion import (
    ConversionOptions,
    ConversionResult,
    convert_image,
)
from reconciler.state.clock import SystemClock
from reconciler.state.sqlite_state import open_sqlite_state
from tests.support.images import Entry, push_image
from tests.support.registry_server import start_registry

MIB = 1 << 20


def large_file(size: int) -> bytes:
    """Half random, half text: compresses like a typical binary, and no two chunks alike."""
    text = b"".join(b"%08d some text in a generated file\n" % i for i in range(MIB // 32))
    out = bytearray()
    while len(out) < size:
        out += os.urandom(MIB // 2) + text[: MIB // 2]
    return bytes(out[:size])


def layers(files: int, large_mib: int) -> list[list[Entry]]:
    base = [Entry("usr", "dir", mode=0o755)] + [
        Entry(f"usr/share/f{i:06d}", data=b"small file %d\n" % i * (i % 40)) for i in range(files)
    ]
    big = [Entry("opt", "dir", mode=0o755), Entry("opt/blob.bin", data=large_file(large_mib * MIB))]
    top = [Entry("app", "dir", mode=0o755), Entry("app/main.py", data=b"print('hi')\n" * 500)]
    return [base, big, top]


def report(what: str, result: ConversionResult, seconds: float) -> None:
    cached = sum(layer.cached for m in result.manifests for layer in m.layers)
    total = sum(len(m.layers) for m in result.manifests)
    print(
        f"{what:<28} {seconds:8.3f} s  downloaded {result.bytes_downloaded / MIB:8.2f} MiB  "
        f"uploaded {result.bytes_uploaded / MIB:8.2f} MiB  cached layers {cached}/{total}  "
        f"pushed {result.pushed}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large-mib", type=int, default=64)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--level", type=int, default=9, help="gzip level (acceld's default: 9)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="acceld-bench-") as scratch:
        root = Path(scratch)
        registry = start_registry(root / "registry")
        try:
            image = layers(args.files, args.large_mib)
            push_image(registry.url, "bench/app", "v1", image)
            push_image(registry.url, "bench/copy", "v1", image)
            options = ConversionOptions(layer=EstargzOptions(compression_level=args.level))
            store = open_sqlite_state(root / "state.db", SystemClock())
            with RegistryClient(registry.host, tls=TlsOptions(plain_http=True)) as client:

                def run(repository: str) -> tuple[ConversionResult, float]:
                    started = time.perf_counter()
                    result = convert_image(
                        client,
                        repository,
                        "v1",
                        "estargz",
                        options,
                        work_dir=root / "work",
                        layer_cache=store.layers,
                    )
                    return result, time.perf_counter() - started

                cold, cold_seconds = run("bench/app")
                report("cold (empty layer cache)", cold, cold_seconds)
                warm, warm_seconds = run("bench/app")
                report("warm (same image again)", warm, warm_seconds)
                mounted, mounted_seconds = run("bench/copy")
                report("warm (other repository)", mounted, mounted_seconds)
            store.close()
        finally:
            registry.stop()
    source = sum(layer.source.size for layer in cold.manifests[0].layers)
    print(f"source layers {source / MIB:.1f} MiB compressed, gzip level {args.level}")
    print(f"warm / cold time: {warm_seconds / cold_seconds:.2%} (target <= 5%)")
    print(f"other repository / cold time: {mounted_seconds / cold_seconds:.2%}")
    print(f"bytes uploaded by the warm run: {warm.bytes_uploaded} (target 0)")
    same = warm.converted_digest == cold.converted_digest
    ok = same and warm.bytes_uploaded == 0 and warm_seconds <= 0.05 * cold_seconds
    print(f"same digest both runs: {same}; targets met: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
