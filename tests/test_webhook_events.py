"""Every payload shape Harbor's webhook documentation describes, built from its facts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from harbor_api.webhook_events import (
    ArtifactEvent,
    ArtifactEvents,
    IgnoredEvent,
    WebhookInvalid,
    parse_webhook,
)

DIGEST_A = "sha256:" + "4f" * 32
DIGEST_B = "sha256:" + "0c" * 32
HOST = "registry.test.invalid"


def repository(project: str = "shop", path: str = "backend/cart") -> dict[str, Any]:
    return {
        "date_created": 1760000000,
        "name": path,
        "namespace": project,
        "repo_full_name": f"{project}/{path}",
        "repo_type": "private",
    }


def artifact_resource(digest: str, tag: str) -> dict[str, Any]:
    at = f"@{digest}" if tag == digest else f":{tag}"
    return {"digest": digest, "tag": tag, "resource_url": f"{HOST}/shop/backend/cart{at}"}


def default_payload(event_type: str, event_data: dict[str, Any], operator: str) -> bytes:
    return json.dumps(
        {"type": event_type, "occur_at": 1770000000, "operator": operator, "event_data": event_data}
    ).encode()


def cloudevent(ce_type: str, data: dict[str, Any], operator: str, event_id: str) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "requestid": "req-77",
            "source": "/projects/3/webhook/policies/9",
            "type": ce_type,
            "datacontenttype": "application/json",
            "time": "2026-02-02T08:00:00Z",
            "data": data,
            "operator": operator,
        }
    ).encode()


def only_event(result: object) -> ArtifactEvent:
    assert isinstance(result, ArtifactEvents)
    assert len(result.events) == 1
    return result.events[0]


def test_default_push_by_tag_gives_project_repository_digest_and_tag() -> None:
    body = default_payload(
        "PUSH_ARTIFACT",
        {"resources": [artifact_resource(DIGEST_A, "2.0.1")], "repository": repository()},
        "robot$shop+builder",
    )
    event = only_event(parse_webhook(body, "application/json", {}))
    assert event == ArtifactEvent(
        kind="pushed",
        project="shop",
        repository="shop/backend/cart",
        digest=DIGEST_A,
        tag="2.0.1",
        operator="robot$shop+builder",
        delivery_id="",
        occurred_at=datetime(2026, 2, 2, 2, 40, tzinfo=UTC),
    )


def test_push_by_digest_has_no_tag() -> None:
    body = default_payload(
        "PUSH_ARTIFACT",
        {"resources": [artifact_resource(DIGEST_B, DIGEST_B)], "repository": repository()},
        "robot$shop+accel",
    )
    event = only_event(parse_webhook(body, "application/json", {}))
    assert event.tag is None
    assert event.digest == DIGEST_B


def test_default_delete_is_a_deleted_event() -> None:
    body = default_payload(
        "DELETE_ARTIFACT",
        {"resources": [artifact_resource(DIGEST_A, "0.1")], "repository": repository()},
        "admin",
    )
    event = only_event(parse_webhook(body, "application/json", {}))
    assert (event.kind, event.tag, event.operator) == ("deleted", "0.1", "admin")


def test_delivery_id_comes_from_a_header_when_the_default_format_is_used() -> None:
    body = default_payload(
        "PUSH_ARTIFACT",
        {"resources": [artifact_resource(DIGEST_A, "x")], "repository": repository()},
        "",
    )
    event = only_event(parse_webhook(body, "application/json", {"X-Request-Id": "abc-1"}))
    assert event.delivery_id == "abc-1"
    assert event.operator == ""


def test_repository_without_full_name_is_built_from_namespace_and_name() -> None:
    repo = repository("p1", "a/b/c")
    del repo["repo_full_name"]
    body = default_payload(
        "PUSH_ARTIFACT", {"resources": [artifact_resource(DIGEST_A, "t")], "repository": repo}, ""
    )
    assert only_event(parse_webhook(body, "application/json", {})).repository == "p1/a/b/c"


def test_cloudevents_push_uses_the_id_time_and_operator_extension() -> None:
    data = {"resources": [artifact_resource(DIGEST_A, "2.0.1")], "repository": repository()}
    body = cloudevent("harbor.artifact.pushed", data, "robot$shop+builder", "8d7f-ce-id")
    event = only_event(parse_webhook(body, "application/cloudevents+json; charset=utf-8", {}))
    assert event.kind == "pushed"
    assert event.delivery_id == "8d7f-ce-id"
    assert event.occurred_at == datetime(2026, 2, 2, 8, 0, tzinfo=UTC)
    assert (event.repository, event.tag) == ("shop/backend/cart", "2.0.1")


def test_cloudevents_delete_is_a_deleted_event() -> None:
    data = {"resources": [artifact_resource(DIGEST_B, "0.9")], "repository": repository()}
    body = cloudevent("harbor.artifact.deleted", data, "ops", "id-2")
    event = only_event(parse_webhook(body, "application/cloudevents+json", {}))
    assert (event.kind, event.digest, event.tag) == ("deleted", DIGEST_B, "0.9")


SCAN_DATA = {
    "resources": [
        {
            "digest": DIGEST_A,
            "resource_url": f"{HOST}/shop/backend/cart@{DIGEST_A}",
            "scan_overview": {
                "application/vnd.security.vulnerability.report; version=1.1": {
                    "report_id": "r-1",
                    "scan_status": "Success",
                    "severity": "Low",
                    "duration": 3,
                    "summary": {"total": 1, "fixable": 0, "summary": {"Low": 1}},
                    "complete_percent": 100,
                }
            },
        }
    ],
    "repository": repository(),
    "scan": {"scan_type": "vulnerability"},
}
QUOTA_DATA = {
    "resources": [{"digest": DIGEST_B, "tag": "2.0.1-esgz"}],
    "repository": {k: v for k, v in repository().items() if k != "date_created"},
    "custom_attributes": {"Details": "adding 1 GiB would exceed the limit"},
}
REPLICATION_DATA = {
    "replication": {
        "harbor_hostname": HOST,
        "job_status": "Success",
        "trigger_type": "MANUAL",
        "src_resource": {"registry_type": "harbor", "endpoint": f"https://{HOST}"},
        "dest_resource": {"registry_type": "harbor", "endpoint": "https://dr.test.invalid"},
        "successful_artifact": [
            {"type": "image", "status": "Success", "name_tag": "cart", "references": ["1"]}
        ],
        "execution_id": 5,
        "task_id": 6,
    }
}
RETENTION_DATA = {
    "retention": {
        "total": 4,
        "retained": 2,
        "project_name": "shop",
        "result": "SUCCESS",
        "deleted_artifact": [
            {"type": "image", "status": "SUCCESS", "name_tag": "cart:old", "references": None}
        ],
    }
}
PULL_DATA = {"resources": [artifact_resource(DIGEST_A, "2.0.1")], "repository": repository()}


@pytest.mark.parametrize(
    ("event_type", "ce_type", "data"),
    [
        ("PULL_ARTIFACT", "harbor.artifact.pulled", PULL_DATA),
        ("SCANNING_COMPLETED", "harbor.scan.completed", SCAN_DATA),
        ("SCANNING_FAILED", "harbor.scan.failed", SCAN_DATA),
        ("SCANNING_STOPPED", "harbor.scan.stopped", SCAN_DATA),
        ("QUOTA_EXCEED", "harbor.quota.exceeded", QUOTA_DATA),
        ("QUOTA_WARNING", "harbor.quota.warned", QUOTA_DATA),
        ("REPLICATION", "harbor.replication.status.changed", REPLICATION_DATA),
        ("TAG_RETENTION", "harbor.tag_retention.finished", RETENTION_DATA),
    ],
)
def test_other_event_types_are_recognised_and_ignored_in_both_formats(
    event_type: str, ce_type: str, data: dict[str, Any]
) -> None:
    default = parse_webhook(default_payload(event_type, data, "ops"), "application/json", {})
    assert default == IgnoredEvent(event_type)
    ce = parse_webhook(cloudevent(ce_type, data, "ops", "i"), "application/cloudevents+json", {})
    assert ce == IgnoredEvent(ce_type)


def test_body_harbors_go_service_receives_on_conversions_parses() -> None:
    # The Go acceleration service gets the Default format, with the auth header as configured.
    body = default_payload(
        "PUSH_ARTIFACT",
        {"resources": [artifact_resource(DIGEST_A, "v1")], "repository": repository("lib", "app")},
        "admin",
    )
    event = only_event(parse_webhook(body, "application/json", {"Authorization": "Basic x"}))
    assert (event.project, event.repository, event.tag) == ("lib", "lib/app", "v1")


def push_with(resource: Any = None, repo: Any = None, **top: Any) -> bytes:
    document: dict[str, Any] = {
        "type": "PUSH_ARTIFACT",
        "occur_at": 1770000000,
        "operator": "ops",
        "event_data": {
            "resources": [resource if resource is not None else artifact_resource(DIGEST_A, "1")],
            "repository": repo if repo is not None else repository(),
        },
    }
    document.update(top)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body: expected JSON, got invalid JSON"),
        (b"[1, 2]", "body: expected a JSON object, got [1, 2]"),
        (
            push_with({"digest": 12, "tag": "1"}),
            'event_data.resources[0].digest: expected "sha256:<64 hex>", got 12',
        ),
        (
            push_with({"digest": "sha256:abc", "tag": "1"}),
            'event_data.resources[0].digest: expected "sha256:<64 hex>", got "sha256:abc"',
        ),
        (
            push_with({"tag": "1"}),
            'event_data.resources[0].digest: expected "sha256:<64 hex>", got nothing',
        ),
        (push_with({"digest": DIGEST_A, "tag": 3}), "event_data.resources[0].tag: expected a "),
        (push_with(type=7), "type: expected a string, got 7"),
        (push_with(occur_at="yesterday"), 'occur_at: expected Unix seconds (an integer), got "'),
        (push_with(occur_at=True), "occur_at: expected Unix seconds (an integer), got true"),
        (push_with(event_data=[]), "event_data: expected an object, got []"),
        (
            push_with(event_data={"resources": [], "repository": repository()}),
            "event_data.resources: expected a non-empty list, got []",
        ),
        (
            push_with(repo={"namespace": "shop", "repo_full_name": "other/x"}),
            'event_data.repository.repo_full_name: expected "shop/<path>", got "other/x"',
        ),
        (
            push_with(repo={"repo_full_name": "shop/x"}),
            "event_data.repository.namespace: expected a string, got nothing",
        ),
    ],
)
def test_malformed_default_payload_names_the_field(body: bytes, message: str) -> None:
    with pytest.raises(WebhookInvalid) as caught:
        parse_webhook(body, "application/json", {})
    assert str(caught.value).startswith(message)


def test_malformed_cloudevent_names_the_field() -> None:
    data = {"resources": [{"digest": "nope"}], "repository": repository()}
    body = cloudevent("harbor.artifact.pushed", data, "ops", "i")
    with pytest.raises(WebhookInvalid, match=r"^data\.resources\[0\]\.digest: expected"):
        parse_webhook(body, "application/cloudevents+json", {})
    bad_version = json.loads(body)
    bad_version["specversion"] = "0.3"
    with pytest.raises(WebhookInvalid, match=r'^specversion: expected "1.0", got "0.3"$'):
        parse_webhook(json.dumps(bad_version).encode(), "application/cloudevents+json", {})
    bad_time = json.loads(body)
    bad_time["time"] = "noon"
    bad_time["data"] = PULL_DATA
    with pytest.raises(WebhookInvalid, match=r'^time: expected an RFC 3339 time, got "noon"$'):
        parse_webhook(json.dumps(bad_time).encode(), "application/cloudevents+json", {})
