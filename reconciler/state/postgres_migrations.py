"""The PostgreSQL state schema, as numbered steps applied in order and recorded in
`schema_version`, the same way as SQLite's (`migrations`).

Several hosts start at once: the one that takes the advisory lock migrates, the others wait
for it and then find the schema current. A step is never edited once released.
"""

from __future__ import annotations

from typing import Any

import psycopg

from reconciler.state.store import StateError

# pg_advisory_xact_lock key: "acceld" in ASCII, so other users of the database can tell it.
MIGRATION_LOCK = 0x61636365_6C64

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE queue (
            key TEXT PRIMARY KEY,
            state TEXT NOT NULL CHECK (state IN ('pending', 'leased', 'quarantined')),
            due_at DOUBLE PRECISION NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT NOT NULL DEFAULT '',
            policy_fingerprint TEXT,
            dirty_due_at DOUBLE PRECISION,
            owner TEXT,
            owner_host TEXT,
            owner_pid INTEGER,
            token TEXT,
            reconcile_id TEXT,
            leased_at DOUBLE PRECISION,
            expires_at DOUBLE PRECISION,
            quarantined_at DOUBLE PRECISION
        )
        """,
        "CREATE INDEX queue_by_state_due ON queue (state, due_at, key)",
        """
        CREATE TABLE layer_cache (
            source_digest TEXT NOT NULL,
            format TEXT NOT NULL,
            options_key TEXT NOT NULL,
            descriptor TEXT NOT NULL,
            diff_id TEXT NOT NULL,
            repository TEXT NOT NULL,
            PRIMARY KEY (source_digest, format, options_key)
        )
        """,
        "CREATE TABLE classification (digest TEXT PRIMARY KEY, format TEXT)",
        """
        CREATE TABLE scan_marks (
            kind TEXT PRIMARY KEY,
            last_started_at DOUBLE PRECISION,
            last_success_started_at DOUBLE PRECISION,
            last_success_finished_at DOUBLE PRECISION,
            missing TEXT NOT NULL DEFAULT '[]'
        )
        """,
        """
        CREATE TABLE leader_leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL
        )
        """,
    ),
    (
        # Retention: when a cached layer was last used, when a classified digest was last seen
        # by a scan. Rows from before count as used and seen now.
        "ALTER TABLE layer_cache ADD COLUMN used_at DOUBLE PRECISION NOT NULL DEFAULT 0",
        "UPDATE layer_cache SET used_at = extract(epoch FROM now())",
        "CREATE INDEX layer_cache_by_used_at ON layer_cache (used_at)",
        "ALTER TABLE classification ADD COLUMN seen_at DOUBLE PRECISION NOT NULL DEFAULT 0",
        "UPDATE classification SET seen_at = extract(epoch FROM now())",
        "CREATE INDEX classification_by_seen_at ON classification (seen_at)",
    ),
    (
        # The parts the last successful scan of each kind skipped, for `acceld status`.
        "ALTER TABLE scan_marks ADD COLUMN skipped TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE scan_marks ADD COLUMN skipped_total INTEGER NOT NULL DEFAULT 0",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)
TABLES = ("queue", "layer_cache", "classification", "scan_marks", "leader_leases", "schema_version")


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The version the database is at; 0 for an empty one."""
    exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if exists is None or not exists[0]:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def refuse_newer(found: int, where: str) -> None:
    if found > SCHEMA_VERSION:
        raise StateError(
            f"{where}: schema version {found} is newer than this acceld knows "
            f"({SCHEMA_VERSION}); run the newer acceld or use another database"
        )


def migrate(conn: psycopg.Connection[Any], where: str) -> int:
    """Bring the schema up to `SCHEMA_VERSION` in one transaction; the version found before.

    `conn` is a psycopg connection in autocommit mode, so the transaction is ours.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        found = schema_version(conn)
        refuse_newer(found, where)
        if found == SCHEMA_VERSION:
            return found
        for step in MIGRATIONS[found:]:
            for statement in step:
                conn.execute(statement.encode())
        if found == 0:
            conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))
        else:
            conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION,))
    return found
