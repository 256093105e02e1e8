"""The config's `state:` section: SQLite by default, PostgreSQL with a DSN that stays secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.fields import FieldError, Fields
from reconciler.state.keys import Key
from reconciler.state_config import (
    PostgresStateSettings,
    SqliteStateSettings,
    describe_state,
    lease_seconds,
    open_state,
    parse_state,
    renew_seconds,
)
from tests.support.clock import FakeClock
from tests.support.postgres_server import RunningPostgres

pytest_plugins = ("tests.support.state_fixtures",)

DSN = "host=db.example port=5433 dbname=acceld user=acceld password=s3cret-dsn-password"


def _parse(section: dict[str, object], env: dict[str, str] | None = None) -> object:
    return parse_state(Fields(section, "state"), env or {}, Path("/etc/acceld"), Path("/var/s"))


def test_without_a_state_section_the_state_is_sqlite_in_the_state_dir() -> None:
    assert _parse({}) == SqliteStateSettings(Path("/var/s"))
    assert _parse({"backend": "sqlite"}) == SqliteStateSettings(Path("/var/s"))


def test_postgresql_takes_its_dsn_from_a_secret_and_never_shows_it() -> None:
    settings = _parse({"backend": "postgresql", "dsn_env": "ACCELD_DSN"}, {"ACCELD_DSN": DSN})
    assert isinstance(settings, PostgresStateSettings)
    assert settings.dsn.reveal() == DSN
    assert settings.pool_size == 10
    assert lease_seconds(settings) == 60.0
    assert "s3cret" not in repr(settings)
    assert describe_state(settings) == "postgresql://db.example:5433/acceld"


def test_a_dsn_file_is_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "dsn").write_text(DSN + "\n")
    (tmp_path / "dsn").chmod(0o600)
    settings = parse_state(
        Fields({"backend": "postgresql", "dsn_file": "dsn", "pool_size": 4}, "state"),
        {},
        tmp_path,
        tmp_path / "state",
    )
    assert isinstance(settings, PostgresStateSettings)
    assert (settings.dsn.reveal(), settings.pool_size) == (DSN, 4)


def test_a_shorter_lease_period_makes_holders_renew_four_times_per_period() -> None:
    section = {"backend": "postgresql", "dsn_env": "ACCELD_DSN", "lease_period": "8s"}
    settings = _parse(section, {"ACCELD_DSN": DSN})
    assert isinstance(settings, PostgresStateSettings)
    assert (lease_seconds(settings), renew_seconds(settings)) == (8.0, 2.0)
    assert (lease_seconds(None), renew_seconds(SqliteStateSettings(Path("/s")))) == (60.0, 15.0)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"backend": "postgres"}, 'state.backend: expected sqlite or postgresql, got "postgres"'),
        ({"backend": "postgresql"}, "state: backend postgresql needs dsn_file, dsn_env or"),
        ({"backend": "postgresql", "dsn": DSN}, "state.dsn: a secret must not be written"),
        ({"dsn_env": "ACCELD_DSN"}, "state.dsn_env: is for backend postgresql only"),
        (
            {"backend": "postgresql", "dsn_env": "ACCELD_DSN", "pool_size": 1},
            "state.pool_size: expected 2 to 200, got 1",
        ),
        (
            {"backend": "postgresql", "dsn_env": "ACCELD_DSN", "lease_period": "2s"},
            "state.lease_period: expected 4s to 60m, got 2s",
        ),
        (
            {"backend": "postgresql", "dsn_env": "ACCELD_DSN", "lease_period": "2h"},
            "state.lease_period: expected 4s to 60m, got 7200s",
        ),
        ({"lease_period": "10s"}, "state.lease_period: is for backend postgresql only"),
        ({"backend": "postgresql", "dsn_env": "UNSET"}, "environment variable UNSET is not set"),
        ({"backend": "sqlite", "pool": 3}, "state.pool: unknown key"),
    ],
)
def test_a_wrong_state_section_names_the_key_and_never_the_dsn(
    section: dict[str, object], message: str
) -> None:
    with pytest.raises(FieldError) as caught:
        _parse(section, {"ACCELD_DSN": DSN})
    assert message in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_open_state_opens_the_configured_backend(tmp_path: Path, postgres: RunningPostgres) -> None:
    sqlite = open_state(SqliteStateSettings(tmp_path / "state"), FakeClock())
    assert (tmp_path / "state" / "state.db").is_file()
    sqlite.close()
    dsn = postgres.dsn(postgres.create_database())
    section = {"backend": "postgresql", "dsn_env": "DSN", "lease_period": "8s"}
    settings = _parse(section, {"DSN": dsn})
    assert isinstance(settings, PostgresStateSettings)
    shared = open_state(settings, FakeClock())
    assert shared.queue.counts().pending == 0
    shared.queue.add(Key("library/app", "sha256:" + "cd" * 32, "estargz"), 0.0)
    (lease,) = shared.queue.lease("serve:host-a:7:abcd", 1)
    assert lease.expires_at - lease.leased_at == 8.0
    shared.close()
