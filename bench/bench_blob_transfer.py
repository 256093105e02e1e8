"""Blob upload and download through `RegistryClient` against a real loopback registry.

Generates a blob on disk (1 GiB by default), uploads it (chunked), downloads it (verified), and
prints throughput and the peak RSS of this process, next to baselines measured in the same run:
sha256 of the file, and the same transfer with plain `requests` streaming (one monolithic PUT,
one streamed GET). Run from the repository root:

    python bench/bench_blob_transfer.py [--size-mib 1024]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

# Run as `python bench/NAME.py`: the repository root, not bench/, must be importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harbor_api.registry import RegistryClient
from harbor_api.transport import TlsOptions
from tests.support.registry_server import start_registry

MIB = 1 << 20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(what: str, size: int, action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    seconds = time.perf_counter() - started
    rate = size / MIB / seconds
    print(f"{what:<20} {seconds:7.2f} s  {rate:8.1f} MiB/s  peak RSS {peak_rss_mib():6.1f} MiB")
    return rate


def make_blob(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    # Pseudo-random blocks: incompressible enough, and far cheaper than os.urandom for 1 GiB.
    block = os.urandom(MIB)
    with path.open("wb") as out:
        for i in range(size // MIB):
            piece = bytes(b ^ (i & 0xFF) for b in block[:64]) + block[64:]
            out.write(piece)
            digest.update(piece)
    return "sha256:" + digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(MIB):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def plain_upload(base: str, repository: str, path: Path, digest: str) -> None:
    start = requests.post(f"{base}/v2/{repository}/blobs/uploads/", timeout=60)
    start.raise_for_status()
    location = start.headers["Location"]
    location = location if location.startswith("http") else base + location
    with path.open("rb") as body:
        done = requests.put(
            location,
            params={"digest": digest},
            data=body,
            headers={"Content-Type": "application/octet-stream"},
            timeout=600,
        )
    done.raise_for_status()


def plain_download(base: str, repository: str, digest: str, path: Path) -> None:
    with requests.get(f"{base}/v2/{repository}/blobs/{digest}", stream=True, timeout=600) as got:
        got.raise_for_status()
        with path.open("wb") as out:
            for chunk in got.iter_content(MIB):
                out.write(chunk)


def one_round(
    client: RegistryClient, base: str, source: Path, digest: str, size: int, repo: str
) -> tuple[dict[str, float], float]:
    """Rates of one round (MiB/s by run) and the peak RSS after the acceld transfers."""
    target = source.with_name("download.bin")
    rates = {
        "acceld upload": timed(
            "acceld upload", size, lambda: client.upload_blob(f"{repo}a", source, digest, size)
        ),
        "acceld download": timed(
            "acceld download", size, lambda: client.download_blob(f"{repo}a", digest, target)
        ),
    }
    rss = peak_rss_mib()
    if sha256_file(target) != digest:
        raise SystemExit("the download differs from the source")
    target.unlink()
    rates["sha256"] = timed("sha256 of the file", size, lambda: sha256_file(source))
    rates["requests PUT"] = timed(
        "requests PUT", size, lambda: plain_upload(base, f"{repo}p", source, digest)
    )
    rates["requests GET"] = timed(
        "requests GET", size, lambda: plain_download(base, f"{repo}p", digest, target)
    )
    target.unlink()
    return rates, rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    size = args.size_mib * MIB
    with tempfile.TemporaryDirectory(prefix="acceld-bench-") as tmp:
        root = Path(tmp)
        registry = start_registry(root / "registry")
        try:
            source = root / "blob.bin"
            digest = make_blob(source, size)
            print(f"blob of {args.size_mib} MiB on {registry.host}, rss {peak_rss_mib():.1f} MiB")
            client = RegistryClient(registry.host, tls=TlsOptions(plain_http=True))
            best: dict[str, float] = {}
            rss = 0.0
            # Rounds alternate acceld and baselines so disk write-back does not favour one side.
            for number in range(args.rounds):
                rates, rss = one_round(
                    client, registry.url, source, digest, size, f"bench/r{number}"
                )
                best = {k: max(v, best.get(k, 0.0)) for k, v in rates.items()}
            print(f"best of {args.rounds} rounds:")
            for mine, baseline in (
                ("acceld upload", "requests PUT"),
                ("acceld download", "requests GET"),
                ("acceld download", "sha256"),
            ):
                print(f"  {mine} / {baseline} = {best[mine] / best[baseline]:.2f}")
            print(f"peak RSS through the acceld transfers: {rss:.1f} MiB (target < 100)")
            return 0 if rss < 100 else 1
        finally:
            registry.stop()


if __name__ == "__main__":
    sys.exit(main())
