"""Fuzzing the webhook endpoint: random bodies, content types, sizes, encodings and headers.

Every case is built together with the answer it must get, in the app's order of checks: route
(404/405), then `Authorization` (401), then declared size (413), then media type (415), then the
body (400, or 202 accepted or ignored). On top of the exact status: never a 5xx, an error body
that says what is wrong, exactly the generated events queued, one webhook metric per request,
and the secret nowhere in answers or logs. Runs through werkzeug's test client, and a smaller
sample over the real waitress server on loopback.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from werkzeug.test import Client

from harbor_api.webhook_events import ArtifactEvent
from reconciler.observability.logs import KeyValueFormatter
from reconciler.observability.metrics import Metrics
from reconciler.service.http_app import HttpApp
from reconciler.service.http_server import HttpServer
from tests.support.secret_scan import find_secrets

SECRET = "Bearer fuzz-hook-s3cr3t-91d2"
MAX_BODY = 4096
WEBHOOK_PATHS = ("/webhooks/harbor", "/api/v1/conversions")
OTHER_ROUTES = ("/metrics", "/healthz", "/readyz")
JSON_TYPES = ("application/json", "application/json; charset=utf-8", "Application/JSON")
CLOUDEVENTS_TYPES = (
    "application/cloudevents+json",
    "application/cloudevents+json; charset=UTF-8",
)
IGNORED_TYPES = (
    "PULL_ARTIFACT",
    "SCANNING_COMPLETED",
    "SCANNING_FAILED",
    "QUOTA_EXCEED",
    "REPLICATION",
    "TAG_RETENTION",
)
KINDS = {"PUSH_ARTIFACT": "pushed", "DELETE_ARTIFACT": "deleted"}
CLOUD_KINDS = {"harbor.artifact.pushed": "pushed", "harbor.artifact.deleted": "deleted"}
RESULTS = ("accepted", "ignored", "invalid", "unauthorized", "unavailable")
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Expected = tuple[str, str, str, str | None]


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    status: int
    events: tuple[Expected, ...] = ()
    mentions: str = ""


@dataclass(frozen=True)
class Body:
    """A body and what the parser must make of it (status 202 or 400) under a JSON type."""

    data: bytes
    status: int
    cloudevents: bool = False
    events: tuple[Expected, ...] = ()
    mentions: str = ""

    @property
    def object_without_specversion(self) -> bool:
        """Parsed as a CloudEvent (by its media type), this body fails on `specversion`."""
        try:
            document = json.loads(self.data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return False
        return isinstance(document, dict) and "specversion" not in document


LOWER = "abcdefghijklmnopqrstuvwxyz0123456789"
# Path components a registry accepts (the parser refuses others with 400).
names = st.from_regex(r"[a-z0-9]{1,4}(?:[._-][a-z0-9]{1,4}){0,2}", fullmatch=True)
digests = st.binary(min_size=32, max_size=32).map(lambda raw: "sha256:" + raw.hex())
tags = st.text(LOWER + "ABCXYZ_.-", min_size=1, max_size=30)
operators = st.text(st.characters(max_codepoint=0x2FF), max_size=20)


def default_payload(
    event_type: str, project: str, path: str, resource: dict[str, Any], operator: str
) -> dict[str, Any]:
    return {
        "type": event_type,
        "occur_at": 1767960000,
        "operator": operator,
        "event_data": {
            "resources": [resource],
            "repository": {
                "name": path,
                "namespace": project,
                "repo_full_name": f"{project}/{path}",
                "repo_type": "private",
            },
        },
    }


def cloudevent_payload(
    event_type: str, project: str, path: str, resource: dict[str, Any], operator: str
) -> dict[str, Any]:
    default = default_payload(event_type, project, path, resource, operator)
    return {
        "specversion": "1.0",
        "id": "0d9c2b4e-5f61-4a7b-8c9d-0e1f2a3b4c5d",
        "source": "/projects/1/webhook/policies/1",
        "type": event_type,
        "datacontenttype": "application/json",
        "time": "2026-01-09T12:00:00Z",
        "operator": operator,
        "data": default["event_data"],
    }


@st.composite
def artifact_payloads(draw: st.DrawFn) -> tuple[dict[str, Any], bool, Expected]:
    """A well-formed artifact event, whether it is a CloudEvent, and the event it must give."""
    cloud = draw(st.booleans())
    event_type = draw(st.sampled_from(sorted(CLOUD_KINDS if cloud else KINDS)))
    kind = (CLOUD_KINDS if cloud else KINDS)[event_type]
    project, path, digest = draw(names), draw(names), draw(digests)
    path = draw(st.sampled_from([path, f"{path}/{draw(names)}"]))
    tag_form = draw(st.sampled_from(["tag", "digest", "absent", "null", "empty"]))
    tag = draw(tags)
    resource: dict[str, Any] = {"digest": digest}
    if tag_form != "absent":
        resource["tag"] = {"tag": tag, "digest": digest, "null": None, "empty": ""}[tag_form]
    build = cloudevent_payload if cloud else default_payload
    payload = build(event_type, project, path, resource, draw(operators))
    return payload, cloud, (kind, f"{project}/{path}", digest, tag if tag_form == "tag" else None)


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.pop(key)


def _rename(path: str) -> Callable[[dict[str, Any]], None]:
    def rename(payload: dict[str, Any]) -> None:
        repository = _data(payload)["repository"]
        repository["repo_full_name"] = f"{repository['namespace']}/{path}"

    return rename


def _data(payload: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = payload["data" if "specversion" in payload else "event_data"]
    return data


# (mutation, field the error must name, applies to CloudEvents, applies to Default)
BREAKAGES: tuple[tuple[Callable[[dict[str, Any]], None], str, bool, bool], ...] = (
    (lambda p: _data(p)["resources"][0].update(digest="sha256:ABC"), "digest", True, True),
    (lambda p: _data(p)["resources"][0].update(digest="md5:" + "0" * 32), "digest", True, True),
    (lambda p: _data(p)["resources"][0].pop("digest"), "digest", True, True),
    (lambda p: _data(p)["resources"][0].update(tag=7), "tag", True, True),
    (lambda p: _data(p).update(resources=[]), "resources", True, True),
    (lambda p: _data(p).update(resources={"digest": "x"}), "resources", True, True),
    (lambda p: _data(p).pop("repository"), "repository", True, True),
    (lambda p: _data(p)["repository"].update(namespace=""), "namespace", True, True),
    (lambda p: _data(p)["repository"].update(repo_full_name="/x"), "repo_full_name", True, True),
    (lambda p: _data(p).update(resources=["sha256:" + "0" * 64]), "resources[0]", True, True),
    (lambda p: p.update(type=12), "type", True, True),
    (lambda p: p.update(occur_at="yesterday"), "occur_at", False, True),
    (_drop("event_data"), "event_data", False, True),
    (lambda p: p.update(specversion="0.3"), "specversion", True, False),
    (lambda p: p.update(time="noon"), "time", True, False),
    (_drop("id"), "id", True, False),
    (lambda p: p.update(operator=["x"]), "operator", True, False),
    # Hostile values that used to escape the parser as 500 (issue 12) or 503 from the queue.
    (lambda p: p.update(occur_at=10**15), "occur_at", False, True),
    (lambda p: p.update(occur_at=-(10**15)), "occur_at", False, True),
    (lambda p: p.update(occur_at=10**30), "occur_at", False, True),
    (lambda p: p.update(time="0001-01-01T00:00:00+23:59"), "time", True, False),
    (lambda p: p.update(time="9999-12-31T23:59:59-23:59"), "time", True, False),
    (_rename("App"), "repo_full_name", True, True),
    (_rename("a..b"), "repo_full_name", True, True),
    (_rename("a" * 300), "repo_full_name", True, True),
)

# Deeper than the JSON parser's usual recursion limit, yet under MAX_BODY: refused by its depth
# or, where a test framework raised the limit, as unterminated.
DEEP_JSON = b"[" * 4000


@st.composite
def bodies(draw: st.DrawFn) -> Body:
    shape = draw(
        st.sampled_from(
            ["valid", "valid", "valid", "ignored", "broken", "json", "bytes", "latin", "deep"]
        )
    )
    payload, cloud, expected = draw(artifact_payloads())
    if shape == "valid":
        return Body(json.dumps(payload).encode(), 202, cloud, (expected,))
    if shape == "ignored":
        payload["type"] = draw(
            st.sampled_from(IGNORED_TYPES)
            | st.text(min_size=1, max_size=20).filter(
                lambda t: t not in KINDS and t not in CLOUD_KINDS
            )
        )
        return Body(json.dumps(payload).encode(), 202, cloud)
    if shape == "broken":
        choices = [b for b in BREAKAGES if (b[2] if cloud else b[3])]
        breakage, mentions, _, _ = draw(st.sampled_from(choices))
        breakage(payload)
        return Body(json.dumps(payload).encode(), 400, cloud, mentions=mentions)
    if shape == "deep":
        return Body(DEEP_JSON, 400, mentions="body")
    if shape == "latin":
        payload["operator"] = "Jürgen " + payload["operator"]
        text = json.dumps(payload, ensure_ascii=False)
        return Body(text.encode("latin-1", "replace"), 400, cloud, mentions="JSON")
    if shape == "json":
        document = draw(
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                lambda inner: (
                    st.lists(inner, max_size=4)
                    | st.dictionaries(
                        st.text(max_size=8).filter(lambda k: k not in ("type", "specversion")),
                        inner,
                        max_size=4,
                    )
                ),
                max_leaves=10,
            )
        )
        mentions = "type" if isinstance(document, dict) else "body"
        return Body(json.dumps(document).encode(), 400, mentions=mentions)
    data = draw(st.binary(max_size=300))
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        document = None
    if isinstance(document, dict) and ("type" in document or "specversion" in document):
        data = b"!" + data
    return Body(data, 400)


wrong_secrets = st.sampled_from(
    ["", SECRET[:-1], SECRET.lower(), SECRET + "x", SECRET.removeprefix("Bearer ")]
) | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)
extra_headers = st.lists(
    st.tuples(
        st.text(LOWER + "ABCXYZ-", min_size=1, max_size=16).map("X-{}".format),
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40),
    ),
    max_size=4,
)
other_types = st.sampled_from(
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""]
) | st.builds("{}/{}".format, names, names).filter(
    lambda t: t not in ("application/json", "application/cloudevents+json")
)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    body = draw(bodies())
    headers: list[tuple[str, str]] = list(draw(extra_headers))
    authorized = draw(st.integers(0, 9)) > 0
    if authorized:
        headers.append(("Authorization", SECRET))
    else:
        wrong = draw(st.none() | wrong_secrets)
        if wrong is not None:
            headers.append(("Authorization", wrong))
    family = draw(st.sampled_from(["own", "own", "own", "other", "json", "cloudevents"]))
    if family == "own":
        family = "cloudevents" if body.cloudevents else "json"
    content_type = draw(
        {
            "json": st.sampled_from(JSON_TYPES),
            "cloudevents": st.sampled_from(CLOUDEVENTS_TYPES),
            "other": other_types,
        }[family]
    )
    if content_type:
        headers.append(("Content-Type", content_type))
    data = body.data
    if draw(st.integers(0, 9)) == 0:
        data += b" " * (MAX_BODY + 1 - len(data) + draw(st.integers(0, 3 * MAX_BODY)))
    route = draw(st.integers(0, 19))
    method, path = "POST", draw(st.sampled_from(WEBHOOK_PATHS))
    if route == 0:
        method = draw(st.sampled_from(["GET", "PUT", "DELETE", "PATCH"]))
    elif route == 1:
        segments = draw(st.lists(st.text(LOWER + "_-", min_size=1, max_size=10), max_size=3))
        path = "/" + "/".join(segments)
        if path in (*WEBHOOK_PATHS, *OTHER_ROUTES):
            path = "/nowhere" + path
    events: tuple[Expected, ...] = ()
    mentions = ""
    if path not in WEBHOOK_PATHS:
        status = 404
    elif method != "POST":
        status = 405
    elif not authorized:
        status = 401
    elif len(data) > MAX_BODY:
        status, mentions = 413, f"larger than {MAX_BODY} bytes"
    elif family == "other":
        status, mentions = 415, "Content-Type"
    elif family == "cloudevents" and body.object_without_specversion:
        status, mentions = 400, "specversion"
    else:
        status, events, mentions = body.status, body.events, body.mentions
    return Case(method, path, tuple(headers), data, status, events, mentions)


@dataclass
class Target:
    """The app under test with what it queued, logged and counted."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    queued: list[ArtifactEvent] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)
    app: HttpApp = field(init=False)

    def __post_init__(self) -> None:
        def enqueue(events: tuple[ArtifactEvent, ...]) -> int:
            self.queued.extend(events)
            return len(events)

        self.app = HttpApp(
            webhook_secret=SECRET,
            enqueue=enqueue,
            readiness=dict,
            metrics=Metrics(self.registry, formats=("estargz",), policies=("default",)),
            max_body_bytes=MAX_BODY,
        )

    def webhook_counts(self) -> dict[str, float]:
        return {
            result: self.registry.get_sample_value(
                "acceld_webhook_requests_total", {"result": result}
            )
            or 0.0
            for result in RESULTS
        }


