"""The fault proxy against the real registry: clean forwarding, each fault exactly, the record."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from harbor_api.credentials import Credentials
from harbor_api.registry import RegistryClient
from harbor_api.transport import NO_RETRY, RetryPolicy, TlsOptions
from tests.support.fault_proxy import Fault, FaultProxy, FaultRule, ProxyRecord
from tests.support.harbor_emulator import (
    ADMIN,
    ADMIN_PASSWORD,
    harbor_session,
    start_harbor_emulator,
)
from tests.support.images import push_blob, push_image, sha256
from tests.support.registry_log import LoggedRequest, parse_access_log, writes_to_manifests
from tests.support.registry_server import RunningRegistry

BLOB = os.urandom(3 << 20)


@pytest.fixture
def proxy(registry: RunningRegistry) -> Iterator[FaultProxy]:
    with FaultProxy(registry.host, seed=7) as running:
        yield running


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """A session whose User-Agent picks out its requests in the registry's access log."""
    with requests.Session() as http:
        http.headers["User-Agent"] = f"fault-proxy-test/{uuid.uuid4()}"
        yield http


@pytest.fixture(scope="module")
def blob(registry: RunningRegistry) -> str:
    return push_blob(registry.url, "proxy/blobs", BLOB)


def logged_by(
    registry: RunningRegistry, http: requests.Session, expected: int
) -> tuple[LoggedRequest, ...]:
    """The registry's log lines for `http`'s requests, once `expected` of them are written."""
    agent = http.headers["User-Agent"]
    deadline = time.monotonic() + 5
    while True:
        mine = tuple(r for r in parse_access_log(registry.log_text()) if r.user_agent == agent)
        if len(mine) >= expected or time.monotonic() > deadline:
            return mine
        time.sleep(0.02)


def only_record(proxy: FaultProxy) -> ProxyRecord:
    (record,) = proxy.records()
    return record


def test_push_and_pull_through_a_clean_proxy_are_byte_identical(
    registry: RunningRegistry, proxy: FaultProxy, session: requests.Session
) -> None:
    image = push_image(proxy.url, "proxy/clean", "v1", session=session)
    manifest = session.get(
        f"{proxy.url}/v2/proxy/clean/manifests/v1",
        headers={"Accept": image.media_type},
        timeout=10,
    )
    assert manifest.status_code == 200
    assert manifest.headers["Docker-Content-Digest"] == image.digest
    assert sha256(manifest.content) == image.digest
    for digest in image.layer_digests:
        via_proxy = session.get(f"{proxy.url}/v2/proxy/clean/blobs/{digest}", timeout=10)
        direct = requests.get(f"{registry.url}/v2/proxy/clean/blobs/{digest}", timeout=10)
        assert via_proxy.content == direct.content
        assert sha256(via_proxy.content) == digest
    assert all(r.fault is None for r in proxy.records())


def test_every_request_is_recorded_as_the_registry_logged_it(
    registry: RunningRegistry, proxy: FaultProxy, session: requests.Session
) -> None:
    push_image(proxy.url, "proxy/recorded", "v1", session=session)
    session.get(f"{proxy.url}/v2/proxy/recorded/manifests/missing", timeout=10)
    records = proxy.records()
    logged = logged_by(registry, session, len(records))
    assert [(r.method, r.path, r.status) for r in records] == [
        (r.method, r.path, r.status) for r in logged
    ]
    assert ("GET", "/v2/proxy/recorded/manifests/missing", 404) in {
        (r.method, r.path, r.status) for r in records
    }
    (tag_write,) = writes_to_manifests(records, "proxy/recorded", ["v1", "missing"])
    assert (tag_write.method, tag_write.status) == ("PUT", 201)


def test_chunked_upload_and_range_read_pass_through(
    proxy: FaultProxy, session: requests.Session
) -> None:
    data = os.urandom(200_000)
    digest = sha256(data)
    start = session.post(f"{proxy.url}/v2/proxy/chunked/blobs/uploads/", timeout=10)
    assert start.status_code == 202
    assert start.headers["Location"].startswith(f"{proxy.url}/v2/proxy/chunked/blobs/uploads/")
    pieces = (data[i : i + 30_000] for i in range(0, len(data), 30_000))
    done = session.put(f"{start.headers['Location']}&digest={digest}", data=pieces, timeout=10)
    assert done.status_code == 201, done.text
    assert done.headers["Docker-Content-Digest"] == digest
    part = session.get(
        f"{proxy.url}/v2/proxy/chunked/blobs/{digest}",
        headers={"Range": "bytes=1000-1999"},
        timeout=10,
    )
    assert part.status_code == 206
    assert part.content == data[1000:2000]


