"""`acceld migrate`, `status` and `retry` on each backend: the state named by the config's
`state:` section (or `--state-dir`), the DSN read from its secret and never shown."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.state.keys import Key
from reconciler.state.migrations import SCHEMA_VERSION as SQLITE_SCHEMA
from reconciler.state.postgres_migrations import SCHEMA_VERSION as POSTGRES_SCHEMA
from tests.support.clock import FakeClock
from tests.support.postgres_server import SUPERUSER_PASSWORD, RunningPostgres
from tests.support.state_backends import StateBackend, open_state

pytest_plugins = ("tests.support.state_fixtures",)

KEY = Key("library/app", "sha256:" + "ab" * 32, "estargz")


def _config(tmp_path: Path, backend: StateBackend) -> Path:
    """A config whose state is `backend`: SQLite in its state_dir, PostgreSQL by DSN secret."""
    config = tmp_path / "config.yaml"
    if backend.name == "sqlite":
        state = f"state_dir: {Path(backend.target).parent}\n"
    else:
        state = "state: {backend: postgresql, dsn_env: ACCELD_STATE_DSN}\n"
    config.write_text(
        "source: {kind: harbor, url: 'https://harbor.example', username: 'robot$a',"
        " password_env: ACCELD_NOT_SET_IN_THIS_SHELL}\n"
        f"{state}policies: [{{name: a, formats: [estargz]}}]\n"
    )
    return config


def _env(backend: StateBackend) -> dict[str, str]:
    return {"ACCELD_STATE_DSN": backend.target} if backend.name == "postgresql" else {}


def _acceld(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Exit code and output; an error's message stands for the output, as `main` prints it."""
    result = CliRunner().invoke(cli, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return 1, str(result.exception)
    return result.exit_code, result.output


def test_migrate_creates_the_schema_then_finds_it_current(
    tmp_path: Path, state_backend: StateBackend
) -> None:
    config = str(_config(tmp_path, state_backend))
    version = SQLITE_SCHEMA if state_backend.name == "sqlite" else POSTGRES_SCHEMA
    code, output = _acceld(_env(state_backend), "migrate", "--config", config)
    assert code == 0, output
    assert output.endswith(f": schema version {version}, migrated from version 0\n")
    code, output = _acceld(_env(state_backend), "migrate", "--config", config)
    assert (code, output.endswith(f": schema version {version}, already current\n")) == (0, True)
    assert SUPERUSER_PASSWORD not in output


def test_status_and_retry_work_on_the_configured_state_without_the_sources_secrets(
    tmp_path: Path, state_backend: StateBackend
) -> None:
    config = str(_config(tmp_path, state_backend))
    store = state_backend.open(FakeClock())
    store.queue.add(KEY, 1.0)
    (lease,) = store.queue.lease("serve:host-a:7:abcd", 1)
    store.queue.quarantine(lease, "layer 1: not a tar stream")
    code, output = _acceld(_env(state_backend), "status", "--config", config, "--output", "json")
    assert code == 0, output
    assert json.loads(output)["queue"] == {"pending": 0, "in_progress": 0, "quarantined": 1}
    code, output = _acceld(_env(state_backend), "retry", str(KEY), "--config", config)
    assert (code, output) == (0, f"{KEY} back in the queue\n")
    assert store.queue.counts().pending == 1


def test_a_postgresql_state_without_its_dsn_is_an_error_naming_the_key(tmp_path: Path) -> None:
    config = str(_config(tmp_path, StateBackend("postgresql", "")))
    code, output = _acceld({}, "status", "--config", config)
    assert code == 1
    assert "state.dsn_env: environment variable ACCELD_STATE_DSN is not set" in output


def test_status_of_an_unreachable_server_names_it_but_not_the_password(
    tmp_path: Path, postgres: RunningPostgres
) -> None:
    dsn = postgres.dsn("acceld", password="not-for-your-eyes", port="1", connect_timeout="2")
    backend = StateBackend("postgresql", dsn)
    code, output = _acceld(_env(backend), "status", "--config", str(_config(tmp_path, backend)))
    assert code == 1
    assert "postgresql://127.0.0.1:1/acceld: cannot open the state database" in output
    assert "not-for-your-eyes" not in output


def test_a_sqlite_state_dir_given_on_the_command_line_wins_over_the_config(
    tmp_path: Path, postgres: RunningPostgres
) -> None:
    local = StateBackend("sqlite", str(tmp_path / "local" / "state.db"))
    (tmp_path / "local").mkdir()
    open_state("sqlite", local.target, FakeClock()).close()
    shared = StateBackend("postgresql", postgres.dsn(postgres.create_database()))
    config = str(_config(tmp_path, shared))
    code, output = _acceld(
        _env(shared), "status", "--config", config, "--state-dir", str(tmp_path / "local")
    )
    assert code == 0, output
    assert output.startswith("queue: 0 pending")
