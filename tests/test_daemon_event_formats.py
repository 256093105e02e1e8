"""Which formats a webhook event enqueues (pure): generous where only the reconcile step can
decide (no tag, min_age, platforms), strict where the event itself says no."""

from __future__ import annotations

from datetime import UTC, datetime

from harbor_api.webhook_events import ArtifactEvent
from policies.load import parse_policies
from policies.model import Policy
from reconciler.controller.intake import formats_for_event
from reconciler.controller.policy_fingerprint import policy_fingerprint

DIGEST = "sha256:" + "ab" * 32


def policies(*documents: dict[str, object]) -> tuple[Policy, ...]:
    return parse_policies(list(documents), "test")


def pushed(repository: str, tag: str | None) -> ArtifactEvent:
    return ArtifactEvent(
        "pushed",
        repository.split("/", 1)[0],
        repository,
        DIGEST,
        tag,
        "admin",
        "delivery-1",
        datetime(2026, 11, 27, tzinfo=UTC),
    )


WEB = {
    "name": "web",
    "projects": ["web"],
    "tags": ["v*"],
    "exclude_tags": ["*-debug"],
    "formats": ["estargz"],
}


def test_matching_tag_enqueues_the_policy_format_with_its_fingerprint() -> None:
    configured = policies(WEB)
    assert formats_for_event(configured, pushed("web/app", "v1")) == {
        "estargz": policy_fingerprint(configured, "estargz")
    }


def test_tag_outside_the_policy_or_excluded_enqueues_nothing() -> None:
    configured = policies(WEB)
    assert formats_for_event(configured, pushed("web/app", "latest")) == {}
    assert formats_for_event(configured, pushed("web/app", "v1-debug")) == {}


def test_push_by_digest_is_left_to_the_reconcile_step() -> None:
    assert set(formats_for_event(policies(WEB), pushed("web/app", None))) == {"estargz"}


def test_other_project_repository_or_disabled_policy_enqueues_nothing() -> None:
    narrow = {**WEB, "repositories": ["web/front/**"]}
    assert formats_for_event(policies(WEB), pushed("data/app", "v1")) == {}
    assert formats_for_event(policies(narrow), pushed("web/back/api", "v1")) == {}
    assert formats_for_event(policies({**WEB, "enabled": False}), pushed("web/app", "v1")) == {}
