"""The config's `state:` section: which database keeps the queue and the caches.

    state:
      backend: postgresql            # or sqlite (the default): state_dir/state.db, one host
      dsn_credential: acceld-state   # or dsn_file / dsn_env: a libpq DSN, a secret
      pool_size: 10                  # connections per process at most
      lease_period: 60s              # a dead host's keys and scan lead come back after this

The DSN may hold a password, so it is a secret like any other (`reconciler.secrets`): it comes
from a file, the environment or a systemd credential, and never shows in errors or logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from policies.fields import FieldError, Fields
from reconciler.secrets import Secret, read_secret
from reconciler.state.clock import Clock
from reconciler.state.postgres_database import PostgresLocation
from reconciler.state.postgres_state import open_postgres_state
from reconciler.state.sqlite_database import STATE_DB, state_db_path
from reconciler.state.sqlite_state import open_sqlite_state
from reconciler.state.store import StateStore

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
_POSTGRESQL_KEYS = ("dsn_file", "dsn_env", "dsn_credential", "pool_size", "lease_period")
DEFAULT_LEASE_SECONDS = 60.0
MIN_LEASE_SECONDS = 4
MAX_LEASE_SECONDS = 3600
RENEWALS_PER_LEASE = 4
"""A holder renews its leases four times per lease period: three renewals may fail (a database
restart, a slow query) before another host takes over."""


@dataclass(frozen=True)
class SqliteStateSettings:
    """The embedded default: one SQLite file in the state directory, for one host."""

    state_dir: Path


@dataclass(frozen=True)
class PostgresStateSettings:
    """One PostgreSQL database shared by every acceld host."""

    dsn: Secret
    """The libpq connection string or postgresql:// URI (it may hold the password)."""
    pool_size: int = 10
    """Connections one process keeps at most."""
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    """`lease_period`: how long a key or the scan lead stays with a holder that stopped renewing
    it; a dead host's keys wait this long before another host takes them."""


StateSettings = SqliteStateSettings | PostgresStateSettings


def parse_state(
    fields: Fields, env: Mapping[str, str], base: Path, state_dir: Path
) -> StateSettings:
    """The `state:` section (`fields`, empty when absent); secret files are relative to `base`."""
    backend = fields.string("backend", SQLITE)
    if backend == SQLITE:
        given = [key for key in _POSTGRESQL_KEYS if fields.has(key)]
        if given:
            raise FieldError(fields.where(given[0]), "is for backend postgresql only")
        fields.done()
        return SqliteStateSettings(state_dir)
    if backend != POSTGRESQL:
        raise FieldError(fields.where("backend"), f'expected sqlite or postgresql, got "{backend}"')
    dsn = read_secret(fields, "dsn", env, base)
    if dsn is None:
        raise FieldError(
            fields.path or "state",
            "backend postgresql needs dsn_file, dsn_env or dsn_credential",
        )
    settings = PostgresStateSettings(
        dsn,
        fields.integer("pool_size", 10, low=2, high=200),
        _lease_seconds(fields),
    )
    fields.done()
    return settings


def _lease_seconds(fields: Fields) -> float:
    seconds = fields.duration("lease_period", timedelta(seconds=DEFAULT_LEASE_SECONDS))
    if not MIN_LEASE_SECONDS <= seconds.total_seconds() <= MAX_LEASE_SECONDS:
        raise FieldError(
            fields.where("lease_period"),
            f"expected {MIN_LEASE_SECONDS}s to {MAX_LEASE_SECONDS // 60}m, "
            f"got {seconds.total_seconds():g}s",
        )
    return seconds.total_seconds()


def lease_seconds(settings: StateSettings | None) -> float:
    """How long a lease (a key, the scan lead) outlives its holder's last renewal."""
    if isinstance(settings, PostgresStateSettings):
        return settings.lease_seconds
    return DEFAULT_LEASE_SECONDS


def renew_seconds(settings: StateSettings | None) -> float:
    """How often a holder renews its leases."""
    return lease_seconds(settings) / RENEWALS_PER_LEASE


def open_state(
    settings: StateSettings, clock: Clock, *, must_exist: bool = False, migrate: bool = True
) -> StateStore:
    """The state store `settings` name.

    `must_exist` (maintenance commands) makes a missing SQLite file an error instead of a new,
    empty state; `migrate=False` (`acceld check`) makes a PostgreSQL schema that is not current
    an error instead of migrating it.
    """
    if isinstance(settings, SqliteStateSettings):
        return open_sqlite_state(state_db_path(settings.state_dir, must_exist=must_exist), clock)
    location = PostgresLocation(settings.dsn.reveal(), pool_size=settings.pool_size)
    return open_postgres_state(
        location, clock, migrate_schema=migrate, lease_seconds=settings.lease_seconds
    )


def describe_state(settings: StateSettings) -> str:
    """Where the state is, safe to print: the SQLite file, or the server and database."""
    if isinstance(settings, SqliteStateSettings):
        return str(settings.state_dir / STATE_DB)
    return PostgresLocation(settings.dsn.reveal()).where()
