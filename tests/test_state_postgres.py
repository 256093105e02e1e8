"""The PostgreSQL state database itself: migrations under an advisory lock, a newer schema
refused, errors that name the server but never the DSN's secrets, a least-privilege role, and a
server restart the pool recovers from."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest

from reconciler.state.keys import Key
from reconciler.state.postgres_database import PostgresDatabase, PostgresLocation
from reconciler.state.postgres_migrations import SCHEMA_VERSION
from reconciler.state.postgres_state import open_postgres_state
from reconciler.state.store import StateError, StateStore
from tests.support.clock import FakeClock
from tests.support.postgres_server import RunningPostgres, start_postgres
from tests.support.registry_server import free_port

pytest_plugins = ("tests.support.state_fixtures",)

KEY = Key("proj/app", "sha256:" + "cd" * 32, "estargz")


@pytest.fixture
def dsn(postgres: RunningPostgres) -> str:
    return postgres.dsn(postgres.create_database())


def _open(dsn: str, **options: bool) -> StateStore:
    return open_postgres_state(PostgresLocation(dsn), FakeClock(), **options)


def _version_rows(dsn: str) -> list[tuple[int]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT version FROM schema_version").fetchall()


def _tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
    return {row[0] for row in rows}


def test_an_empty_database_gets_the_current_schema(dsn: str) -> None:
    store = _open(dsn)
    assert (store.database.migrated_from, store.database.schema_version) == (0, SCHEMA_VERSION)
    store.close()
    assert _version_rows(dsn) == [(SCHEMA_VERSION,)]
    assert _tables(dsn) == {
        "queue",
        "layer_cache",
        "classification",
        "scan_marks",
        "leader_leases",
        "schema_version",
    }


def test_reopening_keeps_the_data_and_the_single_version_row(dsn: str) -> None:
    store = _open(dsn)
    store.queue.add(KEY, 1.0)
    store.close()
    for _ in range(3):
        _open(dsn).close()
    assert _version_rows(dsn) == [(SCHEMA_VERSION,)]
    reopened = _open(dsn)
    assert reopened.database.migrated_from == SCHEMA_VERSION
    assert reopened.queue.counts().pending == 1
    reopened.close()


def test_hosts_starting_together_migrate_once(dsn: str) -> None:
    opened: list[StateStore] = []
    failures: list[BaseException] = []
    start = threading.Barrier(8)

    def start_host() -> None:
        start.wait()
        try:
            opened.append(_open(dsn))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=start_host) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for store in opened:
        store.close()
    assert failures == []
    assert len(opened) == 8
    assert _version_rows(dsn) == [(SCHEMA_VERSION,)]


def test_a_database_from_a_newer_acceld_is_refused_untouched(dsn: str) -> None:
    _open(dsn).close()
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StateError, match=f"schema version {SCHEMA_VERSION + 1} is newer"):
        _open(dsn)
    assert _version_rows(dsn) == [(SCHEMA_VERSION + 1,)]


def test_without_migration_an_old_schema_is_an_error_that_says_what_to_run(dsn: str) -> None:
    with pytest.raises(StateError, match=r"schema version 0 is older .* run acceld migrate"):
        _open(dsn, migrate_schema=False)
    assert _tables(dsn) == set()


def test_an_unreachable_server_is_named_without_the_dsn(postgres: RunningPostgres) -> None:
    port = free_port()
    dsn = postgres.dsn("acceld", password="do-not-show-me", port=str(port), connect_timeout="2")
    with pytest.raises(StateError) as caught:
        _open(dsn)
    message = str(caught.value)
    assert message.startswith(f"postgresql://127.0.0.1:{port}/acceld: cannot open")
    assert "do-not-show-me" not in message


def test_a_wrong_password_says_so_without_showing_it(postgres: RunningPostgres) -> None:
    dsn = postgres.dsn("postgres", password="wrong-secret-password")
    with pytest.raises(StateError, match="password authentication failed") as caught:
        _open(dsn)
    assert "wrong-secret-password" not in str(caught.value)


def test_a_dsn_that_does_not_parse_is_refused_without_quoting_it() -> None:
    with pytest.raises(StateError, match="not a valid libpq") as caught:
        _open("host=db password=hunter2 this is not a dsn")
    assert "hunter2" not in str(caught.value)


def test_a_role_that_may_not_create_tables_cannot_migrate_but_can_run_on_a_migrated_schema(
    postgres: RunningPostgres,
) -> None:
    database = postgres.create_database()
    role = f"app_{database[-8:]}"
    postgres.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'app-password'")
    app = postgres.dsn(database, user=role, password="app-password")
    with pytest.raises(StateError, match="permission denied for schema public"):
        _open(app)
    _open(postgres.dsn(database)).close()
    postgres.execute(
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        dbname=database,
    )
    store = _open(app)
    store.queue.add(KEY, 1.0)
    assert store.queue.counts().pending == 1
    store.close()


@pytest.fixture
def own_postgres() -> Iterator[RunningPostgres]:
    """A cluster of this test's own, to restart without disturbing the others."""
    running = start_postgres()
    yield running
    running.stop()


def test_the_pool_reconnects_after_the_server_restarts(own_postgres: RunningPostgres) -> None:
    store = _open(own_postgres.dsn(own_postgres.create_database()))
    store.queue.add(KEY, 1.0)
    busy = threading.Barrier(4)
    # Four transactions at once leave four connections in the pool, all stale after the restart.
    threads = [threading.Thread(target=_counts_together, args=(store, busy)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    own_postgres.restart()
    store.queue.add(Key("proj/other", "sha256:" + "ab" * 32, "estargz"), 1.0)
    assert store.queue.counts().pending == 2
    (lease, _) = store.queue.lease("w", 2)
    assert store.queue.done(lease)
    store.close()


def _counts_together(store: StateStore, busy: threading.Barrier) -> None:
    database = store.database
    assert isinstance(database, PostgresDatabase)
    with database.write() as conn:
        conn.execute("SELECT 1")
        busy.wait(timeout=10)
