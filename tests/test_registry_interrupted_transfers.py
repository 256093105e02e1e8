"""Transfers cut mid-way recover against the real registry.

A small TCP proxy in front of the real registry drops the connection once, after a number of
request bytes, which is what a flaky network does to a long PATCH. distribution signs the upload
offset into the upload URL and invalidates a session whose stored size no longer matches it, so
against distribution (and Harbor, which embeds it) recovery is a clean restart; resuming from a
reported offset is proven against a registry that allows it in test_registry_http_edges.py.
A download cut mid-way continues with a Range request.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harbor_api.registry import RegistryClient
from harbor_api.transport import RetryPolicy, TlsOptions
from tests.support.registry_server import RunningRegistry

MIB = 1 << 20


class CuttingProxy:
    """Forwards loopback TCP to `upstream`; closes the connection once, after `cut_after` bytes
    went towards the registry (`requests`) or back from it (`answers`)."""

    def __init__(self, upstream: str, cut_after: int, direction: str = "requests") -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._cut_after = cut_after
        self._direction = direction
        self._forwarded = 0
        self.cuts = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._accept_thread = threading.Thread(target=self._accept, daemon=True)
        self._accept_thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self._upstream, timeout=30)
            self._sockets += [client, upstream]
            towards_registry = self._direction == "requests"
            for source, target, count in (
                (client, upstream, towards_registry),
                (upstream, client, not towards_registry),
            ):
                thread = threading.Thread(
                    target=self._pump, args=(source, target, count, client, upstream), daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def _pump(
        self,
        source: socket.socket,
        target: socket.socket,
        count: bool,
        client: socket.socket,
        upstream: socket.socket,
    ) -> None:
        try:
            while data := source.recv(256 * 1024):
                if count:
                    with self._lock:
                        self._forwarded += len(data)
                        cut = self.cuts == 0 and self._forwarded > self._cut_after
                        if cut:
                            self.cuts += 1
                    if cut:
                        for sock in (client, upstream):
                            sock.shutdown(socket.SHUT_RDWR)
                        return
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._accept_thread.join(timeout=5)
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture
def proxy(registry: RunningRegistry) -> Iterator[CuttingProxy]:
    running = CuttingProxy(registry.host, cut_after=13 * MIB)
    yield running
    running.close()


@pytest.fixture
def answer_cutting_proxy(registry: RunningRegistry) -> Iterator[CuttingProxy]:
    running = CuttingProxy(registry.host, cut_after=5 * MIB, direction="answers")
    yield running
    running.close()


def test_chunked_upload_cut_mid_chunk_restarts_cleanly_when_the_session_is_gone(
    registry: RunningRegistry, proxy: CuttingProxy, tmp_path: Path
) -> None:
    source = tmp_path / "blob.bin"
    data = os.urandom(24 * MIB)
    source.write_bytes(data)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    client = RegistryClient(
        proxy.host,
        tls=TlsOptions(plain_http=True),
        retry=RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05),
        chunk_size=8 * MIB,
        monolithic_limit=MIB,
    )
    client.upload_blob("resume/blob", source, digest, len(data))
    assert proxy.cuts == 1
    assert registry.log_search(r'"GET /v2/resume/blob/blobs/uploads/[^ ]+ HTTP/1.1" 404')
    assert registry.log_search(r'"PUT /v2/resume/blob/blobs/uploads/[^ ]+ HTTP/1.1" 201')
    log = registry.log_text()
    assert log.count('"POST /v2/resume/blob/blobs/uploads/') == 2
    assert log.count('"PUT /v2/resume/blob/blobs/uploads/') == 1
    with client.open_blob("resume/blob", digest) as stream:
        assert stream.read() == data


def test_whole_upload_cut_mid_put_starts_again_in_a_fresh_session(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    data = os.urandom(4 * MIB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    proxy = CuttingProxy(registry.host, cut_after=2 * MIB)
    try:
        client = RegistryClient(
            proxy.host,
            tls=TlsOptions(plain_http=True),
            retry=RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05),
        )
        client.upload_blob("whole/blob", data, digest, len(data))
        assert proxy.cuts == 1
        with client.open_blob("whole/blob", digest) as stream:
            assert stream.read() == data
    finally:
        proxy.close()
    log = registry.log_text()
    assert log.count('"POST /v2/whole/blob/blobs/uploads/') == 2
    assert registry.log_search(r'"PUT /v2/whole/blob/blobs/uploads/[^ ]+ HTTP/1.1" 201')


def test_download_cut_mid_way_continues_with_a_range_request(
    registry: RunningRegistry, answer_cutting_proxy: CuttingProxy, tmp_path: Path
) -> None:
    data = os.urandom(12 * MIB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    direct = RegistryClient(registry.host, tls=TlsOptions(plain_http=True))
    direct.upload_blob("resume/download", data, digest, len(data))
    client = RegistryClient(
        answer_cutting_proxy.host,
        tls=TlsOptions(plain_http=True),
        retry=RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05),
    )
    target = tmp_path / "blob"
    assert client.download_blob("resume/download", digest, target) == len(data)
    assert answer_cutting_proxy.cuts == 1
    assert target.read_bytes() == data
    assert registry.log_search(rf'"GET /v2/resume/download/blobs/{digest} HTTP/1.1" 206')


def test_small_blob_answer_cut_short_is_read_again(registry: RunningRegistry) -> None:
    data = os.urandom(64 * 1024)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    RegistryClient(registry.host, tls=TlsOptions(plain_http=True)).upload_blob(
        "resume/config", data, digest, len(data)
    )
    proxy = CuttingProxy(registry.host, cut_after=20_000, direction="answers")
    try:
        client = RegistryClient(
            proxy.host,
            tls=TlsOptions(plain_http=True),
            retry=RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05),
        )
        assert client.read_blob("resume/config", digest, max_size=len(data)) == data
        assert proxy.cuts == 1
    finally:
        proxy.close()
