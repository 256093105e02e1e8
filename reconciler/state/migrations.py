"""The state database schema, as numbered steps applied in order and recorded in `schema_version`.

A step is never edited once released: a change to the schema is a new step at the end.
"""

from __future__ import annotations

import sqlite3

from reconciler.state.store import StateError

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE queue (
            key TEXT PRIMARY KEY,
            state TEXT NOT NULL CHECK (state IN ('pending', 'leased', 'quarantined')),
            due_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT NOT NULL DEFAULT '',
            policy_fingerprint TEXT,
            dirty_due_at REAL,
            owner TEXT,
            owner_host TEXT,
            owner_pid INTEGER,
            token TEXT,
            reconcile_id TEXT,
            leased_at REAL,
            expires_at REAL,
            quarantined_at REAL
        ) WITHOUT ROWID
        """,
        "CREATE INDEX queue_by_state_due ON queue (state, due_at)",
        """
        CREATE TABLE layer_cache (
            source_digest TEXT NOT NULL,
            format TEXT NOT NULL,
            options_key TEXT NOT NULL,
            descriptor TEXT NOT NULL,
            diff_id TEXT NOT NULL,
            repository TEXT NOT NULL,
            PRIMARY KEY (source_digest, format, options_key)
        ) WITHOUT ROWID
        """,
        "CREATE TABLE classification (digest TEXT PRIMARY KEY, format TEXT) WITHOUT ROWID",
        """
        CREATE TABLE scan_marks (
            kind TEXT PRIMARY KEY,
            last_started_at REAL,
            last_success_started_at REAL,
            last_success_finished_at REAL,
            missing TEXT NOT NULL DEFAULT '[]'
        ) WITHOUT ROWID
        """,
    ),
    (
        """
        CREATE TABLE leader_leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            expires_at REAL NOT NULL
        ) WITHOUT ROWID
        """,
    ),
    (
        # Retention: when a cached layer was last used, when a classified digest was last seen
        # by a scan. Rows from before count as used and seen now.
        "ALTER TABLE layer_cache ADD COLUMN used_at REAL NOT NULL DEFAULT 0",
        "UPDATE layer_cache SET used_at = CAST(strftime('%s', 'now') AS REAL)",
        "CREATE INDEX layer_cache_by_used_at ON layer_cache (used_at)",
        "ALTER TABLE classification ADD COLUMN seen_at REAL NOT NULL DEFAULT 0",
        "UPDATE classification SET seen_at = CAST(strftime('%s', 'now') AS REAL)",
        "CREATE INDEX classification_by_seen_at ON classification (seen_at)",
    ),
    (
        # The parts the last successful scan of each kind skipped, for `acceld status`.
        "ALTER TABLE scan_marks ADD COLUMN skipped TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE scan_marks ADD COLUMN skipped_total INTEGER NOT NULL DEFAULT 0",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, where: str) -> int:
    """Bring the schema up to `SCHEMA_VERSION` in one transaction; the version found before.

    `conn` must be in autocommit mode (`isolation_level=None`) so the transaction is ours.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        found = int(row[0]) if row else 0
        if found > SCHEMA_VERSION:
            raise StateError(
                f"{where}: schema version {found} is newer than this acceld knows "
                f"({SCHEMA_VERSION}); run the newer acceld or use another state directory"
            )
        for step in MIGRATIONS[found:]:
            for statement in step:
                conn.execute(statement)
        if row is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        elif found != SCHEMA_VERSION:
            conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found
