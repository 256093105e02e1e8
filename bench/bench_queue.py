"""How fast the SQLite work queue turns keys over, against raw SQLite transactions.

Run: python bench/bench_queue.py [--keys N]

Baseline: two bare `BEGIN IMMEDIATE` write transactions per key (insert, delete) on a WAL file
with the same pragmas; the floor any durable queue on SQLite pays. Measured: one key's full cycle
`add` → `lease` → `done` (three transactions), single-threaded and with 4 threads sharing a store.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from reconciler.state.clock import SystemClock
from reconciler.state.keys import Key
from reconciler.state.sqlite_state import open_sqlite_state


def key(n: int) -> Key:
    return Key(f"bench/app{n % 50}", f"sha256:{n:064x}", "estargz")


def baseline(path: Path, keys: int) -> float:
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


def single(path: Path, keys: int) -> float:
    store = open_sqlite_state(path, SystemClock())
    queue = store.queue
    started = time.perf_counter()
    for n in range(keys):
        queue.add(key(n))
        (lease,) = queue.lease("bench", 1)
        queue.done(lease)
    elapsed = time.perf_counter() - started
    store.close()
    return keys / elapsed


def threaded(path: Path, keys: int, threads: int) -> float:
    store = open_sqlite_state(path, SystemClock())
    queue = store.queue
    for n in range(keys):
        queue.add(key(n), 0.0)
    deadline = time.monotonic() + 120

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
        raise SystemExit(f"threaded run left {left} keys pending")
    return keys / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp:
        root = Path(tmp)
        base = baseline(root / "baseline.db", args.keys)
        one = single(root / "single.db", args.keys)
        four = threaded(root / "threaded.db", args.keys, 4)
    print(f"baseline: bare insert+delete transactions  {base:8.0f} keys/s")
    print(f"queue add+lease+done, 1 thread             {one:8.0f} keys/s  ({one / base:.2f}x)")
    print(f"queue lease+done, 4 threads (pre-filled)   {four:8.0f} keys/s  ({four / base:.2f}x)")


if __name__ == "__main__":
    main()
