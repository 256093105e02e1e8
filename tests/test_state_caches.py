from __future__ import annotations

import pytest

from harbor_api.oci import Descriptor
from reconciler.state.store import MAX_SKIPPED_KEPT, MISSING, CachedLayer, ScanError, StateStore
from tests.support.clock import FakeClock
from tests.support.state_backends import StateBackend

pytest_plugins = ("tests.support.state_fixtures",)

SOURCE = "sha256:" + "11" * 32
CONVERTED = Descriptor(
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "sha256:" + "22" * 32,
    12345,
    {"containerd.io/snapshot/stargz/toc.digest": "sha256:" + "33" * 32},
)


@pytest.fixture
def store(state_backend: StateBackend) -> StateStore:
    return state_backend.open(FakeClock())


def test_a_converted_layer_is_found_again_by_source_format_and_options(
    state_backend: StateBackend, store: StateStore
) -> None:
    layer = CachedLayer(CONVERTED, "sha256:" + "44" * 32, "proj/base")
    store.layers.put(SOURCE, "estargz", "level=9,chunk=4M", layer)
    store.close()
    reopened = state_backend.open(FakeClock())
    assert reopened.layers.get(SOURCE, "estargz", "level=9,chunk=4M") == layer
    assert reopened.layers.get(SOURCE, "estargz", "level=1,chunk=4M") is None
    assert reopened.layers.get(SOURCE, "zstd:chunked", "level=9,chunk=4M") is None
    assert reopened.layers.get(CONVERTED.digest, "estargz", "level=9,chunk=4M") is None


def test_a_layer_converted_again_replaces_the_cached_one(store: StateStore) -> None:
    first = CachedLayer(CONVERTED, "sha256:" + "44" * 32, "proj/base")
    again = CachedLayer(CONVERTED, "sha256:" + "44" * 32, "proj/other")
    store.layers.put(SOURCE, "estargz", "k", first)
    store.layers.put(SOURCE, "estargz", "k", again)
    assert store.layers.get(SOURCE, "estargz", "k") == again


def test_classification_tells_unknown_from_not_accelerated(store: StateStore) -> None:
    digest = "sha256:" + "55" * 32
    assert store.classifications.get(digest) is MISSING
    store.classifications.put(digest, None)
    assert store.classifications.get(digest) is None
    other = "sha256:" + "66" * 32
    store.classifications.put(other, "estargz")
    assert store.classifications.get(other) == "estargz"
    store.classifications.put(other, "estargz")
    assert store.classifications.get(other) == "estargz"


def test_scan_marks_keep_the_last_start_and_the_last_success(store: StateStore) -> None:
    marks = store.scans
    assert marks.last_scan("full") is None
    marks.scan_started("full", 100.0)
    marks.scan_finished("full", 100.0, 160.0, {("web", "estargz"): 3, ("db", "nydus"): 0})
    marks.scan_started("full", 400.0)
    mark = marks.last_scan("full")
    assert mark is not None
    assert mark.last_started_at == 400.0
    assert (mark.last_success_started_at, mark.last_success_finished_at) == (100.0, 160.0)
    assert mark.missing == {("web", "estargz"): 3, ("db", "nydus"): 0}
    marks.scan_finished("incremental", 500.0, 501.0, {})
    assert [m.kind for m in marks.scans()] == ["full", "incremental"]
    assert marks.scans()[1].missing == {}


def test_scan_marks_keep_what_the_last_success_skipped(store: StateStore) -> None:
    marks = store.scans
    skipped = [ScanError("image", f"proj/app:v{i}", f"reason {i} ✓") for i in range(150)]
    marks.scan_finished("full", 100.0, 160.0, {}, skipped)
    mark = marks.last_scan("full")
    assert mark is not None
    assert mark.skipped == tuple(skipped[:MAX_SKIPPED_KEPT])
    assert mark.skipped_total == 150
    marks.scan_finished("full", 200.0, 260.0, {})
    mark = marks.last_scan("full")
    assert mark is not None
    assert (mark.skipped, mark.skipped_total) == ((), 0)
