"""`acceld prune` and the daemon's scheduled prune: a `Pruner` over the runtime's source.

Keys the work queue is converting now are passed as busy, so the platform copies a running
conversion has pushed, but not yet listed in its converted index, are left alone.
"""

from __future__ import annotations

from datetime import UTC, datetime

from reconciler.controller.prune import Pruner, PruneReport
from reconciler.service.backfill import select_policies
from reconciler.service.runtime import Runtime


def run_prune(
    runtime: Runtime,
    *,
    policy: str | None = None,
    unwanted: bool = False,
    dry_run: bool = False,
) -> PruneReport:
    """Prune the whole source, or only `policy`'s repositories and formats."""
    only = select_policies(runtime.config.policies, policy) if policy is not None else None

    def busy() -> frozenset[tuple[str, str]]:
        return frozenset(
            (held.key.repository, held.key.digest) for held in runtime.store.queue.in_progress()
        )

    pruner = Pruner(
        runtime.source,
        runtime.config.policies,
        runtime.metrics,
        busy=busy,
        now=lambda: datetime.fromtimestamp(runtime.clock.now(), UTC),
    )
    return pruner.run(only=only, unwanted=unwanted, dry_run=dry_run)
