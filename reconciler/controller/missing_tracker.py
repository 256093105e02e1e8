"""What `acceld_missing_conversions{policy,format}` reports between full scans.

A full scan replaces the set of missing keys, an incremental scan adds what it found, and a key
leaves the set as soon as a worker settles it (converted, present, gone or unwanted). So the
gauge shrinks while conversions land instead of waiting hours for the next full scan.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from policies.diff import Plan, PlanItem
from policies.model import Policy
from reconciler.state.keys import Key


class MissingTracker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._missing: dict[Key, PlanItem] = {}

    def replace(self, items: Iterable[PlanItem]) -> None:
        """The result of a full scan."""
        with self._lock:
            self._missing = {_key(item): item for item in items}

    def add(self, items: Iterable[PlanItem]) -> None:
        """What an incremental scan found."""
        with self._lock:
            for item in items:
                self._missing[_key(item)] = item

    def settled(self, key: Key) -> None:
        with self._lock:
            self._missing.pop(key, None)

    def counts(self, policies: Iterable[Policy]) -> dict[tuple[str, str], int]:
        """(policy, format) → missing, with 0 for every enabled policy's formats."""
        with self._lock:
            plan = Plan(tuple(self._missing.values()))
        return plan.missing_by_policy_format(policies)


def _key(item: PlanItem) -> Key:
    return Key(item.repository, item.digest, item.format)
