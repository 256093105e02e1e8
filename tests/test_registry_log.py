"""Reading the real registry's access log, and spotting writes to an original's manifest."""

from __future__ import annotations

import time
import uuid

import requests

from tests.support.images import push_image
from tests.support.registry_log import LoggedRequest, parse_access_log, writes_to_manifests
from tests.support.registry_server import RunningRegistry


def test_access_log_lines_become_requests_and_other_lines_are_skipped() -> None:
    text = "\n".join(
        [
            'time="2026-11-27T23:26:28Z" level=info msg="response completed" '
            "http.request.method=GET http.request.uri=/v2/",
            '127.0.0.1 - - [27/Nov/2026:23:26:28 +0000] "DELETE /v2/a/b%2Fc/manifests/'
            'sha256:ab HTTP/1.1" 202 0 "" "acceld/0.1"',
            '127.0.0.1 - - [27/Nov/2026:23:26:28 +0000] "GET /v2/a/tags/list?n=5 HTTP/1.1" '
            '200 27 "" "python-requests/2.34.2"',
        ]
    )
    assert parse_access_log(text) == (
        LoggedRequest("DELETE", "/v2/a/b/c/manifests/sha256:ab", "", 202, "acceld/0.1"),
        LoggedRequest("GET", "/v2/a/tags/list", "n=5", 200, "python-requests/2.34.2"),
    )


def test_writes_to_an_originals_tag_or_digest_are_found_and_reads_are_not(
    registry: RunningRegistry,
) -> None:
    agent = f"registry-log-test/{uuid.uuid4()}"
    with requests.Session() as http:
        http.headers["User-Agent"] = agent
        original = push_image(registry.url, "log/original", "v1", session=http)
        other = push_image(
            registry.url, "log/original", "v2", annotations={"x": "other"}, session=http
        )
        http.get(f"{registry.url}/v2/log/original/manifests/v1", timeout=10)
        http.delete(f"{registry.url}/v2/log/original/manifests/{other.digest}", timeout=10)
    deadline = time.monotonic() + 5
    mine: tuple[LoggedRequest, ...] = ()
    while time.monotonic() < deadline:
        mine = tuple(r for r in parse_access_log(registry.log_text()) if r.user_agent == agent)
        if any(r.method == "DELETE" for r in mine):
            break
        time.sleep(0.02)
    to_original = writes_to_manifests(mine, "log/original", ["v1", original.digest])
    assert [(r.method, r.path) for r in to_original] == [("PUT", "/v2/log/original/manifests/v1")]
    to_other = writes_to_manifests(mine, "log/original", ["v2", other.digest])
    assert [(r.method, r.path) for r in to_other] == [
        ("PUT", "/v2/log/original/manifests/v2"),
        ("DELETE", f"/v2/log/original/manifests/{other.digest}"),
    ]
    assert writes_to_manifests(mine, "log/elsewhere", ["v1"]) == ()