@pytest.mark.parametrize("fault", [Fault.HTTP_500, Fault.HTTP_502, Fault.HTTP_503, Fault.HTTP_429])
def test_an_injected_error_answer_reaches_the_client_and_not_the_registry(
    registry: RunningRegistry,
    proxy: FaultProxy,
    session: requests.Session,
    blob: str,
    fault: Fault,
) -> None:
    proxy.set_rules([FaultRule(fault)])
    answer = session.get(f"{proxy.url}/v2/proxy/blobs/blobs/{blob}", timeout=10)
    assert answer.status_code == fault.status
    assert answer.headers.get("Retry-After") == ("1" if fault is Fault.HTTP_429 else None)
    assert answer.json()["errors"][0]["code"] == "UNAVAILABLE"
    assert only_record(proxy).fault is fault
    proxy.set_rules([])
    assert session.get(f"{proxy.url}/v2/", timeout=10).status_code == 200
    assert [r.path for r in logged_by(registry, session, 1)] == ["/v2/"]


def test_reset_upload_cuts_the_body_halfway_and_the_blob_never_lands(
    registry: RunningRegistry, proxy: FaultProxy, session: requests.Session
) -> None:
    data = os.urandom(2 << 20)
    digest = sha256(data)
    start = session.post(f"{proxy.url}/v2/proxy/reset/blobs/uploads/", timeout=10)
    proxy.set_rules([FaultRule(Fault.RESET_UPLOAD, unrepeatable_too=True)])
    with pytest.raises(requests.ConnectionError) as caught:
        session.put(f"{start.headers['Location']}&digest={digest}", data=data, timeout=10)
    assert "reset" in str(caught.value).lower()
    record = proxy.records()[-1]
    assert (record.method, record.fault, record.status) == ("PUT", Fault.RESET_UPLOAD, None)
    assert record.request_bytes == len(data) // 2
    gone = requests.head(f"{registry.url}/v2/proxy/reset/blobs/{digest}", timeout=10)
    assert gone.status_code == 404


