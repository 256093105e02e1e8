"""From webhook events to keys: which formats an event may need, enqueued with the fingerprint
of the policies that want them. Intake never calls Harbor and never converts; the reconcile step
re-reads everything, so being generous here costs one cheap reconcile at most."""

from __future__ import annotations

from collections.abc import Sequence

from harbor_api.webhook_events import ArtifactEvent
from policies.glob import any_match
from policies.match import matching_tags, policy_matches_project
from policies.model import Policy
from reconciler.controller.policy_fingerprint import policy_fingerprint
from reconciler.state.keys import Key
from reconciler.state.store import KeyQueue
from reconciler.state.workqueue import WorkQueue


def formats_for_event(policies: Sequence[Policy], event: ArtifactEvent) -> dict[str, str]:
    """format → policy fingerprint, for the formats some enabled policy may want of the image.

    Generous on purpose: a tag filter is only applied when the event names a tag, and the
    reconcile step re-reads the artifact and decides for real.
    """
    wanted: dict[str, str] = {}
    for policy in policies:
        if not (
            policy.enabled
            and policy_matches_project(policy, event.project)
            and any_match(policy.repositories, event.repository)
        ):
            continue
        if event.tag is not None and not matching_tags(policy, (event.tag,)):
            continue
        for fmt in policy.formats:
            wanted.setdefault(fmt, policy_fingerprint(policies, fmt))
    return wanted


def enqueue_events(
    events: Sequence[ArtifactEvent],
    policies: Sequence[Policy],
    queue: WorkQueue,
    keys: KeyQueue,
) -> int:
    """Enqueue what `events` may need; a deleted artifact's keys are forgotten. Keys added."""
    added = 0
    for event in events:
        if event.kind == "deleted":
            for fmt in {f for p in policies for f in p.formats}:
                keys.forget(Key(event.repository, event.digest, fmt))
            continue
        for fmt, fingerprint in formats_for_event(policies, event).items():
            queue.add(Key(event.repository, event.digest, fmt), None, fingerprint)
            added += 1
    return added
