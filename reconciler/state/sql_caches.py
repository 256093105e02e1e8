"""The layer cache and the classification cache in SQL (`sql_database`), on any backend."""

from __future__ import annotations

import json

from harbor_api.oci import Descriptor, canonical_json
from reconciler.state.sql_database import SqlDatabase
from reconciler.state.store import MISSING, CachedLayer, Missing


class SqlLayerCache:
    """`LayerCache` in SQL."""

    def __init__(self, database: SqlDatabase) -> None:
        self._database = database

    def get(self, source_digest: str, format: str, options_key: str) -> CachedLayer | None:
        rows = self._database.read(
            "SELECT descriptor, diff_id, repository FROM layer_cache "
            "WHERE source_digest = ? AND format = ? AND options_key = ?",
            (source_digest, format, options_key),
        )
        if not rows:
            return None
        descriptor = Descriptor.from_json(json.loads(rows[0][0]), "layer cache descriptor")
        return CachedLayer(descriptor, rows[0][1], rows[0][2])

    def put(self, source_digest: str, format: str, options_key: str, layer: CachedLayer) -> None:
        with self._database.write() as conn:
            conn.execute(
                "INSERT INTO layer_cache "
                "(source_digest, format, options_key, descriptor, diff_id, repository) "
                "VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (source_digest, format, options_key) DO UPDATE SET "
                "descriptor = excluded.descriptor, diff_id = excluded.diff_id, "
                "repository = excluded.repository",
                (
                    source_digest,
                    format,
                    options_key,
                    canonical_json(layer.descriptor.to_json()).decode(),
                    layer.diff_id,
                    layer.repository,
                ),
            )


class SqlClassificationCache:
    """`ClassificationCache` in SQL."""

    def __init__(self, database: SqlDatabase) -> None:
        self._database = database

    def get(self, digest: str) -> str | Missing | None:
        rows = self._database.read("SELECT format FROM classification WHERE digest = ?", (digest,))
        if not rows:
            return MISSING
        found: str | None = rows[0][0]
        return found

    def put(self, digest: str, format: str | None) -> None:
        with self._database.write() as conn:
            conn.execute(
                "INSERT INTO classification (digest, format) VALUES (?, ?) "
                "ON CONFLICT (digest) DO UPDATE SET format = excluded.format",
                (digest, format),
            )
