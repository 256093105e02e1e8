from __future__ import annotations

from pathlib import Path

import pytest

from harbor_api.oci import Descriptor
from reconciler.state.sqlite_store import SqliteStateStore
from reconciler.state.store import MISSING, CachedLayer

SOURCE = "sha256:" + "11" * 32
CONVERTED = Descriptor(
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "sha256:" + "22" * 32,
    12345,
    {"containerd.io/snapshot/stargz/toc.digest": "sha256:" + "33" * 32},
)


@pytest.fixture
def store(tmp_path: Path) -> SqliteStateStore:
    return SqliteStateStore(tmp_path / "state.db")


def test_a_converted_layer_is_found_again_by_source_format_and_options(
    tmp_path: Path, store: SqliteStateStore
) -> None:
    layer = CachedLayer(CONVERTED, "sha256:" + "44" * 32, "proj/base")
    store.layer_cache_put(SOURCE, "estargz", "level=9,chunk=4M", layer)
    store.close()
    reopened = SqliteStateStore(tmp_path / "state.db")
    assert reopened.layer_cache_get(SOURCE, "estargz", "level=9,chunk=4M") == layer
    assert reopened.layer_cache_get(SOURCE, "estargz", "level=1,chunk=4M") is None
    assert reopened.layer_cache_get(SOURCE, "zstd:chunked", "level=9,chunk=4M") is None
    assert reopened.layer_cache_get(CONVERTED.digest, "estargz", "level=9,chunk=4M") is None


def test_classification_tells_unknown_from_not_accelerated(store: SqliteStateStore) -> None:
    digest = "sha256:" + "55" * 32
    assert store.classification_get(digest) is MISSING
    store.classification_put(digest, None)
    assert store.classification_get(digest) is None
    other = "sha256:" + "66" * 32
    store.classification_put(other, "estargz")
    assert store.classification_get(other) == "estargz"


def test_scan_marks_keep_the_last_start_and_the_last_success(store: SqliteStateStore) -> None:
    assert store.last_scan("full") is None
    store.scan_started("full", 100.0)
    store.scan_finished("full", 100.0, 160.0, {("web", "estargz"): 3, ("db", "nydus"): 0})
    store.scan_started("full", 400.0)
    mark = store.last_scan("full")
    assert mark is not None
    assert mark.last_started_at == 400.0
    assert (mark.last_success_started_at, mark.last_success_finished_at) == (100.0, 160.0)
    assert mark.missing == {("web", "estargz"): 3, ("db", "nydus"): 0}
    store.scan_finished("incremental", 500.0, 501.0, {})
    assert [m.kind for m in store.scans()] == ["full", "incremental"]
    assert store.scans()[1].missing == {}