class _Lines(logging.Handler):
    def __init__(self, target: Target) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(KeyValueFormatter())
        self._target = target

    def emit(self, record: logging.LogRecord) -> None:
        self._target.log_lines.append(self.format(record))


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    target = Target()
    handler = _Lines(target)
    logger = logging.getLogger("reconciler.service.http_app")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield target
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


Send = Callable[[Case], tuple[int, dict[str, str], bytes]]


def through_test_client(target: Target) -> Send:
    client = Client(target.app)

    def send(case: Case) -> tuple[int, dict[str, str], bytes]:
        answer = client.open(case.path, method=case.method, headers=case.headers, data=case.body)
        return answer.status_code, dict(answer.headers), answer.get_data()

    return send


def check(target: Target, send: Send, case: Case) -> None:
    target.queued.clear()
    target.log_lines.clear()
    counts = target.webhook_counts()
    status, headers, body = send(case)
    assert status < 500, case
    assert status == case.status, (case, body)
    document = json.loads(body)
    if status >= 400:
        assert document["error"], case
        assert case.mentions in document["error"], (case, document)
    queued = [(e.kind, e.repository, e.digest, e.tag) for e in target.queued]
    assert queued == list(case.events), case
    after = target.webhook_counts()
    changed = {r: after[r] - counts[r] for r in RESULTS if after[r] != counts[r]}
    if case.status in (404, 405):
        assert changed == {}
    else:
        expected_result = {401: "unauthorized", 202: "accepted" if case.events else "ignored"}
        assert changed == {expected_result.get(status, "invalid"): 1.0}, case
    texts = {"answer body": body.decode("utf-8", "replace"), "answer headers": repr(headers)}
    texts.update({f"log line {i}": line for i, line in enumerate(target.log_lines)})
    assert find_secrets(texts, [SECRET]) == []


