"""The state store on each backend, for the conformance tests: a test module asks for them with
`pytest_plugins = ("tests.support.state_fixtures",)` and takes `state_backend`, which runs the
test once on SQLite and once on PostgreSQL (a throwaway cluster, one database per test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres_server import RunningPostgres, start_postgres
from tests.support.state_backends import BACKENDS, StateBackend


@pytest.fixture(scope="session")
def postgres() -> Iterator[RunningPostgres]:
    """One throwaway PostgreSQL cluster for the session; tests take databases of their own."""
    running = start_postgres()
    yield running
    running.stop()


@pytest.fixture(params=BACKENDS)
def state_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateBackend]:
    if request.param == "sqlite":
        backend = StateBackend("sqlite", str(tmp_path / "state.db"))
    else:
        server: RunningPostgres = request.getfixturevalue("postgres")
        backend = StateBackend("postgresql", server.dsn(server.create_database()))
    yield backend
    backend.close_all()
