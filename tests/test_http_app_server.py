"""The listener: TLS with a certificate made by openssl, clean stop, bounded handshakes."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests

from harbor_api.errors import AcceldError
from reconciler.service.http_server import HttpServer, ServerLimits, ServerTls, ServerTlsError

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def slow_app(release: threading.Event) -> WSGIApplication:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        if environ["PATH_INFO"] == "/slow":
            release.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["wsgi.url_scheme"].encode()]

    return app


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> ServerTls:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return ServerTls(cert_file=cert, key_file=key)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def test_https_serves_the_app_with_the_given_certificate(
    certificate: ServerTls, release: threading.Event
) -> None:
    server = HttpServer(slow_app(release), host="127.0.0.1", port=0, tls=certificate)
    server.start()
    try:
        assert server.url.startswith("https://127.0.0.1:")
        with requests.Session() as session:
            for _ in range(3):
                answer = session.get(server.url + "/", verify=str(certificate.cert_file), timeout=5)
                assert answer.status_code == 200
                assert answer.text == "https"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(server.url + "/", timeout=5)
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(server.url.replace("https", "http") + "/", timeout=5)
    finally:
        server.stop(grace_seconds=1)


def test_silent_client_does_not_block_other_tls_clients(
    certificate: ServerTls, release: threading.Event
) -> None:
    limits = ServerLimits(handshake_seconds=1.0)
    server = HttpServer(slow_app(release), host="127.0.0.1", port=0, tls=certificate, limits=limits)
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as silent:
            started = time.monotonic()
            answer = requests.get(server.url + "/", verify=str(certificate.cert_file), timeout=5)
            assert answer.status_code == 200
            assert time.monotonic() - started < 1.0
            silent.settimeout(5)
            assert silent.recv(1) == b""
    finally:
        server.stop(grace_seconds=1)


@pytest.mark.parametrize("tls", [False, True])
def test_stop_refuses_new_connections_and_lets_the_request_in_flight_finish(
    certificate: ServerTls, release: threading.Event, tls: bool
) -> None:
    server = HttpServer(
        slow_app(release),
        host="127.0.0.1",
        port=0,
        tls=certificate if tls else None,
    )
    server.start()
    url, port = server.url, server.port
    verify = str(certificate.cert_file)
    answers: list[requests.Response] = []
    in_flight = threading.Thread(
        target=lambda: answers.append(requests.get(url + "/slow", verify=verify, timeout=10))
    )
    in_flight.start()
    time.sleep(0.3)
    stopper = threading.Thread(target=server.stop, kwargs={"grace_seconds": 5})
    stopper.start()
    time.sleep(0.3)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    release.set()
    in_flight.join(10)
    stopper.join(10)
    assert not stopper.is_alive()
    assert [answer.status_code for answer in answers] == [200]


def test_stop_returns_within_the_grace_period_when_a_request_hangs(
    release: threading.Event,
) -> None:
    server = HttpServer(slow_app(release), host="127.0.0.1", port=0)
    server.start()
    url = server.url
    outcome: list[str] = []

    def hanging_request() -> None:
        try:
            requests.get(url + "/slow", timeout=10)
        except requests.ConnectionError as exc:
            outcome.append(type(exc).__name__)

    client = threading.Thread(target=hanging_request)
    client.start()
    time.sleep(0.3)
    started = time.monotonic()
    server.stop(grace_seconds=0.5)
    assert time.monotonic() - started < 3.0
    release.set()
    client.join(10)
    assert outcome == ["ConnectionError"]


def test_unusable_certificate_is_a_clear_error(tmp_path: Path, certificate: ServerTls) -> None:
    missing = ServerTls(cert_file=tmp_path / "none.pem", key_file=tmp_path / "none.key")
    with pytest.raises(ServerTlsError, match=r"none\.pem with key .*none\.key: No such file"):
        HttpServer(slow_app(threading.Event()), host="127.0.0.1", port=0, tls=missing).start()
    swapped = ServerTls(cert_file=certificate.key_file, key_file=certificate.cert_file)
    with pytest.raises(ServerTlsError, match="TLS certificate"):
        HttpServer(slow_app(threading.Event()), host="127.0.0.1", port=0, tls=swapped).start()


def test_port_in_use_is_a_clear_error(release: threading.Event) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(AcceldError, match=f"cannot listen on 127.0.0.1:{port}"):
            HttpServer(slow_app(release), host="127.0.0.1", port=port).start()


def test_tls_context_refuses_old_protocol_versions(certificate: ServerTls) -> None:
    assert certificate.context().minimum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize(("before", "after"), [(0.005, 0.001), (0.0005, 0.0005)])
def test_start_shortens_the_gil_switch_interval_but_never_lengthens_it(
    release: threading.Event, before: float, after: float
) -> None:
    saved = sys.getswitchinterval()
    sys.setswitchinterval(before)
    server = HttpServer(slow_app(release), host="127.0.0.1", port=0)
    try:
        server.start()
        assert sys.getswitchinterval() == pytest.approx(after)
    finally:
        server.stop(grace_seconds=1)
        sys.setswitchinterval(saved)
