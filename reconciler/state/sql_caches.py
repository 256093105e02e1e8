"""The layer cache and the classification cache in SQL (`sql_database`), on any backend.

Each row carries when it was last used (a layer) or seen (a classified digest), so that
`SqlRetention` can trim what a year of new images would otherwise pile up.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from harbor_api.oci import Descriptor, canonical_json
from reconciler.state.clock import Clock
from reconciler.state.sql_database import SqlDatabase
from reconciler.state.store import MISSING, CachedLayer, Missing

TOUCH_AFTER_SECONDS = 24 * 3600.0
"""A cache hit records its use only when the last recorded one is older than this: one write a
day per row at most, while retention counts in weeks."""
_SEEN_BATCH = 500


class SqlLayerCache:
    """`LayerCache` in SQL; a hit records its time of use (`used_at`)."""

    def __init__(self, database: SqlDatabase, clock: Clock) -> None:
        self._database = database
        self._clock = clock

    def get(self, source_digest: str, format: str, options_key: str) -> CachedLayer | None:
        key = (source_digest, format, options_key)
        rows = self._database.read(
            "SELECT descriptor, diff_id, repository, used_at FROM layer_cache "
            "WHERE source_digest = ? AND format = ? AND options_key = ?",
            key,
        )
        if not rows:
            return None
        now = self._clock.now()
        if rows[0][3] < now - TOUCH_AFTER_SECONDS:
            with self._database.write() as conn:
                conn.execute(
                    "UPDATE layer_cache SET used_at = ? "
                    "WHERE source_digest = ? AND format = ? AND options_key = ?",
                    (now, *key),
                )
        descriptor = Descriptor.from_json(json.loads(rows[0][0]), "layer cache descriptor")
        return CachedLayer(descriptor, rows[0][1], rows[0][2])

    def put(self, source_digest: str, format: str, options_key: str, layer: CachedLayer) -> None:
        with self._database.write() as conn:
            conn.execute(
                "INSERT INTO layer_cache "
                "(source_digest, format, options_key, descriptor, diff_id, repository, used_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (source_digest, format, options_key) DO UPDATE SET "
                "descriptor = excluded.descriptor, diff_id = excluded.diff_id, "
                "repository = excluded.repository, used_at = excluded.used_at",
                (
                    source_digest,
                    format,
                    options_key,
                    canonical_json(layer.descriptor.to_json()).decode(),
                    layer.diff_id,
                    layer.repository,
                    self._clock.now(),
                ),
            )

    def forget(self, source_digest: str, format: str, options_key: str) -> None:
        with self._database.write() as conn:
            conn.execute(
                "DELETE FROM layer_cache "
                "WHERE source_digest = ? AND format = ? AND options_key = ?",
                (source_digest, format, options_key),
            )


class SqlClassificationCache:
    """`ClassificationCache` in SQL; a classification records when it was made (`seen_at`)."""

    def __init__(self, database: SqlDatabase, clock: Clock) -> None:
        self._database = database
        self._clock = clock

    def get(self, digest: str) -> str | Missing | None:
        rows = self._database.read("SELECT format FROM classification WHERE digest = ?", (digest,))
        if not rows:
            return MISSING
        found: str | None = rows[0][0]
        return found

    def put(self, digest: str, format: str | None) -> None:
        with self._database.write() as conn:
            conn.execute(
                "INSERT INTO classification (digest, format, seen_at) VALUES (?, ?, ?) "
                "ON CONFLICT (digest) DO UPDATE SET format = excluded.format, "
                "seen_at = excluded.seen_at",
                (digest, format, self._clock.now()),
            )


class SqlRetention:
    """`Retention` in SQL: trims the caches by time of last use or sight."""

    def __init__(self, database: SqlDatabase) -> None:
        self._database = database

    def trim_layer_cache(self, unused_before: float) -> int:
        with self._database.write() as conn:
            return conn.execute(
                "DELETE FROM layer_cache WHERE used_at < ?", (unused_before,)
            ).rowcount

    def mark_seen(self, digests: Iterable[str], at: float) -> None:
        batch: list[str] = []
        for digest in digests:
            batch.append(digest)
            if len(batch) == _SEEN_BATCH:
                self._mark(batch, at)
                batch = []
        if batch:
            self._mark(batch, at)

    def _mark(self, digests: list[str], at: float) -> None:
        marks = ", ".join("?" for _ in digests)
        with self._database.write() as conn:
            conn.execute(
                f"UPDATE classification SET seen_at = ? WHERE digest IN ({marks}) "  # noqa: S608 (placeholders only)
                "AND seen_at < ?",
                (at, *digests, at),
            )

    def trim_classifications(self, unseen_before: float) -> int:
        with self._database.write() as conn:
            return conn.execute(
                "DELETE FROM classification WHERE seen_at < ?", (unseen_before,)
            ).rowcount
