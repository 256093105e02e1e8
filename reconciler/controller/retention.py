"""State retention: what the daemon trims so that the state stays bounded under a steady
stream of new images.

- Layer-cache rows not used for `cache_ttl` go here; a row whose blob the registry lost goes
  when a conversion finds it so (`layer_conversion`).
- Classification rows of digests a full scan did not see go after that scan (`ScanRunner`).
- Quarantined queue rows of originals that no longer exist go here (a done key leaves the
  queue at once, and a pending one whose original is gone is forgotten by its reconcile).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from reconciler.observability.metrics import Metrics
from reconciler.state.clock import Clock
from reconciler.state.store import KeyQueue, Retention

log = logging.getLogger(__name__)

DEFAULT_CACHE_TTL_SECONDS = 30 * 24 * 3600


class StateRetention:
    """One trimming pass over the layer cache and the quarantined keys."""

    def __init__(
        self,
        retention: Retention,
        queue: KeyQueue,
        original_exists: Callable[[str, str], bool],
        metrics: Metrics,
        clock: Clock,
        *,
        cache_ttl_seconds: float = DEFAULT_CACHE_TTL_SECONDS,
    ) -> None:
        self._retention = retention
        self._queue = queue
        self._original_exists = original_exists
        self._metrics = metrics
        self._clock = clock
        self.cache_ttl_seconds = cache_ttl_seconds

    def run(self) -> dict[str, int]:
        """Trim; the number of rows dropped per table."""
        now = self._clock.now()
        trimmed = {"layer_cache": self._retention.trim_layer_cache(now - self.cache_ttl_seconds)}
        gone = [
            held.key
            for held in self._queue.quarantined()
            if not self._original_exists(held.key.repository, held.key.digest)
        ]
        for key in gone:
            self._queue.forget(key)
        trimmed["queue"] = len(gone)
        self._metrics.trimmed(trimmed)
        log.info("state trimmed", extra={f"{table}_rows": n for table, n in trimmed.items()})
        return trimmed