@FUZZ
@given(case=cases())
def test_webhook_answers_exactly_and_never_fails_through_the_wsgi_app(
    target: Target, case: Case
) -> None:
    check(target, through_test_client(target), case)


@pytest.mark.slow
@settings(FUZZ, max_examples=10_000)
@given(case=cases())
def test_webhook_answers_exactly_over_ten_thousand_cases(target: Target, case: Case) -> None:
    check(target, through_test_client(target), case)


@pytest.fixture(scope="module")
def served(target: Target) -> Iterator[str]:
    server = HttpServer(target.app, host="127.0.0.1", port=0)
    server.start()
    try:
        yield server.url
    finally:
        server.stop(grace_seconds=2)


@settings(FUZZ, max_examples=60)
@given(case=cases())
def test_webhook_answers_exactly_over_a_real_loopback_server(
    target: Target, served: str, case: Case
) -> None:
    session = requests.Session()

    def send(case: Case) -> tuple[int, dict[str, str], bytes]:
        answer = session.request(
            case.method, served + case.path, headers=dict(case.headers), data=case.body, timeout=10
        )
        return answer.status_code, dict(answer.headers), answer.content

    started = time.monotonic()
    check(target, send, case)
    assert time.monotonic() - started < 3, "Harbor gives up on a webhook after 3 s"
    session.close()
