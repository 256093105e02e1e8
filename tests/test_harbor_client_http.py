"""HarborClient on HTTP edge cases a real server will not show on demand (`responses`)."""

from __future__ import annotations

import json
import re

import pytest
import requests
import responses

from harbor_api.credentials import Credentials
from harbor_api.errors import Denied, RegistryError, ServerError, TooManyRequests, Unreachable
from harbor_api.harbor import HarborClient
from harbor_api.harbor_models import HarborAnswerInvalid, WebhookPolicy, WebhookTarget
from harbor_api.transport import RetryPolicy

URL = "https://harbor.test.invalid"
API = f"{URL}/api/v2.0"
FAST = RetryPolicy(attempts=4, max_seconds=10, initial_wait=0.01, max_wait=0.02)
SECRET = "robot-secret-value"
POLICY = WebhookPolicy(
    "acceld", True, ("PUSH_ARTIFACT",), (WebhookTarget("https://a.test.invalid/w", "tok"),), id=7
)


def client() -> HarborClient:
    return HarborClient(URL, credentials=Credentials("robot$acceld", SECRET), retry=FAST)


def error(status: int, code: str, message: str) -> responses.Response:
    return responses.Response(
        responses.GET,
        f"{API}/systeminfo",
        json={"errors": [{"code": code, "message": message}]},
        status=status,
    )


INFO = {"harbor_version": "v2.15.2-abc", "external_url": URL, "registry_url": "harbor.test.invalid"}


@responses.activate
def test_429_is_retried_after_retry_after() -> None:
    responses.add(
        responses.GET,
        f"{API}/systeminfo",
        json={"errors": [{"code": "TOO_MANY_REQUEST", "message": "slow down"}]},
        status=429,
        headers={"Retry-After": "0"},
    )
    responses.add(responses.GET, f"{API}/systeminfo", json=INFO)
    assert client().systeminfo().harbor_version == "v2.15.2-abc"
    assert len(responses.calls) == 2


@responses.activate
def test_gateway_errors_are_retried_then_succeed() -> None:
    for status in (502, 503, 504):
        responses.add(error(status, "UNKNOWN", "gateway"))
    responses.add(responses.GET, f"{API}/systeminfo", json=INFO)
    client().systeminfo()
    assert len(responses.calls) == 4


@responses.activate
def test_retries_are_bounded_and_the_last_error_is_raised() -> None:
    for _ in range(6):
        responses.add(error(429, "TOO_MANY_REQUEST", "busy"))
    with pytest.raises(TooManyRequests):
        client().systeminfo()
    assert len(responses.calls) == FAST.attempts


@responses.activate
def test_internal_server_error_is_retried_then_raised() -> None:
    for _ in range(FAST.attempts):
        responses.add(error(500, "UNKNOWN", "internal server error"))
    with pytest.raises(ServerError, match="internal server error"):
        client().systeminfo()
    assert len(responses.calls) == FAST.attempts


@responses.activate
def test_connection_errors_are_retried_and_reported_as_unreachable() -> None:
    responses.add(
        responses.GET, f"{API}/systeminfo", body=requests.ConnectionError("Connection refused")
    )
    with pytest.raises(Unreachable) as caught:
        client().systeminfo()
    assert str(caught.value) == f"cannot reach Harbor at {URL}: connection refused"
    assert len(responses.calls) == FAST.attempts


@responses.activate
def test_webhook_create_is_not_retried_but_update_is() -> None:
    responses.add(responses.POST, f"{API}/projects/p/webhook/policies", status=503)
    with pytest.raises(ServerError):
        client().create_webhook_policy("p", POLICY)
    assert len(responses.calls) == 1
    responses.add(responses.PUT, f"{API}/projects/p/webhook/policies/7", status=502)
    responses.add(responses.PUT, f"{API}/projects/p/webhook/policies/7", status=200)
    client().update_webhook_policy("p", POLICY)
    put = responses.calls[-1].request
    assert put.headers["X-Is-Resource-Name"] == "true"
    assert json.loads(put.body or b"")["enabled"] is True
    assert len(responses.calls) == 3


@responses.activate
def test_every_request_has_its_own_request_id_and_no_cookie() -> None:
    for page in (1, 2):
        responses.add(
            responses.GET,
            f"{API}/projects",
            json=[{"project_id": i, "name": f"p{i}"} for i in range(100 if page == 1 else 3)],
            headers={"X-Total-Count": "103", "Set-Cookie": "sid=abc; Path=/"},
        )
    assert len(list(client().projects())) == 103
    ids = [c.request.headers["X-Request-Id"] for c in responses.calls]
    assert len(set(ids)) == 2
    assert all(re.fullmatch(r"[0-9a-f-]{36}", i) for i in ids)
    assert all("Cookie" not in c.request.headers for c in responses.calls)
    assert all(c.request.headers["Authorization"].startswith("Basic ") for c in responses.calls)


@responses.activate
def test_csrf_refusal_names_the_permission_and_harbors_reason() -> None:
    responses.add(
        responses.POST,
        f"{API}/projects/p/webhook/policies",
        json={"errors": [{"code": "FORBIDDEN", "message": "CSRF token invalid"}]},
        status=403,
    )
    with pytest.raises(Denied) as caught:
        client().create_webhook_policy("p", POLICY)
    assert str(caught.value).endswith(
        "'robot$acceld' lacks the permission notification-policy:create on project 'p' "
        "in Harbor (Harbor said: CSRF token invalid)"
    )
    assert SECRET not in str(caught.value)


@responses.activate
def test_answers_of_the_wrong_shape_name_the_field() -> None:
    responses.add(responses.GET, f"{API}/projects", body="<html>proxy</html>", status=200)
    with pytest.raises(RegistryError, match="answer is not JSON"):
        list(client().projects())
    responses.add(
        responses.GET,
        f"{API}/projects/p/repositories/r/artifacts",
        json=[{"digest": "sha256:" + "0" * 64, "tags": {"name": "x"}}],
    )
    with pytest.raises(HarborAnswerInvalid, match=r"^artifacts\[0\]\.tags: expected a list"):
        list(client().artifacts("p", "r"))
