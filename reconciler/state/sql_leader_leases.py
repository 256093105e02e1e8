"""Leader leases in SQL (`sql_database`): one row per name, taken over once it has expired."""

from __future__ import annotations

from reconciler.state.clock import Clock
from reconciler.state.sql_database import SqlDatabase
from reconciler.state.store import LeaderLease


class SqlLeaderLeases:
    """`LeaderLeases` in SQL; one conditional upsert decides who holds a name."""

    def __init__(self, database: SqlDatabase, clock: Clock) -> None:
        self._database = database
        self._clock = clock

    def hold(self, name: str, holder: str, seconds: float) -> bool:
        if seconds <= 0:
            raise ValueError(f"a leader lease must last longer than 0 s, got {seconds}")
        now = self._clock.now()
        with self._database.write() as conn:
            return (
                conn.execute(
                    "INSERT INTO leader_leases (name, holder, expires_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                    "expires_at = excluded.expires_at "
                    "WHERE leader_leases.holder = excluded.holder "
                    "OR leader_leases.expires_at < ?",
                    (name, holder, now + seconds, now),
                ).rowcount
                == 1
            )

    def give_up(self, name: str, holder: str) -> None:
        with self._database.write() as conn:
            conn.execute("DELETE FROM leader_leases WHERE name = ? AND holder = ?", (name, holder))

    def leaders(self) -> list[LeaderLease]:
        rows = self._database.read(
            "SELECT name, holder, expires_at FROM leader_leases ORDER BY name"
        )
        return [LeaderLease(*row) for row in rows]
