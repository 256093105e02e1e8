"""The webhook and probe endpoints, served by the real waitress server on loopback and fed
with the payloads Harbor sends, parsed by the real `parse_webhook`."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry
from werkzeug.test import EnvironBuilder, run_wsgi_app

from harbor_api.webhook_events import ArtifactEvent
from reconciler.observability.logs import configure_logging
from reconciler.observability.metrics import Metrics
from reconciler.service.http_app import HttpApp
from reconciler.service.http_server import HttpServer

SECRET = "Bearer hook-s3cr3t-7f1c"
DIGEST = "sha256:" + "25c9e75976295b7f6e9860f484104e44108605bb0092a2ca0dfecbc83dab3f8c"
MAX_BODY = 8 * 1024


def push_payload(tag: str = "1.4.2", event_type: str = "PUSH_ARTIFACT") -> dict[str, object]:
    return {
        "type": event_type,
        "occur_at": 1767960000,
        "operator": "robot$apps+ci-builder",
        "event_data": {
            "resources": [
                {
                    "digest": DIGEST,
                    "tag": tag,
                    "resource_url": f"harbor.example.test/apps/team/api-server:{tag}",
                }
            ],
            "repository": {
                "date_created": 1761000000,
                "name": "team/api-server",
                "namespace": "apps",
                "repo_full_name": "apps/team/api-server",
                "repo_type": "private",
            },
        },
    }


def cloudevent_payload() -> dict[str, object]:
    default = push_payload()
    return {
        "specversion": "1.0",
        "id": "3f1b6a0e-8d1c-4e0b-9a51-0c7e2a1d9b11",
        "source": "/projects/1/webhook/policies/3",
        "type": "harbor.artifact.pushed",
        "datacontenttype": "application/json",
        "time": "2026-01-09T12:00:00Z",
        "operator": "robot$apps+ci-builder",
        "data": default["event_data"],
    }


@dataclass
class Served:
    url: str
    registry: CollectorRegistry
    queued: list[ArtifactEvent] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)
    enqueue_fails: bool = False

    def webhook_count(self, result: str) -> float:
        value = self.registry.get_sample_value("acceld_webhook_requests_total", {"result": result})
        return value or 0.0

    def post(
        self,
        payload: object,
        *,
        path: str = "/webhooks/harbor",
        auth: str | None = SECRET,
        content_type: str = "application/json",
    ) -> requests.Response:
        headers = {"Content-Type": content_type}
        if auth is not None:
            headers["Authorization"] = auth
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return requests.post(self.url + path, data=body, headers=headers, timeout=10)


def serve(secret: str | None) -> Iterator[Served]:
    registry = CollectorRegistry()
    served = Served(url="", registry=registry)

    def enqueue(events: tuple[ArtifactEvent, ...]) -> int:
        if served.enqueue_fails:
            raise OSError("database is locked")
        served.queued.extend(events)
        return len(events)

    app = HttpApp(
        webhook_secret=secret,
        enqueue=enqueue,
        readiness=lambda: served.checks,
        metrics=Metrics(registry, formats=("estargz",), policies=("default",)),
        max_body_bytes=MAX_BODY,
    )
    server = HttpServer(app, host="127.0.0.1", port=0)
    server.start()
    served.url = server.url
    try:
        yield served
    finally:
        server.stop(grace_seconds=2)


@pytest.fixture
def served() -> Iterator[Served]:
    yield from serve(SECRET)


def test_push_webhook_is_queued_and_answered_202(served: Served) -> None:
    answer = served.post(push_payload())
    assert answer.status_code == 202
    assert answer.json() == {"events": 1, "queued": 1}
    (event,) = served.queued
    assert (event.kind, event.repository, event.digest, event.tag) == (
        "pushed",
        "apps/team/api-server",
        DIGEST,
        "1.4.2",
    )
    assert served.webhook_count("accepted") == 1


def test_legacy_conversions_path_takes_the_same_webhook(served: Served) -> None:
    answer = served.post(push_payload(tag=DIGEST), path="/api/v1/conversions")
    assert answer.status_code == 202
    assert served.queued[0].tag is None


def test_cloudevents_payload_with_parameters_in_content_type(served: Served) -> None:
    answer = served.post(
        cloudevent_payload(), content_type="application/cloudevents+json; charset=utf-8"
    )
    assert answer.status_code == 202
    assert served.queued[0].delivery_id == "3f1b6a0e-8d1c-4e0b-9a51-0c7e2a1d9b11"


@pytest.mark.parametrize("auth", [None, "", "Bearer wrong", SECRET + "x", SECRET.lower()])
def test_missing_or_wrong_authorization_is_401_and_queues_nothing(
    served: Served, auth: str | None
) -> None:
    answer = served.post(push_payload(), auth=auth)
    assert answer.status_code == 401
    assert served.queued == []
    assert served.webhook_count("unauthorized") == 1


def test_without_a_configured_secret_every_webhook_is_refused() -> None:
    for served in serve(None):
        assert served.post(push_payload(), auth="").status_code == 401
        assert served.post(push_payload(), auth="anything").status_code == 401
        assert served.queued == []


def test_non_ascii_secret_matches_what_harbor_sends_verbatim() -> None:
    secret = "tökén-ß-42"
    for served in serve(secret):
        url = served.url + "/webhooks/harbor"
        headers = {"Authorization": secret.encode("utf-8"), "Content-Type": "application/json"}
        answer = requests.post(url, data=json.dumps(push_payload()), headers=headers, timeout=10)
        assert answer.status_code == 202


def test_declared_body_over_the_limit_is_413_before_reading(served: Served) -> None:
    payload = push_payload()
    payload["padding"] = "x" * MAX_BODY
    answer = served.post(payload)
    assert answer.status_code == 413
    assert f"larger than {MAX_BODY} bytes" in answer.json()["error"]
    assert served.queued == []
    assert served.webhook_count("invalid") == 1


def test_chunked_body_over_the_limit_is_413(served: Served) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(4):
            yield b" " * (MAX_BODY // 2)
        yield json.dumps(push_payload()).encode()

    headers = {"Authorization": SECRET, "Content-Type": "application/json"}
    answer = requests.post(
        served.url + "/webhooks/harbor", data=chunks(), headers=headers, timeout=10
    )
    assert answer.status_code == 413
    assert served.queued == []


def test_body_without_length_is_cut_off_at_the_limit_while_reading() -> None:
    # waitress always sets CONTENT_LENGTH; other WSGI servers may hand over an unsized stream.
    queued: list[ArtifactEvent] = []

    def enqueue(events: tuple[ArtifactEvent, ...]) -> int:
        queued.extend(events)
        return len(events)

    registry = CollectorRegistry()
    app = HttpApp(
        webhook_secret=SECRET,
        enqueue=enqueue,
        readiness=dict,
        metrics=Metrics(registry, formats=("estargz",)),
        max_body_bytes=MAX_BODY,
    )
    body = json.dumps(push_payload()).encode()
    for padding, expected in ((MAX_BODY, "413 REQUEST ENTITY TOO LARGE"), (0, "202 ACCEPTED")):
        environ = EnvironBuilder(
            path="/webhooks/harbor",
            method="POST",
            headers={"Authorization": SECRET, "Content-Type": "application/json"},
            input_stream=io.BytesIO(body + b" " * padding),
        ).get_environ()
        environ.pop("CONTENT_LENGTH", None)
        environ["wsgi.input_terminated"] = True
        _, status, _ = run_wsgi_app(app, environ, buffered=True)
        assert status == expected
    assert len(queued) == 1
    assert registry.get_sample_value("acceld_webhook_requests_total", {"result": "invalid"}) == 1


def test_chunked_body_within_the_limit_is_accepted(served: Served) -> None:
    body = json.dumps(push_payload()).encode()
    headers = {"Authorization": SECRET, "Content-Type": "application/json"}
    answer = requests.post(
        served.url + "/webhooks/harbor",
        data=iter([body[:10], body[10:]]),
        headers=headers,
        timeout=10,
    )
    assert answer.status_code == 202


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_other_content_types_are_415(served: Served, content_type: str) -> None:
    answer = served.post(push_payload(), content_type=content_type)
    assert answer.status_code == 415
    assert "expected application/cloudevents+json or application/json" in answer.json()["error"]
    assert served.queued == []


def test_malformed_payload_is_400_naming_the_field(served: Served) -> None:
    payload = push_payload()
    payload["event_data"]["resources"][0]["digest"] = "sha256:short"  # type: ignore[index]
    answer = served.post(payload)
    assert answer.status_code == 400
    assert "event_data.resources[0].digest" in answer.json()["error"]
    assert served.post(b"{not json").status_code == 400
    assert served.queued == []
    assert served.webhook_count("invalid") == 2


def test_other_event_types_are_202_and_ignored(served: Served) -> None:
    answer = served.post(push_payload(event_type="SCANNING_COMPLETED"))
    assert answer.status_code == 202
    assert answer.json() == {"ignored": "SCANNING_COMPLETED"}
    assert served.queued == []
    assert served.webhook_count("ignored") == 1


def test_failure_to_queue_is_503_so_harbor_delivers_again(served: Served) -> None:
    served.enqueue_fails = True
    answer = served.post(push_payload())
    assert answer.status_code == 503
    assert served.webhook_count("unavailable") == 1


def test_secret_never_reaches_the_logs(served: Served, tmp_path: Path) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    with (tmp_path / "log").open("w+", encoding="utf-8") as out:
        configure_logging("text", level=logging.DEBUG, stream=out)
        try:
            served.post(push_payload())
            served.post(push_payload(), auth=SECRET + "x")
            served.enqueue_fails = True
            served.post(push_payload())
        finally:
            root.handlers[:] = saved[0]
            root.setLevel(saved[1])
        out.seek(0)
        text = out.read()
    assert "hook-s3cr3t" not in text
    assert "Webhook refused" in text
    assert "repository=apps/team/api-server" in text
    assert "OSError: database is locked" in text


def test_healthz_answers_while_alive(served: Served) -> None:
    answer = requests.get(served.url + "/healthz", timeout=5)
    assert answer.status_code == 200
    assert answer.json() == {"alive": True}


def test_readyz_lists_the_failing_checks(served: Served) -> None:
    served.checks.update(state_store=True, source=True, scheduler=True)
    assert requests.get(served.url + "/readyz", timeout=5).status_code == 200
    served.checks.update(source=False, scheduler=False)
    answer = requests.get(served.url + "/readyz", timeout=5)
    assert answer.status_code == 503
    assert answer.json()["failing"] == ["scheduler", "source"]


def test_metrics_are_served_in_prometheus_text(served: Served) -> None:
    served.post(push_payload())
    answer = requests.get(served.url + "/metrics", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'acceld_webhook_requests_total{result="accepted"} 1.0' in answer.text


def test_wrong_method_and_unknown_path(served: Served) -> None:
    answer = requests.get(served.url + "/webhooks/harbor", timeout=5)
    assert answer.status_code == 405
    assert "POST" in answer.headers["Allow"]
    assert requests.get(served.url + "/nope", timeout=5).status_code == 404
