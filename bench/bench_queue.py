"""How fast the work queue turns keys over, on SQLite and on PostgreSQL, against bare transactions.

Run: python bench/bench_queue.py [--keys N] [--deep N] [--backend sqlite|postgresql ...]

PostgreSQL is a throwaway cluster on loopback (tests/support/postgres_server.py: fsync off, as
SQLite's WAL with synchronous=NORMAL does not sync each commit either), so both figures are the
queue's own cost, not the disk's.

Baseline per backend: two bare write transactions per key (insert, delete) over one connection;
the floor any durable queue on that database pays. Measured per backend:
- `add` → `lease` → `done` for one key at a time (three transactions), one thread;
- `lease` + `done` of pre-filled keys by 1 and by 8 concurrent lessees (threads sharing a store);
- the latency of `lease` (one key, then `done`) with `--deep` keys queued, filled by one bulk
  INSERT: p50 and p99 over 1,000 leases.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reconciler.state.clock import SystemClock
from reconciler.state.keys import Key
from reconciler.state.postgres_database import PostgresLocation
from reconciler.state.postgres_state import open_postgres_state
from reconciler.state.sqlite_state import open_sqlite_state
from reconciler.state.store import KeyQueue, StateStore
from tests.support.postgres_server import RunningPostgres, start_postgres

Opener = Callable[[], StateStore]


def key(n: int) -> Key:
    return Key(f"bench/app{n % 50}", f"sha256:{n:064x}", "estargz")


def sqlite_baseline(path: Path, keys: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE q (key TEXT PRIMARY KEY, due REAL) WITHOUT ROWID")
    started = time.perf_counter()
    for n in range(keys):
        name = str(key(n))
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO q VALUES (?, ?)", (name, 0.0))
        conn.execute("COMMIT")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM q WHERE key = ?", (name,))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return keys / elapsed


def postgres_baseline(dsn: str, keys: int) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE q (key TEXT PRIMARY KEY, due DOUBLE PRECISION)")
        started = time.perf_counter()
        for n in range(keys):
            name = str(key(n))
            with conn.transaction():
                conn.execute("INSERT INTO q VALUES (%s, %s)", (name, 0.0))
            with conn.transaction():
                conn.execute("DELETE FROM q WHERE key = %s", (name,))
        elapsed = time.perf_counter() - started
    return keys / elapsed


def cycle(open_store: Opener, keys: int) -> float:
    store = open_store()
    queue = store.queue
    started = time.perf_counter()
    for n in range(keys):
        queue.add(key(n))
        (lease,) = queue.lease("bench", 1)
        queue.done(lease)
    elapsed = time.perf_counter() - started
    store.close()
    return keys / elapsed


def lessees(open_store: Opener, keys: int, threads: int) -> float:
    store = open_store()
    queue = store.queue
    for n in range(keys):
        queue.add(key(n), 0.0)
    deadline = time.monotonic() + 300

    def work(slot: int) -> None:
        while time.monotonic() < deadline:
            leases = queue.lease(f"bench-{slot}", 1)
            if not leases:
                return
            queue.done(leases[0])

    started = time.perf_counter()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    left = queue.counts().pending
    store.close()
    if left:
        raise SystemExit(f"{threads} lessees left {left} keys pending")
    return keys / elapsed


# One bulk INSERT of `deep` pending keys, due long ago, in the queue's own key format.
_FILL_SQLITE = """
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?)
INSERT INTO queue (key, state, due_at)
SELECT 'bench/app' || (n % 50) || '@sha256:' || printf('%064x', n) || '#estargz', 'pending', 0.0
FROM g
"""
_FILL_POSTGRES = """
INSERT INTO queue (key, state, due_at)
SELECT 'bench/app' || (n %% 50) || '@sha256:' || lpad(to_hex(n), 64, '0') || '#estargz',
       'pending', 0.0
FROM generate_series(1, %s) AS n
"""


def lease_latency(open_store: Opener, fill: Callable[[int], None], deep: int) -> tuple[float, ...]:
    store = open_store()
    fill(deep)
    queue: KeyQueue = store.queue
    times = []
    for _ in range(1000):
        started = time.perf_counter()
        (lease,) = queue.lease("bench", 1)
        times.append(time.perf_counter() - started)
        queue.done(lease)
    store.close()
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99)]


@contextmanager
def sqlite_backend(root: Path) -> Iterator[tuple[Callable[[str], Opener], Callable[..., None]]]:
    def opener(name: str) -> Opener:
        return lambda: open_sqlite_state(root / f"{name}.db", SystemClock())

    def fill(name: str, deep: int) -> None:
        with sqlite3.connect(root / f"{name}.db") as conn:
            conn.execute(_FILL_SQLITE, (deep,))

    yield opener, fill


@contextmanager
def postgres_backend(
    server: RunningPostgres,
) -> Iterator[tuple[Callable[[str], Opener], Callable[..., None]]]:
    databases: dict[str, str] = {}

    def dsn(name: str) -> str:
        if name not in databases:
            databases[name] = server.dsn(server.create_database(name))
        return databases[name]

    def opener(name: str) -> Opener:
        return lambda: open_postgres_state(PostgresLocation(dsn(name), pool_size=12), SystemClock())

    def fill(name: str, deep: int) -> None:
        with psycopg.connect(dsn(name), autocommit=True) as conn:
            conn.execute(_FILL_POSTGRES, (deep,))
            conn.execute("ANALYZE queue")

    yield opener, fill


def report(
    backend: str, base: float, figures: dict[str, float], latency: tuple[float, ...], deep: int
) -> None:
    print(f"{backend}")
    print(f"  baseline: bare insert+delete transactions    {base:8.0f} keys/s")
    for name, value in figures.items():
        print(f"  {name:43} {value:8.0f} keys/s  ({value / base:.2f}x)")
    p50, p99 = latency
    shown = f"p50 {p50 * 1000:6.2f} ms  p99 {p99 * 1000:6.2f} ms"
    print(f"  lease latency, {deep:,} keys queued        {shown}")


def measure(
    opener: Callable[[str], Opener], fill: Callable[..., None], keys: int, deep: int
) -> tuple[dict[str, float], tuple[float, ...]]:
    figures = {
        "add+lease+done, 1 thread": cycle(opener("cycle"), keys),
        "lease+done, 1 lessee (pre-filled)": lessees(opener("one"), keys, 1),
        "lease+done, 8 lessees (pre-filled)": lessees(opener("eight"), keys, 8),
    }
    latency_store = opener("deep")
    latency_store().close()  # creates the schema before the bulk fill
    latency = lease_latency(latency_store, lambda n: fill("deep", n), deep)
    return figures, latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--deep", type=int, default=1_000_000)
    parser.add_argument(
        "--backend", action="append", choices=["sqlite", "postgresql"], default=None
    )
    args = parser.parse_args()
    backends = args.backend or ["sqlite", "postgresql"]
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp:
        root = Path(tmp)
        if "sqlite" in backends:
            with sqlite_backend(root) as (opener, fill):
                base = sqlite_baseline(root / "baseline.db", args.keys)
                figures, latency = measure(opener, fill, args.keys, args.deep)
            report("sqlite", base, figures, latency, args.deep)
        if "postgresql" in backends:
            server = start_postgres()
            try:
                with postgres_backend(server) as (opener, fill):
                    base = postgres_baseline(
                        server.dsn(server.create_database("baseline")), args.keys
                    )
                    figures, latency = measure(opener, fill, args.keys, args.deep)
            finally:
                server.stop()
            report("postgresql", base, figures, latency, args.deep)


if __name__ == "__main__":
    main()