def test_reset_download_sends_the_status_and_half_the_body_then_resets(
    proxy: FaultProxy, session: requests.Session, blob: str
) -> None:
    proxy.set_rules([FaultRule(Fault.RESET_DOWNLOAD, methods=frozenset({"GET"}))])
    answer = session.get(f"{proxy.url}/v2/proxy/blobs/blobs/{blob}", stream=True, timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Length"] == str(len(BLOB))
    with pytest.raises(requests.exceptions.ChunkedEncodingError) as caught:
        answer.content  # noqa: B018 - reading the body is the act under test
    assert "ConnectionResetError" in str(caught.value)
    record = only_record(proxy)
    assert (record.fault, record.response_bytes) == (Fault.RESET_DOWNLOAD, len(BLOB) // 2)


def test_truncated_body_ends_cleanly_short_of_its_content_length(
    proxy: FaultProxy, session: requests.Session, blob: str
) -> None:
    proxy.set_rules([FaultRule(Fault.TRUNCATED_BODY)])
    with pytest.raises(requests.exceptions.ChunkedEncodingError) as caught:
        session.get(f"{proxy.url}/v2/proxy/blobs/blobs/{blob}", timeout=10)
    assert f"IncompleteRead({len(BLOB) // 2} bytes read" in str(caught.value)
    assert only_record(proxy).fault is Fault.TRUNCATED_BODY


def test_slow_answer_is_late_but_intact(
    proxy: FaultProxy, session: requests.Session, blob: str
) -> None:
    proxy.set_rules([FaultRule(Fault.SLOW, delay_seconds=0.3)])
    started = time.monotonic()
    answer = session.get(f"{proxy.url}/v2/proxy/blobs/blobs/{blob}", timeout=10)
    assert time.monotonic() - started >= 0.3
    assert answer.content == BLOB
    assert only_record(proxy).fault is Fault.SLOW


def test_upload_requests_get_no_fault_unless_the_rule_asks(
    proxy: FaultProxy, session: requests.Session
) -> None:
    proxy.set_rules([FaultRule(Fault.HTTP_503, path="/blobs/uploads/")])
    push_blob(proxy.url, "proxy/unrepeatable", os.urandom(1000), session)
    assert proxy.faults() == ()
    proxy.set_rules([FaultRule(Fault.HTTP_503, path="/blobs/uploads/", unrepeatable_too=True)])
    answer = session.post(f"{proxy.url}/v2/proxy/unrepeatable/blobs/uploads/", timeout=10)
    assert answer.status_code == 503


def test_faults_are_limited_to_their_methods_and_paths(
    proxy: FaultProxy, session: requests.Session, blob: str
) -> None:
    proxy.set_rules([FaultRule(Fault.HTTP_500, methods=frozenset({"head"}), path=r"/blobs/sha")])
    blob_url = f"{proxy.url}/v2/proxy/blobs/blobs/{blob}"
    assert session.head(blob_url, timeout=10).status_code == 500
    assert session.get(blob_url, timeout=10).status_code == 200
    assert session.head(f"{proxy.url}/v2/proxy/blobs/manifests/x", timeout=10).status_code == 404
    assert [r.fault for r in proxy.records()] == [Fault.HTTP_500, None, None]


def test_a_seeded_rate_injects_the_same_faults_on_every_run(
    registry: RunningRegistry, session: requests.Session
) -> None:
    def run() -> list[bool]:
        rule = FaultRule(Fault.HTTP_503, rate=0.3)
        with FaultProxy(registry.host, [rule], seed=42) as proxy:
            for _ in range(60):
                session.get(f"{proxy.url}/v2/", timeout=10)
            return [r.fault is not None for r in proxy.records()]

    first = run()
    assert first == run()
    assert 8 <= sum(first) <= 30


def test_stop_does_not_wait_for_idle_keep_alive_connections(
    registry: RunningRegistry, session: requests.Session
) -> None:
    proxy = FaultProxy(registry.host, timeout=30).start()
    url = proxy.url
    assert session.get(f"{url}/v2/", timeout=10).status_code == 200
    started = time.monotonic()
    proxy.stop()
    assert time.monotonic() - started < 5
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/v2/", timeout=5)


def test_request_limit_makes_the_record_refuse_to_look_complete(
    registry: RunningRegistry, session: requests.Session
) -> None:
    with FaultProxy(registry.host, max_requests=2) as proxy:
        codes = [session.get(f"{proxy.url}/v2/", timeout=10).status_code for _ in range(3)]
        assert codes == [200, 200, 503]
        with pytest.raises(RuntimeError, match="more than 2 requests"):
            proxy.records()


def test_unreachable_upstream_is_a_502_from_the_proxy(session: requests.Session) -> None:
    with FaultProxy("127.0.0.1:9") as proxy:
        answer = session.get(f"{proxy.url}/v2/", timeout=10)
    assert answer.status_code == 502
    assert "upstream failed" in answer.text


@pytest.mark.parametrize(
    ("upstream", "rule_args", "message"),
    [
        ("example.com:5000", {}, "not a loopback host:port"),
        ("127.0.0.1:5000", {"rate": 1.5}, r"rate 1.5 is not in \[0, 1\]"),
        ("127.0.0.1:5000", {"delay_seconds": 60}, "delay_seconds 60"),
        ("127.0.0.1:5000", {"path": "[v"}, "path '\\[v'"),
    ],
)
def test_bad_proxy_settings_are_refused_with_the_reason(
    upstream: str, rule_args: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        FaultProxy(upstream, [FaultRule(Fault.SLOW, **rule_args)])  # type: ignore[arg-type]


def test_acceld_registry_client_works_through_the_proxy_and_retries_its_faults(
    proxy: FaultProxy,
) -> None:
    retry = RetryPolicy(attempts=8, initial_wait=0.01, max_wait=0.05)
    client = RegistryClient(
        proxy.host,
        tls=TlsOptions(plain_http=True),
        retry=retry,
        chunk_size=100_000,
        monolithic_limit=0,
    )
    data = os.urandom(250_000)
    digest = sha256(data)
    client.upload_blob("proxy/client", data, digest, len(data))
    assert [r.method for r in proxy.records() if "/blobs/uploads/" in r.path].count("PATCH") >= 2
    proxy.set_rules([FaultRule(Fault.HTTP_503, rate=0.5, methods=frozenset({"GET"}))], seed=3)
    for _ in range(5):
        assert client.read_blob("proxy/client", digest, max_size=len(data)) == data
    injected = proxy.faults()
    assert injected
    assert {r.fault for r in injected} == {Fault.HTTP_503}
    gets = [r for r in proxy.records() if r.method == "GET"]
    assert len(gets) == 5 + len(injected)


def test_token_auth_in_front_of_harbor_goes_through_the_proxy_too(
    registry: RunningRegistry,
) -> None:
    harbor = start_harbor_emulator(registry.url)
    try:
        harbor.emulator.state.add_project("proxied")
        pushed = push_image(
            harbor.url, "proxied/app", "v1", session=harbor_session(ADMIN, ADMIN_PASSWORD)
        )
        with FaultProxy(harbor.host) as proxy:
            client = RegistryClient(
                proxy.host,
                credentials=Credentials(ADMIN, ADMIN_PASSWORD),
                tls=TlsOptions(plain_http=True),
                retry=NO_RETRY,
            )
            assert client.get_manifest("proxied/app", "v1").digest == pushed.digest
            paths = [r.path for r in proxy.records()]
    finally:
        harbor.stop()
    assert "/service/token" in paths
    assert paths[-1] == "/v2/proxied/app/manifests/v1"
