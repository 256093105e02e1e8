"""How fast the webhook endpoint answers while conversions load the CPU.

Serves the real app (`HttpApp` behind `HttpServer`) on loopback with a real SQLite state store
as the queue, runs two eStargz conversions of a synthetic layer in background threads (the
real `convert_layer`, in a loop), and sends webhooks at a fixed rate from a second process,
a new connection per request as Harbor's job service does. The same loop against `/healthz`,
under the same load, is the baseline: the ratio is what the webhook path itself costs.

    python bench/bench_webhooks.py            # 200 requests/s for 30 s, each phase
    python bench/bench_webhooks.py --rate 100 --seconds 5

Targets: webhook p99 < 50 ms, max < 3 s (Harbor gives up after 3 s).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import io
import json
import logging
import multiprocessing
import os
import random
import statistics
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prometheus_client import CollectorRegistry

# Run as `python bench/NAME.py`: the repository root, not bench/, must be importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from converters.estargz import EstargzOptions, convert_layer
from harbor_api.webhook_events import ArtifactEvent
from reconciler.conversion.layer_process import convert_layer_file
from reconciler.observability.metrics import Metrics
from reconciler.service.http_app import HttpApp
from reconciler.service.http_server import HttpServer
from reconciler.state.clock import SystemClock
from reconciler.state.keys import Key
from reconciler.state.sqlite_state import open_sqlite_state
from reconciler.state.store import KeyQueue

AUTHORIZATION = "bench-webhook-secret"
P99_TARGET = 0.050
MAX_TARGET = 3.0
CLIENT_THREADS = 64


def webhook_body(index: int) -> bytes:
    digest = "sha256:" + hashlib.sha256(str(index).encode()).hexdigest()
    return json.dumps(
        {
            "type": "PUSH_ARTIFACT",
            "occur_at": 1767960000 + index,
            "operator": "robot$bench",
            "event_data": {
                "resources": [
                    {"digest": digest, "tag": f"v{index}", "resource_url": f"h/bench/app:v{index}"}
                ],
                "repository": {
                    "name": "app",
                    "namespace": "bench",
                    "repo_full_name": "bench/app",
                    "repo_type": "private",
                },
            },
        }
    ).encode()


def send_one(port: int, path: str, index: int) -> tuple[float, int]:
    """(seconds from connect to the whole answer read, status) for one request."""
    body = webhook_body(index) if path != "/healthz" else None
    headers = {"Authorization": AUTHORIZATION, "Content-Type": "application/json"} if body else {}
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST" if body else "GET", path, body=body, headers=headers)
        answer = conn.getresponse()
        answer.read()
        status = answer.status
    except OSError:
        status = 0
    finally:
        conn.close()
    return time.perf_counter() - started, status


def load_phase(port: int, path: str, rate: int, seconds: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """In its own process: `rate` requests a second for `seconds`, each at its scheduled time."""
    total = int(rate * seconds)
    results: list[tuple[float, int]] = []
    late = 0
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        futures = []
        start = time.perf_counter()
        for index in range(total):
            due = start + index / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            elif wait < -0.05:
                late += 1
            futures.append(pool.submit(send_one, port, path, index))
        results = [future.result(timeout=30) for future in futures]
    out.put((results, late))


def run_phase(port: int, path: str, rate: int, seconds: float) -> tuple[list[float], int, int]:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    process = context.Process(target=load_phase, args=(port, path, rate, seconds, out))
    process.start()
    results, late = out.get(timeout=seconds + 120)
    process.join(30)
    times = [elapsed for elapsed, status in results if status in (200, 202)]
    failures = sum(1 for _, status in results if status not in (200, 202))
    return times, failures, late


def synthetic_layer(size: int) -> bytes:
    """A gzip tar of half-compressible files, so deflate level 9 has real work to do."""
    rng = random.Random(7)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for number in range(8):
            words = [
                rng.choice((b"layer", b"alpha", b"zeta", b"0x1f", rng.randbytes(4)))
                for _ in range(size // 8 // 5)
            ]
            data = b" ".join(words)[: size // 8]
            info = tarfile.TarInfo(f"usr/lib/file{number}.bin")
            info.size = len(data)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)


class Conversions:
    """Worker threads converting the same layer again and again until stopped: in child
    processes as the daemon does (`reconciler.conversion.layer_process`), or in the threads
    themselves."""

    def __init__(self, layer: bytes, work_dir: Path, threads: int, *, in_process: bool) -> None:
        self._source = work_dir / "layer.tar.gz"
        self._source.write_bytes(layer)
        self._work_dir = work_dir
        self._in_process = in_process
        self._stop = threading.Event()
        self.done = 0
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def _loop(self) -> None:
        options = EstargzOptions(workers=1)
        out = self._work_dir / f"out-{threading.get_ident()}"
        while not self._stop.is_set():
            if self._in_process:
                with self._source.open("rb") as source:
                    convert_layer(source, io.BytesIO(), options, self._work_dir)
            else:
                out.unlink(missing_ok=True)  # convert_layer_file creates it, refusing one there
                convert_layer_file(
                    self._source, out, "estargz", options, self._work_dir, timeout=600
                )
            self.done += 1

    def __enter__(self) -> Conversions:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(120)


def summary(name: str, times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    figures = {
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max": ordered[-1],
    }
    shown = "  ".join(f"{k}={v * 1000:8.2f} ms" for k, v in figures.items())
    print(f"{name:9} n={len(times):5d}  {shown}")
    return figures


def enqueue_into(keys: KeyQueue) -> Callable[[tuple[ArtifactEvent, ...]], int]:
    def enqueue(events: tuple[ArtifactEvent, ...]) -> int:
        for event in events:
            keys.add(Key(event.repository, event.digest, "estargz"))
        return len(events)

    return enqueue


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=200, help="requests per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    parser.add_argument(
        "--conversions", type=int, default=2, help="conversion threads running meanwhile"
    )
    parser.add_argument("--layer-mib", type=int, default=24, help="size of the synthetic layer")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="convert in the serving process's threads instead of child processes",
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="override the GIL switch interval HttpServer sets (seconds; Python's default 0.005)",
    )
    args = parser.parse_args()
    # waitress warns on every request that waits for a thread; the figures say it better.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory(prefix="acceld-bench-") as tmp:
        store = open_sqlite_state(Path(tmp) / "state.db", SystemClock())
        metrics = Metrics(CollectorRegistry(), formats=("estargz",))
        app = HttpApp(
            webhook_secret=AUTHORIZATION,
            enqueue=enqueue_into(store.queue),
            readiness=lambda: {"state_store": True},
            metrics=metrics,
        )
        server = HttpServer(app, host="127.0.0.1", port=0)
        server.start()
        if args.switch_interval:
            sys.setswitchinterval(args.switch_interval)
        layer = synthetic_layer(args.layer_mib << 20)
        print(
            f"cpus={os.cpu_count()} rate={args.rate}/s seconds={args.seconds} "
            f"layer={len(layer) >> 20} MiB gzip, {args.conversions} conversions "
            f"({'in-process threads' if args.in_process else 'child processes'}), "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        try:
            with Conversions(
                layer, Path(tmp), args.conversions, in_process=args.in_process
            ) as conversions:
                base, base_failed, base_late = run_phase(
                    server.port, "/healthz", args.rate, args.seconds
                )
                hook, hook_failed, hook_late = run_phase(
                    server.port, "/webhooks/harbor", args.rate, args.seconds
                )
            converted = conversions.done
        finally:
            server.stop()
        queued = store.queue.counts().pending
        store.close()

    baseline = summary("/healthz", base)
    webhook = summary("webhook", hook)
    print("ratio     " + "  ".join(f"{k}={webhook[k] / baseline[k]:6.2f}x" for k in webhook))
    print(
        f"failed: healthz={base_failed} webhook={hook_failed}; sent late (>50 ms behind "
        f"schedule): healthz={base_late} webhook={hook_late}; conversions finished={converted}; "
        f"keys queued={queued}"
    )
    ok = webhook["p99"] < P99_TARGET and webhook["max"] < MAX_TARGET and hook_failed == 0
    print(
        f"targets p99 < {P99_TARGET * 1000:.0f} ms, max < {MAX_TARGET:.0f} s: "
        f"{'met' if ok else 'NOT met'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
