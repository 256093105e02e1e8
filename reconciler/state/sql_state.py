"""The parts of a state store over one SQL database, the same on every backend."""

from __future__ import annotations

import random

from reconciler.state.backoff import Backoff
from reconciler.state.clock import Clock
from reconciler.state.sql_caches import SqlClassificationCache, SqlLayerCache, SqlRetention
from reconciler.state.sql_database import SqlDatabase
from reconciler.state.sql_leader_leases import SqlLeaderLeases
from reconciler.state.sql_queue import SqlKeyQueue
from reconciler.state.sql_scan_marks import SqlScanMarks
from reconciler.state.store import StateStore


def sql_state_store(
    database: SqlDatabase,
    clock: Clock,
    *,
    lease_seconds: float,
    backoff: Backoff | None,
    rng: random.Random | None,
) -> StateStore:
    return StateStore(
        queue=SqlKeyQueue(database, clock, lease_seconds=lease_seconds, backoff=backoff, rng=rng),
        layers=SqlLayerCache(database, clock),
        classifications=SqlClassificationCache(database, clock),
        scans=SqlScanMarks(database),
        leaders=SqlLeaderLeases(database, clock),
        database=database,
        retention=SqlRetention(database),
    )
