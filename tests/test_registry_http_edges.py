"""HTTP behaviour a Debian `docker-registry` cannot show: throttling, flaky 5xx, token expiry,
cookies, a registry with the referrers API, paginated tags, lying digests, resumable uploads."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
import requests
import responses
from responses import matchers

from harbor_api.credentials import Credentials
from harbor_api.errors import DigestMismatch, TooManyRequests
from harbor_api.oci import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, Descriptor, Manifest
from harbor_api.registry import RegistryClient
from harbor_api.transport import RetryPolicy

HOST = "registry.test"
BASE = f"https://{HOST}/v2"
REALM = "https://auth.test/token"
CHALLENGE = f'Bearer realm="{REALM}",service="registry.test",scope="repository:app:pull"'
FAST = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05)
SUBJECT = Descriptor(OCI_MANIFEST, "sha256:" + "a" * 64, 100)


def _manifest(annotations: dict[str, str] | None = None) -> Manifest:
    return Manifest(
        config=Descriptor(OCI_CONFIG, "sha256:" + "c" * 64, 2),
        layers=(
            Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", "sha256:" + "d" * 64, 9),
        ),
        annotations=annotations or {},
    )


def _client(credentials: Credentials | None = None) -> RegistryClient:
    return RegistryClient(HOST, credentials=credentials, retry=FAST)


def _manifest_answer(manifest: Manifest, digest: str | None = None) -> dict[str, object]:
    raw = manifest.encode()
    return {
        "body": raw,
        "status": 200,
        "headers": {"Docker-Content-Digest": digest or "sha256:" + hashlib.sha256(raw).hexdigest()},
        "content_type": OCI_MANIFEST,
    }


@responses.activate
def test_429_waits_at_least_retry_after_then_succeeds() -> None:
    url = f"{BASE}/app/manifests/v1"
    responses.get(url, status=429, headers={"Retry-After": "1"}, json={"errors": []})
    responses.get(url, **_manifest_answer(_manifest()))  # type: ignore[arg-type]
    started = time.monotonic()
    fetched = _client().get_manifest("app", "v1")
    assert time.monotonic() - started >= 1.0
    assert fetched.media_type == OCI_MANIFEST
    assert len(responses.calls) == 2


@responses.activate
def test_429_every_time_gives_up_after_the_policy_attempts() -> None:
    url = f"{BASE}/app/manifests/v1"
    responses.get(
        url, status=429, json={"errors": [{"code": "TOOMANYREQUESTS", "message": "slow"}]}
    )
    with pytest.raises(
        TooManyRequests,
        match=r"GET https://registry.test/v2/app/manifests/v1: "
        r"HTTP 429: TOOMANYREQUESTS: slow",
    ):
        _client().get_manifest("app", "v1")
    assert len(responses.calls) == FAST.attempts


@responses.activate
def test_503_then_200_is_retried_for_reads_only() -> None:
    url = f"{BASE}/app/manifests/v1"
    responses.get(url, status=503)
    responses.get(url, **_manifest_answer(_manifest()))  # type: ignore[arg-type]
    assert _client().get_manifest("app", "v1").media_type == OCI_MANIFEST
    responses.post(f"{BASE}/app/blobs/uploads/", status=503)
    with pytest.raises(Exception, match="HTTP 503"):
        _client().upload_blob("app", b"x", "sha256:" + hashlib.sha256(b"x").hexdigest(), 1)
    assert sum(1 for c in responses.calls if c.request.method == "POST") == 1


@responses.activate
def test_expired_token_is_renewed_and_a_rejected_one_renewed_once() -> None:
    url = f"{BASE}/app/manifests/v1"
    tokens = iter(["token-1", "token-2", "token-3"])
    responses.add_callback(
        responses.GET,
        REALM,
        callback=lambda request: (200, {}, json.dumps({"token": next(tokens), "expires_in": 300})),
    )
    raw = _manifest().encode()

    def registry(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        if request.headers.get("Authorization") in ("Bearer token-1", "Bearer token-3"):
            return 200, {"Content-Type": OCI_MANIFEST}, raw
        return 401, {"WWW-Authenticate": CHALLENGE}, b""

    responses.add_callback(responses.GET, url, callback=registry)
    now = [1000.0]
    client = _client(Credentials("robot$ci", "pa55"))
    client._auth._clock = lambda: now[0]  # type: ignore[method-assign]

    client.get_manifest("app", "v1")  # anonymous → 401 → token-1
    client.get_manifest("app", "v1")  # token-1 from the cache
    token_calls = [c for c in responses.calls if c.request.url.startswith(REALM)]
    assert len(token_calls) == 1
    assert "scope=repository%3Aapp%3Apull" in token_calls[0].request.url
    assert token_calls[0].request.headers["Authorization"].startswith("Basic ")

    now[0] += 300 - 29  # inside the early-renewal margin
    client.get_manifest("app", "v1")  # token-2 fetched proactively, rejected, token-3 works
    token_calls = [c for c in responses.calls if c.request.url.startswith(REALM)]
    assert len(token_calls) == 3


@responses.activate
def test_session_cookie_is_never_sent_back() -> None:
    url = f"{BASE}/app/manifests/v1"
    answer = _manifest_answer(_manifest())
    answer["headers"] = {"Set-Cookie": "sid=abc123; Path=/"}
    responses.get(url, **answer)  # type: ignore[arg-type]
    client = _client()
    client.get_manifest("app", "v1")
    client.get_manifest("app", "v1")
    assert len(responses.calls) == 2
    assert all("Cookie" not in call.request.headers for call in responses.calls)


@responses.activate
def test_lying_registry_digest_is_a_mismatch() -> None:
    url = f"{BASE}/app/manifests/v1"
    responses.get(url, **_manifest_answer(_manifest(), "sha256:" + "e" * 64))  # type: ignore[arg-type]
    with pytest.raises(DigestMismatch, match="announced sha256:eee"):
        _client().get_manifest("app", "v1")
    wanted = "sha256:" + "f" * 64
    responses.get(
        f"{BASE}/app/manifests/{wanted}", content_type=OCI_MANIFEST, body=_manifest().encode()
    )
    with pytest.raises(DigestMismatch, match=f"asked for {wanted}"):
        _client().get_manifest("app", wanted)


@responses.activate
def test_registry_with_referrers_api_gets_no_fallback_tag_update() -> None:
    referrer = Manifest(
        _manifest().config, _manifest().layers, subject=SUBJECT, annotations={"k": "v"}
    )
    digest = "sha256:" + hashlib.sha256(referrer.encode()).hexdigest()
    responses.put(
        f"{BASE}/app/manifests/{digest}",
        status=201,
        headers={"OCI-Subject": SUBJECT.digest, "Docker-Content-Digest": digest},
    )
    responses.put(
        f"{BASE}/app/manifests/v1-esgz", status=201, headers={"OCI-Subject": SUBJECT.digest}
    )
    pushed = _client().push_referrer("app", referrer, tag="v1-esgz")
    assert pushed.oci_subject == SUBJECT.digest
    assert [c.request.method for c in responses.calls] == ["PUT", "PUT"]


@responses.activate
def test_a_registry_with_the_api_gets_no_fallback_link_for_a_held_referrer() -> None:
    referrer = Manifest(_manifest().config, _manifest().layers, subject=SUBJECT)
    responses.get(
        f"{BASE}/app/referrers/{SUBJECT.digest}", json=_referrers_page(), content_type=OCI_INDEX
    )
    assert not _client().link_referrer("app", referrer)
    assert [c.request.method for c in responses.calls] == ["GET"]


def _referrers_page(*types: str) -> dict[str, object]:
    return {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": "sha256:" + str(i) * 64,
                "size": 10,
                "artifactType": t,
            }
            for i, t in enumerate(types, start=1)
        ],
    }


@responses.activate
def test_referrers_api_filter_is_trusted_only_when_the_registry_says_it_applied_it() -> None:
    url = f"{BASE}/app/referrers/{SUBJECT.digest}"
    responses.get(
        url,
        json=_referrers_page("x/sig", "x/other"),
        headers={"OCI-Filters-Applied": "artifactType"},
    )
    responses.get(url, json=_referrers_page("x/sig", "x/other"))
    trusted = _client().referrers("app", SUBJECT.digest, "x/sig")
    filtered_here = _client().referrers("app", SUBJECT.digest, "x/sig")
    assert [d.artifact_type for d in trusted] == ["x/sig", "x/other"]
    assert [d.artifact_type for d in filtered_here] == ["x/sig"]
    assert responses.calls[0].request.params == {"artifactType": "x/sig"}


@responses.activate
def test_referrers_and_tags_follow_link_pages() -> None:
    url = f"{BASE}/app/referrers/{SUBJECT.digest}"
    responses.get(
        url,
        json=_referrers_page("a/1"),
        match=[matchers.query_param_matcher({})],
        headers={"Link": f'</v2/app/referrers/{SUBJECT.digest}?last=1>; rel="next"'},
    )
    responses.get(
        url, json=_referrers_page("a/2", "a/3"), match=[matchers.query_param_matcher({"last": "1"})]
    )
    assert [d.artifact_type for d in _client().referrers("app", SUBJECT.digest)] == [
        "a/1",
        "a/2",
        "a/3",
    ]
    tags = f"{BASE}/app/tags/list"
    responses.get(
        tags,
        json={"name": "app", "tags": ["a", "b"]},
        match=[matchers.query_param_matcher({"n": "1000"})],
        headers={"Link": '</v2/app/tags/list?last=b&n=1000>; rel="next"'},
    )
    responses.get(
        tags,
        json={"name": "app", "tags": ["c"]},
        match=[matchers.query_param_matcher({"last": "b", "n": "1000"})],
    )
    assert list(_client().list_tags("app")) == ["a", "b", "c"]


@responses.activate
def test_interrupted_chunk_resumes_from_the_offset_the_registry_reports() -> None:
    data = bytes(range(256)) * 40  # 10240 bytes, chunks of 4096
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    upload = f"{BASE}/app/blobs/uploads/u1"
    responses.post(
        f"{BASE}/app/blobs/uploads/", status=202, headers={"Location": "/v2/app/blobs/uploads/u1"}
    )
    received = bytearray()
    fail_once = [True]

    def patch(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        start, end = (int(x) for x in request.headers["Content-Range"].split("-"))
        body = request.body if isinstance(request.body, bytes) else b"".join(request.body)  # type: ignore[arg-type]
        assert start == len(received)
        assert end - start + 1 == len(body)
        if start == 4096 and fail_once[0]:
            fail_once[0] = False
            received.extend(body[:1000])  # the registry kept part of the chunk
            raise requests.ConnectionError("connection reset")
        received.extend(body)
        return 202, {"Location": upload, "Range": f"0-{len(received) - 1}"}, ""

    responses.add_callback(responses.PATCH, upload, callback=patch)
    responses.add_callback(
        responses.GET,
        upload,
        callback=lambda request: (204, {"Range": f"0-{len(received) - 1}", "Location": upload}, ""),
    )
    responses.put(upload, status=201, headers={"Docker-Content-Digest": digest})
    client = RegistryClient(HOST, retry=FAST, chunk_size=4096, monolithic_limit=1024)
    client.upload_blob("app", data, digest, len(data))
    assert bytes(received) == data
    ranges = [
        c.request.headers["Content-Range"] for c in responses.calls if c.request.method == "PATCH"
    ]
    assert ranges == ["0-4095", "4096-8191", "5096-9191", "9192-10239"]


@responses.activate
def test_interrupted_upload_with_ambiguous_offset_restarts_in_a_new_session() -> None:
    data = bytes(range(256)) * 32  # 8192 bytes, chunks of 4096
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    sessions = iter(["u1", "u2"])
    responses.add_callback(
        responses.POST,
        f"{BASE}/app/blobs/uploads/",
        callback=lambda request: (202, {"Location": f"/v2/app/blobs/uploads/{next(sessions)}"}, ""),
    )
    responses.patch(f"{BASE}/app/blobs/uploads/u1", body=requests.ConnectionError("reset"))
    responses.get(f"{BASE}/app/blobs/uploads/u1", status=204, headers={"Range": "0-0"})
    responses.delete(f"{BASE}/app/blobs/uploads/u1", status=204)
    responses.patch(f"{BASE}/app/blobs/uploads/u2", status=202)
    responses.put(f"{BASE}/app/blobs/uploads/u2", status=201)
    client = RegistryClient(HOST, retry=FAST, chunk_size=4096, monolithic_limit=1024)
    client.upload_blob("app", data, digest, len(data))
    calls = [
        (c.request.method, c.request.url.split("?")[0].rsplit("/", 1)[-1]) for c in responses.calls
    ]
    assert calls == [
        ("POST", ""),
        ("PATCH", "u1"),
        ("GET", "u1"),
        ("DELETE", "u1"),
        ("POST", ""),
        ("PATCH", "u2"),
        ("PATCH", "u2"),
        ("PUT", "u2"),
    ]


@responses.activate
def test_range_ignored_by_the_server_still_gives_the_tail_and_is_verified() -> None:
    data = bytes(range(200))
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    responses.get(f"{BASE}/app/blobs/{digest}", body=data, status=200)
    with _client().open_blob("app", digest, start=150) as stream:
        assert stream.read() == data[150:]
    responses.replace(responses.GET, f"{BASE}/app/blobs/{digest}", body=data[:-1] + b"!")
    with pytest.raises(DigestMismatch), _client().open_blob("app", digest, start=150) as stream:
        stream.read()


@responses.activate
def test_fallback_entry_lost_to_a_concurrent_writer_is_added_again() -> None:
    referrer = Manifest(_manifest().config, _manifest().layers, subject=SUBJECT)
    raw = referrer.encode()
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    theirs = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "9" * 64, "size": 5}
    ours = {
        "mediaType": OCI_MANIFEST,
        "artifactType": OCI_CONFIG,
        "digest": digest,
        "size": len(raw),
    }
    tag_url = f"{BASE}/app/manifests/sha256-{'a' * 64}"
    answers = iter(
        [
            (404, {}, ""),
            (
                200,
                {"Content-Type": OCI_INDEX},
                json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [theirs]}),
            ),
            (
                200,
                {"Content-Type": OCI_INDEX},
                json.dumps(
                    {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [theirs, ours]}
                ),
            ),
        ]
    )
    responses.add_callback(responses.GET, tag_url, callback=lambda request: next(answers))
    responses.put(f"{BASE}/app/manifests/{digest}", status=201)
    responses.put(tag_url, status=201)
    _client().push_referrer("app", referrer)
    puts = [
        json.loads(c.request.body)
        for c in responses.calls
        if c.request.method == "PUT" and c.request.url == tag_url
    ]
    assert [[m["digest"] for m in index["manifests"]] for index in puts] == [
        [digest],
        [theirs["digest"], digest],
    ]


@responses.activate
def test_token_without_expires_in_lives_sixty_seconds_renewed_a_little_early() -> None:
    url = f"{BASE}/app/manifests/v1"
    tokens = iter(["t1", "t2"])
    responses.add_callback(
        responses.GET,
        REALM,
        callback=lambda request: (200, {}, json.dumps({"token": next(tokens)})),
    )
    raw = _manifest().encode()
    responses.add_callback(
        responses.GET,
        url,
        callback=lambda request: (
            (200, {"Content-Type": OCI_MANIFEST}, raw)
            if request.headers.get("Authorization", "").startswith("Bearer ")
            else (401, {"WWW-Authenticate": CHALLENGE}, b"")
        ),
    )
    now = [0.0]
    client = _client()
    client._auth._clock = lambda: now[0]  # type: ignore[method-assign]
    client.get_manifest("app", "v1")
    now[0] = 50.0
    client.get_manifest("app", "v1")
    assert sum(c.request.url.startswith(REALM) for c in responses.calls) == 1
    now[0] = 55.0
    client.get_manifest("app", "v1")
    assert sum(c.request.url.startswith(REALM) for c in responses.calls) == 2
    assert responses.calls[-1].request.headers["Authorization"] == "Bearer t2"
