"""The webhook endpoint against hostile clients (issue 12): connections that never finish their
request or their TLS handshake cannot lock Harbor out, malformed but authenticated webhooks get
400 with the reason (not 500 or 503), and odd paths get 404 (not a redirect built from Host)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
import requests
from prometheus_client import CollectorRegistry
from werkzeug.test import Client

from harbor_api.webhook_events import ArtifactEvent
from reconciler.observability.metrics import Metrics
from reconciler.service.http_app import HttpApp
from reconciler.service.http_server import HttpServer, ServerLimits, ServerTls
from tests.test_http_app_server import certificate  # noqa: F401 (a fixture)

SECRET = "Bearer hardening-hook-secret"
DIGEST = "sha256:" + "ab" * 32
HOSTILE_SOCKETS = 150


def _app(queued: list[ArtifactEvent] | None = None) -> HttpApp:
    def enqueue(events: tuple[ArtifactEvent, ...]) -> int:
        if queued is not None:
            queued.extend(events)
        return len(events)

    return HttpApp(
        webhook_secret=SECRET,
        enqueue=enqueue,
        readiness=dict,
        metrics=Metrics(CollectorRegistry(), formats=["estargz"]),
    )


def harbor_push(repository: str = "library/app", occur_at: object = 1_700_000_000) -> bytes:
    project = repository.split("/", 1)[0]
    return json.dumps(
        {
            "type": "PUSH_ARTIFACT",
            "occur_at": occur_at,
            "operator": "admin",
            "event_data": {
                "resources": [{"digest": DIGEST, "tag": "v1"}],
                "repository": {"namespace": project, "repo_full_name": repository},
            },
        }
    ).encode()


def cloudevent_push(time_text: str) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": "1",
            "source": "/projects/1/webhook/policies/1",
            "type": "harbor.artifact.pushed",
            "time": time_text,
            "operator": "admin",
            "data": {
                "resources": [{"digest": DIGEST, "tag": "v1"}],
                "repository": {"namespace": "library", "repo_full_name": "library/app"},
            },
        }
    ).encode()


DEEP_JSON = b"[" * 100_000 + b"]" * 100_000

MALFORMED = {
    "100,000-deep JSON": (DEEP_JSON, "application/json", "nested too deeply"),
    "occur_at past year 9999": (harbor_push(occur_at=10**15), "application/json", "occur_at"),
    "occur_at far negative": (harbor_push(occur_at=-(10**15)), "application/json", "occur_at"),
    "occur_at beyond 64 bits": (harbor_push(occur_at=10**30), "application/json", "occur_at"),
    "CloudEvents time offset +23:59 at year 1": (
        cloudevent_push("0001-01-01T00:00:00+23:59"),
        "application/cloudevents+json",
        "time",
    ),
    "CloudEvents time offset -23:59 at year 9999": (
        cloudevent_push("9999-12-31T23:59:59-23:59"),
        "application/cloudevents+json",
        "time",
    ),
    "repository name with capitals": (
        harbor_push("library/App"),
        "application/json",
        "repo_full_name",
    ),
    "repository name with ..": (harbor_push("library/a..b"), "application/json", "repo_full_name"),
    "repository name over 255 characters": (
        harbor_push("library/" + "a" * 300),
        "application/json",
        "repo_full_name",
    ),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_authenticated_webhook_gets_400_with_the_reason(name: str) -> None:
    body, content_type, reason = MALFORMED[name]
    queued: list[ArtifactEvent] = []
    answer = Client(_app(queued)).post(
        "/webhooks/harbor",
        data=body,
        headers={"Authorization": SECRET, "Content-Type": content_type},
    )
    assert answer.status_code == 400, answer.get_data(as_text=True)
    assert reason in answer.get_json()["error"]
    assert queued == []


@pytest.mark.parametrize("path", ["//webhooks//harbor", "//webhooks/harbor", "/webhooks//harbor"])
def test_a_path_with_doubled_slashes_is_404_not_a_redirect(path: str) -> None:
    answer = Client(_app()).post(
        path,
        data=harbor_push(),
        headers={
            "Authorization": SECRET,
            "Content-Type": "application/json",
            "Host": "attacker.example",
        },
    )
    assert answer.status_code == 404
    assert "Location" not in answer.headers
    assert "attacker.example" not in answer.get_data(as_text=True)


@contextmanager
def _serving(tls: ServerTls | None = None, **limits: float) -> Iterator[HttpServer]:
    server = HttpServer(
        _app(),
        host="127.0.0.1",
        port=0,
        tls=tls,
        limits=ServerLimits(**limits),  # type: ignore[arg-type]
    )
    server.start()
    try:
        yield server
    finally:
        server.stop(grace_seconds=1)


def _hold_open(stack: ExitStack, port: int, first_bytes: bytes) -> list[socket.socket]:
    held = []
    for _ in range(HOSTILE_SOCKETS):
        sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
        if first_bytes:
            sock.sendall(first_bytes)
        held.append(sock)
    return held


def _webhook_seconds(server: HttpServer, verify: str | bool = False) -> float:
    started = time.monotonic()
    answer = requests.post(
        server.url + "/webhooks/harbor",
        data=harbor_push(),
        headers={"Authorization": SECRET, "Content-Type": "application/json"},
        timeout=10,
        verify=verify,
    )
    assert answer.status_code == 202
    return time.monotonic() - started


def test_a_webhook_gets_202_within_3_s_while_150_connections_hold_partial_requests() -> None:
    with _serving() as server, ExitStack() as stack:
        _hold_open(stack, server.port, b"POST /webhooks/harbor HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.5)  # let the server accept them all first
        assert _webhook_seconds(server) < 3.0


def test_a_tls_webhook_gets_202_within_3_s_while_150_connections_never_handshake(
    certificate: ServerTls,  # noqa: F811
) -> None:
    with _serving(certificate) as server, ExitStack() as stack:
        _hold_open(stack, server.port, b"")
        time.sleep(0.5)
        assert _webhook_seconds(server, verify=str(certificate.cert_file)) < 3.0


def test_a_request_trickled_a_byte_at_a_time_is_cut_off_at_the_request_deadline() -> None:
    with (
        _serving(request_seconds=1.0) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as slow,
    ):
        started = time.monotonic()
        closed = False
        for byte in b"POST /webhooks/harbor HTTP/1.1\r\nHost: x\r\nX-Slow: 1234567890":
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.25)
            slow.settimeout(0.01)
            try:
                if slow.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
        seconds = time.monotonic() - started
    assert closed
    assert seconds < 4.0
