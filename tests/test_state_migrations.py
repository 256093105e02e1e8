from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from reconciler.state.keys import Key
from reconciler.state.migrations import MIGRATIONS, SCHEMA_VERSION
from reconciler.state.sqlite_database import STATE_DB, state_db_path
from reconciler.state.sqlite_state import open_sqlite_state
from reconciler.state.store import StateError, StateStore
from tests.support.clock import FakeClock

KEY = Key("proj/app", "sha256:" + "cd" * 32, "estargz")


def _open(path: Path) -> StateStore:
    return open_sqlite_state(path, FakeClock())


def _version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        (version,) = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(version)


def test_an_empty_directory_gets_a_current_schema_in_wal_mode(tmp_path: Path) -> None:
    path = state_db_path(tmp_path / "state", must_exist=False)
    _open(path).close()
    assert path == tmp_path / "state" / STATE_DB
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    assert _version(path) == SCHEMA_VERSION
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {
        "queue",
        "layer_cache",
        "classification",
        "scan_marks",
        "leader_leases",
        "schema_version",
    } <= tables


def test_reopening_keeps_the_data_and_the_single_version_row(tmp_path: Path) -> None:
    path = tmp_path / STATE_DB
    store = _open(path)
    store.queue.add(KEY, 1.0)
    store.close()
    for _ in range(3):
        _open(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone() == (1,)
    assert _open(path).queue.counts().pending == 1


def test_a_database_from_a_newer_acceld_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / STATE_DB
    _open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    before = path.read_bytes()
    with pytest.raises(StateError, match=f"schema version {SCHEMA_VERSION + 1} is newer"):
        _open(path)
    assert _version(path) == SCHEMA_VERSION + 1
    assert path.read_bytes() == before


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / STATE_DB
    path.write_bytes(b"not sqlite at all, just some bytes " * 50)
    with pytest.raises(StateError, match="cannot open the state database") as caught:
        _open(path)
    assert str(path) in str(caught.value)


def test_a_missing_state_database_is_an_error_when_it_must_exist(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="no state database"):
        state_db_path(tmp_path / "typo", must_exist=True)
    assert not (tmp_path / "typo").exists()


def test_a_database_of_an_older_acceld_is_brought_up_to_date_keeping_its_data(
    tmp_path: Path,
) -> None:
    path = tmp_path / STATE_DB
    with sqlite3.connect(path) as conn:
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version (version) VALUES (1)")
        conn.execute(
            "INSERT INTO queue (key, state, due_at) VALUES (?, 'pending', 1.0)", (str(KEY),)
        )
        conn.execute("INSERT INTO classification (digest, format) VALUES ('sha256:c', 'nydus')")
        conn.execute("INSERT INTO scan_marks (kind, last_started_at) VALUES ('full', 5.0)")
    store = _open(path)
    assert (store.database.migrated_from, store.database.schema_version) == (1, SCHEMA_VERSION)
    assert store.queue.key_state(KEY) is not None
    assert store.leaders.hold("scan", "host-a", 30)
    # Rows from before retention count as seen when the database was migrated.
    assert store.retention.trim_classifications(time.time() - 3600) == 0
    assert store.classifications.get("sha256:c") == "nydus"
    # A scan mark from before skipped-part records skipped nothing.
    mark = store.scans.last_scan("full")
    assert mark is not None
    assert (mark.last_started_at, mark.skipped, mark.skipped_total) == (5.0, (), 0)
    store.close()
    assert _version(path) == SCHEMA_VERSION == 4
