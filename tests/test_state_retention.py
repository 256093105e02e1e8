"""State retention on both backends: the caches are trimmed by last use and last sight, and the
database stays bounded under a steady stream of new images (injected clock, no sleeping)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

import pytest
from prometheus_client import CollectorRegistry

from harbor_api.oci import Descriptor
from reconciler.controller.retention import StateRetention
from reconciler.observability.metrics import Metrics
from reconciler.state.keys import Key
from reconciler.state.sql_caches import TOUCH_AFTER_SECONDS
from reconciler.state.store import MISSING, CachedLayer, StateStore
from tests.support.clock import FakeClock
from tests.support.state_backends import StateBackend

pytest_plugins = ("tests.support.state_fixtures",)

DAY = 24 * 3600.0
TTL = 30 * DAY


def _digest(n: int, kind: str = "") -> str:
    return "sha256:" + f"{kind}{n:x}".rjust(64, "0")


def _layer(n: int) -> CachedLayer:
    descriptor = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", _digest(n, "c"), 1000)
    return CachedLayer(descriptor, _digest(n, "d"), "proj/app")


def _metrics() -> Metrics:
    return Metrics(CollectorRegistry(), formats=("estargz",))


def test_layers_unused_for_the_ttl_leave_the_cache_and_used_ones_stay(
    state_backend: StateBackend,
) -> None:
    clock = FakeClock()
    store = state_backend.open(clock)
    store.layers.put(_digest(1), "estargz", "k", _layer(1))
    store.layers.put(_digest(2), "estargz", "k", _layer(2))
    clock.advance(TTL - DAY)
    assert store.layers.get(_digest(1), "estargz", "k") == _layer(1)  # used: kept
    clock.advance(2 * DAY)

    assert store.retention.trim_layer_cache(clock.now() - TTL) == 1

    assert store.layers.get(_digest(1), "estargz", "k") == _layer(1)
    assert store.layers.get(_digest(2), "estargz", "k") is None


def test_a_cache_hit_writes_its_use_at_most_once_a_day(state_backend: StateBackend) -> None:
    clock = FakeClock()
    store = state_backend.open(clock)
    store.layers.put(_digest(1), "estargz", "k", _layer(1))
    clock.advance(TOUCH_AFTER_SECONDS / 2)
    store.layers.get(_digest(1), "estargz", "k")  # too recent to record
    clock.advance(TTL - TOUCH_AFTER_SECONDS / 4)
    assert store.retention.trim_layer_cache(clock.now() - TTL) == 1


def test_a_forgotten_layer_is_gone(state_backend: StateBackend) -> None:
    store = state_backend.open(FakeClock())
    store.layers.put(_digest(1), "estargz", "k", _layer(1))
    store.layers.forget(_digest(1), "estargz", "k")
    assert store.layers.get(_digest(1), "estargz", "k") is None


def test_classifications_a_full_scan_did_not_see_are_dropped(state_backend: StateBackend) -> None:
    clock = FakeClock()
    store = state_backend.open(clock)
    for n in range(1200):  # more than one batch of marks
        store.classifications.put(_digest(n), "estargz" if n % 2 else None)
    clock.advance(DAY)
    scan_started = clock.now()
    store.retention.mark_seen((_digest(n) for n in range(0, 1200, 3)), scan_started)
    clock.advance(60)
    store.classifications.put(_digest(5000), "nydus")  # classified during the scan

    assert store.retention.trim_classifications(scan_started) == 800

    assert store.classifications.get(_digest(3)) == "estargz"
    assert store.classifications.get(_digest(0)) is None
    assert store.classifications.get(_digest(1)) is MISSING
    assert store.classifications.get(_digest(5000)) == "nydus"


def test_quarantined_keys_of_deleted_originals_are_forgotten(state_backend: StateBackend) -> None:
    clock = FakeClock()
    store = state_backend.open(clock)
    alive, deleted = Key("p/app", _digest(1), "estargz"), Key("p/app", _digest(2), "estargz")
    for key in (alive, deleted):
        store.queue.add(key)
    for lease in store.queue.lease("test", 2):
        store.queue.quarantine(lease, "refused")
    retention = StateRetention(
        store.retention,
        store.queue,
        lambda repository, digest: digest == alive.digest,
        _metrics(),
        clock,
    )

    assert retention.run()["queue"] == 1

    assert [q.key for q in store.queue.quarantined()] == [alive]


@dataclass
class _Stream:
    """A registry that gets `per_day` new images a day and deletes images older than `keep`:
    each image has a base layer of 5 shared ones and 2 of its own, one converted copy, and
    one in a hundred is refused (quarantined)."""

    store: StateStore
    clock: FakeClock
    per_day: int
    keep: float = 14 * DAY
    born: dict[int, float] = field(default_factory=dict)
    next_image: int = 0

    def alive(self, n: int) -> bool:
        return self.clock.now() - self.born[n] < self.keep

    def push_and_convert(self) -> None:
        store, n = self.store, self.next_image
        self.next_image += 1
        self.born[n] = self.clock.now()
        key = Key("p/app", _digest(n, "a"), "estargz")
        store.queue.add(key)
        [lease] = store.queue.lease("worker", 1)
        if n % 100 == 99:
            store.queue.quarantine(lease, "refused")
            return
        base = n % 5
        if store.layers.get(_digest(base, "b"), "estargz", "k") is None:
            store.layers.put(_digest(base, "b"), "estargz", "k", _layer(base))
        for own in (2 * n, 2 * n + 1):
            store.layers.put(_digest(own, "e"), "estargz", "k", _layer(own))
        store.classifications.put(_digest(n, "f"), "estargz")
        store.queue.done(lease)

    def daily_maintenance(self, retention: StateRetention) -> None:
        started = self.clock.now()
        live = (_digest(n, "f") for n in self.born if self.alive(n) and n % 100 != 99)
        self.store.retention.mark_seen(live, started)
        self.store.retention.trim_classifications(started)
        retention.run()
        for n in [n for n in self.born if not self.alive(n)]:
            del self.born[n]


def _rows(backend: StateBackend) -> dict[str, int]:
    if backend.name != "sqlite":
        import psycopg

        with psycopg.connect(backend.target) as conn:
            return {
                table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]  # noqa: S608
                for table in ("queue", "layer_cache", "classification")
            }
    with sqlite3.connect(backend.target) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            for table in ("queue", "layer_cache", "classification")
        }


def _sqlite_bytes(path: str) -> int:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        size: int = pages * conn.execute("PRAGMA page_size").fetchone()[0]
    return size


@pytest.mark.slow
def test_the_state_stays_bounded_under_a_steady_stream_of_new_images(
    state_backend: StateBackend,
) -> None:
    """10,000 images over 60 simulated days (167 a day, each kept 14 days in the registry).

    Bound: layer cache <= 30 days of layers (2 per image) + the 5 bases; classifications <=
    the copies of the images alive (14 days); queue <= the quarantined keys of images alive.
    On SQLite the file stops growing once the layer cache's 30 days are full.
    """
    clock = FakeClock()
    store = state_backend.open(clock)
    stream = _Stream(store, clock, per_day=167)
    retention = StateRetention(
        store.retention,
        store.queue,
        lambda repository, digest: any(
            _digest(n, "a") == digest for n in stream.born if stream.alive(n)
        ),
        _metrics(),
        clock,
        cache_ttl_seconds=TTL,
    )
    sizes: dict[int, int] = {}
    for day in range(60):
        for _ in range(stream.per_day):
            stream.push_and_convert()
            clock.advance(DAY / stream.per_day)
        stream.daily_maintenance(retention)
        if state_backend.name == "sqlite" and day in (34, 59):
            sizes[day] = _sqlite_bytes(state_backend.target)
    rows = _rows(state_backend)
    print(f"\n{state_backend.name}: after 60 days: rows {rows}, sqlite bytes {sizes}")
    assert rows["layer_cache"] <= 30 * 167 * 2 + 5 + 2 * 167
    assert rows["classification"] <= 15 * 167
    assert rows["queue"] <= 15 * 2
    if sizes:
        assert sizes[59] <= sizes[34] * 1.1
        assert sizes[59] < 8 << 20
