"""Credentials go only to the configured registry's scheme, host and port.

A hostile registry on 127.0.0.1 asks for Basic credentials, then points its next tag page and
its blob upload `Location` at a catcher on 127.0.0.2 (another host, as the client sees it) or
at another port of its own host. The catcher records every request it gets: it must get none.
Token realms and source URLs with credentials inside are checked with `responses` and pure
calls.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import responses

from harbor_api.credentials import Credentials
from harbor_api.errors import ForeignUrl, Unauthorized
from harbor_api.origins import Origin, check_same_origin, refuse_userinfo
from harbor_api.registry import RegistryClient
from harbor_api.transport import NO_RETRY, TlsOptions

USER, PASSWORD = "robot$acceld", "catch-me-if-you-can-0451"
Answer = tuple[int, dict[str, str], bytes]
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


@dataclass
class Server:
    """A loopback HTTP server answering with `answer(method, path, headers)`, recording all."""

    address: str
    answer: Any
    seen: list[tuple[str, str, str]] = field(default_factory=list)
    httpd: ThreadingHTTPServer | None = None

    def start(self) -> Server:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                authorization = self.headers.get("Authorization", "")
                server.seen.append((self.command, self.path, authorization))
                status, headers, body = server.answer(self.command, self.path, authorization)
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self.handle_one()

            def do_POST(self) -> None:
                self.handle_one()

            def do_PUT(self) -> None:
                self.handle_one()

        self.httpd = ThreadingHTTPServer((self.address, 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    @property
    def host(self) -> str:
        assert self.httpd is not None
        return f"{self.address}:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


def _catcher_answer(method: str, path: str, authorization: str) -> Answer:
    return 200, {"Content-Type": "application/json"}, b'{"name": "app", "tags": ["stolen"]}'


@pytest.fixture
def catcher() -> Iterator[Server]:
    server = Server("127.0.0.2", _catcher_answer).start()
    yield server
    server.stop()


def hostile_registry(elsewhere: str) -> Server:
    """Asks for Basic credentials; then sends the next tag page and uploads to `elsewhere`."""

    def answer(method: str, path: str, authorization: str) -> Answer:
        if authorization != BASIC:
            return 401, {"WWW-Authenticate": 'Basic realm="hostile"'}, b""
        if path.startswith("/v2/app/tags/list"):
            link = f'<{elsewhere}/v2/app/tags/list?last=a>; rel="next"'
            body = b'{"name": "app", "tags": ["a"]}'
            return 200, {"Content-Type": "application/json", "Link": link}, body
        if method == "POST" and path.startswith("/v2/app/blobs/uploads/"):
            return 202, {"Location": f"{elsewhere}/v2/app/blobs/uploads/u1?_state=x"}, b""
        return 200, {"Content-Type": "application/json"}, b"{}"

    return Server("127.0.0.1", answer).start()


def _client(host: str) -> RegistryClient:
    return RegistryClient(
        host,
        credentials=Credentials(USER, PASSWORD),
        tls=TlsOptions(plain_http=True),
        retry=NO_RETRY,
    )


@pytest.mark.parametrize("address", ["127.0.0.2", "127.0.0.1"], ids=["other-host", "other-port"])
def test_next_tag_page_link_elsewhere_is_refused_and_gets_no_credentials(address: str) -> None:
    target = Server(address, _catcher_answer).start()
    registry = hostile_registry(f"http://{target.host}")
    try:
        with pytest.raises(ForeignUrl) as caught:
            list(_client(registry.host).list_tags("app"))
    finally:
        registry.stop()
        target.stop()
    assert target.seen == [], "a request went where the Link pointed"
    assert [auth for _, _, auth in registry.seen] == ["", BASIC]
    message = str(caught.value)
    assert f"next-page Link of GET http://{registry.host}/v2/app/tags/list" in message
    assert f"http://{target.host}" in message
    assert PASSWORD not in message
    assert not caught.value.transient


def test_upload_location_elsewhere_is_refused_and_gets_no_blob_or_credentials(
    catcher: Server,
) -> None:
    registry = hostile_registry(f"http://{catcher.host}")
    data = b"layer bytes that must not leave"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    try:
        with pytest.raises(ForeignUrl) as caught:
            _client(registry.host).upload_blob("app", data, digest, len(data))
    finally:
        registry.stop()
    assert catcher.seen == []
    assert f"Location of POST http://{registry.host}/v2/app/blobs/uploads/" in str(caught.value)


HOST = "registry.test"
BASE = f"https://{HOST}/v2"


@responses.activate
def test_https_link_to_plain_http_on_the_same_host_is_a_refused_downgrade() -> None:
    responses.get(
        f"{BASE}/app/tags/list",
        json={"name": "app", "tags": ["a"]},
        headers={"Link": f'<http://{HOST}/v2/app/tags/list?last=a>; rel="next"'},
    )
    client = RegistryClient(HOST, credentials=Credentials(USER, PASSWORD), retry=NO_RETRY)
    with pytest.raises(ForeignUrl, match="downgrade from https to http"):
        list(client.list_tags("app"))
    assert len(responses.calls) == 1


@responses.activate
def test_relative_and_same_origin_links_are_followed() -> None:
    url = f"{BASE}/_catalog"
    responses.get(
        url, json={"repositories": ["a"]}, headers={"Link": '</v2/_catalog?last=a>; rel="next"'}
    )
    responses.get(
        url,
        json={"repositories": ["b"]},
        headers={"Link": f'<https://{HOST}/v2/_catalog?last=b>; rel="next"'},
    )
    responses.get(url, json={"repositories": ["c"]})
    client = RegistryClient(HOST, retry=NO_RETRY)
    assert list(client.catalog()) == ["a", "b", "c"]
    assert [call.request.url for call in responses.calls][1:] == [
        f"{url}?last=a",
        f"{url}?last=b",
    ]


@pytest.mark.parametrize(
    "realm",
    ["file:///etc/passwd", "ftp://auth.test/token", "gopher://auth.test/", "https:///no-host"],
)
@responses.activate
def test_bearer_realm_that_is_not_http_is_refused(realm: str) -> None:
    responses.get(
        f"{BASE}/",
        status=401,
        headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="registry.test"'},
    )
    client = RegistryClient(HOST, credentials=Credentials(USER, PASSWORD), retry=NO_RETRY)
    with pytest.raises(Unauthorized, match="no usable realm"):
        client.ping()
    assert [call.request.url for call in responses.calls] == [f"{BASE}/"]


@responses.activate
def test_plain_http_realm_for_an_https_registry_gets_no_password() -> None:
    responses.get(
        f"{BASE}/",
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="http://auth.test/token",service="r"'},
    )
    client = RegistryClient(HOST, credentials=Credentials(USER, PASSWORD), retry=NO_RETRY)
    with pytest.raises(Unauthorized, match="plain-HTTP token realm"):
        client.ping()
    assert [call.request.url for call in responses.calls] == [f"{BASE}/"]


@pytest.mark.parametrize(
    "url",
    [
        "http://robot:pa55-secret@harbor.test",
        "https://robot%24acceld:pa55-secret@harbor.test:8443/",
        "robot:pa55-secret@registry.test:5000",
        "https://pa55-secret@harbor.test",
    ],
)
def test_source_url_with_credentials_inside_is_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ValueError, match="username or password inside") as caught:
        refuse_userinfo(url)
    assert "pa55-secret" not in str(caught.value)
    assert "robot" not in str(caught.value)
    assert "harbor.test" in str(caught.value) or "registry.test" in str(caught.value)


@pytest.mark.parametrize(
    "url", ["https://harbor.test", "http://127.0.0.1:5000/", "registry.test:5000", "harbor.test"]
)
def test_source_url_without_credentials_is_accepted(url: str) -> None:
    refuse_userinfo(url)


def test_origins_compare_scheme_host_and_port_with_default_ports() -> None:
    registry = Origin.of("https://Registry.Test/v2")
    assert registry == Origin("https", "registry.test", 443)
    assert check_same_origin("https://registry.test:443/v2/x", registry, "GET x") == (
        "https://registry.test:443/v2/x"
    )
    for url in ("https://registry.test:444/v2/x", "https://other.test/v2/x", "ftp://x/"):
        with pytest.raises(ForeignUrl):
            check_same_origin(url, registry, "GET x")
