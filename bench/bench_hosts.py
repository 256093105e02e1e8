"""Conversions per hour with 1 and with N `acceld serve` processes sharing one PostgreSQL
database and one registry.

Run: python bench/bench_hosts.py [--hosts 1 3] [--images M] [--layer-mib S] [--workers W]

Each round gets a fresh database (a throwaway cluster on loopback, tests/support/postgres_server.py)
and its own project of M one-layer images, each layer S MiB of distinct compressible text, in a
loopback registry (Debian's docker-registry). The daemons start after the push; their full scan
at start finds every image. Timed: from the moment every daemon answers /readyz until every
image has its eStargz referrer. Baseline: the first --hosts value (1 daemon). All daemons run on
this machine, so they share its cores: N "hosts" here measure the queue's overhead and how well
the work spreads, not N machines' capacity. Every wait is bounded (--timeout).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.acceld_process import registry_config
from tests.support.daemon_process import DaemonProcess, loopback_listen, wait_until
from tests.support.postgres_server import RunningPostgres, start_postgres
from tests.support.registry_server import RunningRegistry, start_registry
from tests.support.reliability import converted_everywhere, push_distinct_images

DSN_ENV = "ACCELD_STATE_DSN"


def one_round(
    registry: RunningRegistry,
    postgres: RunningPostgres,
    root: Path,
    *,
    hosts: int,
    images: int,
    layer_bytes: int,
    workers: int,
    timeout: float,
) -> float:
    """Seconds from every daemon ready to every image converted."""
    project = f"bench{hosts}x{os.getpid()}x{int(time.time())}"
    pushed = push_distinct_images(registry.url, project, images, size=layer_bytes, seed=hosts)
    env = {DSN_ENV: postgres.dsn(postgres.create_database())}
    with ExitStack() as stack:
        daemons = []
        for number in range(hosts):
            directory = root / f"{project}-host{number}"
            directory.mkdir()
            listen = loopback_listen()
            config = registry_config(
                directory,
                registry.host,
                [{"name": "bench", "projects": [project], "formats": ["estargz"]}],
                server={"listen": listen},
                workers=workers,
                scan={"full_interval": "1h", "incremental_interval": "1h"},
                state={"backend": "postgresql", "dsn_env": DSN_ENV},
            )
            daemons.append(stack.enter_context(DaemonProcess(config, listen, env=env)))
        for daemon in daemons:
            daemon.wait_ready(timeout=60)
        started = time.monotonic()
        wait_until(
            lambda: converted_everywhere(registry.url, pushed),
            timeout,
            f"{images} images converted by {hosts} daemons",
            interval=0.2,
        )
        seconds = time.monotonic() - started
        for daemon in daemons:
            daemon.stop()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--layer-mib", type=float, default=8.0)
    parser.add_argument("--workers", type=int, default=2, help="worker threads per daemon")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per round at most")
    args = parser.parse_args()
    layer_bytes = int(args.layer_mib * (1 << 20))
    print(
        f"{args.images} images of one {args.layer_mib:g} MiB layer, {args.workers} workers per "
        f"daemon, {os.cpu_count()} cores"
    )
    with tempfile.TemporaryDirectory(prefix="acceld-bench-hosts-") as scratch:
        root = Path(scratch)
        registry = start_registry(root / "registry")
        postgres = start_postgres()
        try:
            baseline = None
            for hosts in args.hosts:
                seconds = one_round(
                    registry,
                    postgres,
                    root,
                    hosts=hosts,
                    images=args.images,
                    layer_bytes=layer_bytes,
                    workers=args.workers,
                    timeout=args.timeout,
                )
                per_hour = args.images / seconds * 3600
                mib_per_s = args.images * args.layer_mib / seconds
                baseline = baseline or per_hour
                print(
                    f"  {hosts} daemon{'s' if hosts > 1 else ' '}  {seconds:7.1f} s  "
                    f"{per_hour:9.0f} conversions/h  {mib_per_s:6.1f} MiB/s of layers  "
                    f"({per_hour / baseline:.2f}x)"
                )
        finally:
            postgres.stop()
            registry.stop()


if __name__ == "__main__":
    main()
