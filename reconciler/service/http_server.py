"""Serving the WSGI app with waitress, over plain HTTP or TLS, with a clean stop.

waitress has no TLS, and wrapping its listening socket in `ssl` does not work: its event loop
treats the non-blocking handshake's "want read" as a socket error and drops the connection, and a
blocking handshake would stall the whole loop on one slow client. So with TLS, waitress listens
on a unix socket in a private directory and a small front terminates TLS: each connection gets
a thread (bounded in number) that completes the handshake under a timeout and relays bytes.
waitress keeps doing all the HTTP parsing either way.
"""

from __future__ import annotations

import logging
import select
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from waitress import wasyncore
from waitress.server import create_server

from harbor_api.errors import AcceldError

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

log = logging.getLogger(__name__)

_RELAY_CHUNK = 64 * 1024
# Conversions run as threads of the same process and hold the GIL in their Python parts; at
# the default 5 ms every hand-off to a request thread can wait that long, several times per
# request. In interleaved runs of bench/bench_webhooks.py (two conversions, 200 webhooks/s, a
# shared 2-core machine) the median webhook p99 was ~50 ms at 1 ms against ~240 ms at 5 ms, with
# the same conversion throughput.
GIL_SWITCH_SECONDS = 0.001
_POLL_SECONDS = 0.2
# How often waitress looks for idle channels and requests past their deadline.
_CLEANUP_SECONDS = 1


class ServerTlsError(AcceldError):
    """The certificate or key for the HTTPS listener cannot be used."""


@dataclass(frozen=True)
class ServerTls:
    """The PEM certificate chain and private key the listener presents."""

    cert_file: Path
    key_file: Path

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
            raise ServerTlsError(
                f"TLS certificate {self.cert_file} with key {self.key_file}: {reason}"
            ) from None
        return context


@dataclass(frozen=True)
class ServerLimits:
    """Bounds of the listener; the body limit is the app's job, this one is a backstop.

    Harbor gives up on a webhook after 3 s, so a client that holds a connection without
    finishing its request must not hold a slot for long: a request (headers and body) must
    arrive whole within `request_seconds` of its first byte, a TLS handshake within
    `handshake_seconds`, and there are slots for hundreds of such clients before the limits
    make a real one wait (waitress' default of 100 connections was filled by 98 sockets sending
    a byte every 20 s, which its idle timeout never closes).
    """

    threads: int = 4
    max_request_body_bytes: int = 4 << 20
    idle_seconds: float = 60.0
    """A connection with no request in progress and nothing sent for this long is closed."""
    request_seconds: float = 10.0
    handshake_seconds: float = 3.0
    max_connections: int = 1000
    max_tls_connections: int = 500


class HttpServer:
    """`start()` binds and serves in background threads; `stop()` refuses new connections at
    once, lets requests in progress finish for up to `grace_seconds`, then ends.

    Starting also shortens the interpreter's GIL switch interval to `GIL_SWITCH_SECONDS`.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        host: str,
        port: int,
        tls: ServerTls | None = None,
        limits: ServerLimits = ServerLimits(),
    ) -> None:
        self._app = app
        self._host = host
        self._requested_port = port
        self._tls = tls
        self._limits = limits
        self._bound_port: int | None = None
        self._waitress: Any = None
        self._threads: list[threading.Thread] = []
        self._front: _TlsFront | None = None
        self._private_dir: Path | None = None

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("the server was never started")
        return self._bound_port

    @property
    def url(self) -> str:
        scheme = "https" if self._tls else "http"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self.port}"

    def start(self) -> None:
        context = self._tls.context() if self._tls else None
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_SECONDS))
        listener = _listen(self._host, self._requested_port)
        self._bound_port = int(listener.getsockname()[1])
        if context is None:
            backend = listener
        else:
            self._private_dir = Path(tempfile.mkdtemp(prefix="acceld-http-"))
            backend_path = self._private_dir / "http.sock"
            backend = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            backend.bind(str(backend_path))
            self._front = _TlsFront(listener, context, backend_path, self._limits)
        self._waitress = create_server(
            self._app,
            sockets=[backend],
            threads=self._limits.threads,
            url_scheme="https" if context else "http",
            max_request_body_size=self._limits.max_request_body_bytes,
            channel_timeout=int(self._limits.idle_seconds),
            connection_limit=self._limits.max_connections,
            cleanup_interval=_CLEANUP_SECONDS,
            ident="acceld",
        )
        _add_request_deadline(self._waitress, self._limits.request_seconds)
        self._threads.append(_thread("acceld-http", self._waitress.run))
        if self._front is not None:
            self._threads.append(_thread("acceld-tls-accept", self._front.accept_loop))
        log.info("Listening", extra={"url": self.url})

    def stop(self, grace_seconds: float = 5.0) -> None:
        server = self._waitress
        if server is None:
            return
        deadline = time.monotonic() + grace_seconds
        closed = threading.Event()

        def close_listener() -> None:
            wasyncore.dispatcher.close(server)
            closed.set()

        if self._front is not None:
            self._front.close()
        server.trigger.pull_trigger(close_listener)
        closed.wait(grace_seconds)
        while time.monotonic() < deadline and _busy(server):
            time.sleep(0.02)
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()) + 1.0)
        server.task_dispatcher.shutdown(timeout=1)
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
        self._waitress = None
        log.info("Stopped listening", extra={"url": self.url})


def _add_request_deadline(server: Any, seconds: float) -> None:
    """Close a connection whose request is still incomplete `seconds` after it was first seen.

    waitress closes only connections that send nothing for `channel_timeout`; a client that
    trickles one byte of headers every few seconds would keep its slot for ever. Its periodic
    `maintenance` gets this check on top; each partial request is stamped when first seen.
    """
    idle_maintenance = server.maintenance

    def maintenance(now: float) -> None:
        idle_maintenance(now)
        for channel in list(server.active_channels.values()):
            partial = channel.request
            if partial is None or partial.completed:
                continue
            first_seen = partial.__dict__.setdefault("acceld_first_seen", now)
            if now - first_seen > seconds and not channel.will_close:
                log.info(
                    "Closing a connection whose request did not arrive in time",
                    extra={"remote": str(channel.addr), "seconds": seconds},
                )
                channel.will_close = True

    server.maintenance = maintenance


def _busy(server: Any) -> bool:
    """A request is being read, queued or answered (idle keep-alive connections do not count)."""
    dispatcher = server.task_dispatcher
    receiving = any(channel.requests for channel in list(server.active_channels.values()))
    return receiving or dispatcher.active_count > 0 or bool(dispatcher.queue)


def _thread(name: str, target: Any, *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return thread


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise AcceldError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


class _TlsFront:
    """Accepts TLS connections on `listener` and relays each to waitress's unix socket."""

    def __init__(
        self,
        listener: socket.socket,
        context: ssl.SSLContext,
        backend_path: Path,
        limits: ServerLimits,
    ) -> None:
        listener.listen(128)
        listener.settimeout(_POLL_SECONDS)
        self._listener = listener
        self._context = context
        self._backend_path = backend_path
        self._limits = limits
        self._slots = threading.BoundedSemaphore(limits.max_tls_connections)
        self._closing = threading.Event()

    def accept_loop(self) -> None:
        while not self._closing.is_set():
            if not self._slots.acquire(timeout=_POLL_SECONDS):
                continue
            try:
                conn, _ = self._listener.accept()
            except OSError:
                self._slots.release()
                continue
            _thread("acceld-tls-conn", self._serve, conn)

    def close(self) -> None:
        self._closing.set()
        self._listener.close()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(self._limits.handshake_seconds)
            try:
                tls = self._context.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                log.info("TLS handshake failed", extra={"reason": str(exc)})
                return
            with tls, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as backend:
                tls.settimeout(self._limits.idle_seconds)
                backend.settimeout(self._limits.idle_seconds)
                backend.connect(str(self._backend_path))
                _relay(tls, backend, self._limits.idle_seconds)
        except OSError:
            pass
        finally:
            conn.close()
            self._slots.release()


def _relay(tls: ssl.SSLSocket, backend: socket.socket, idle_seconds: float) -> None:
    """Copy bytes both ways until either side closes or nothing moves for `idle_seconds`."""
    peers = {tls: backend, backend: tls}
    while True:
        # Decrypted bytes already buffered inside the TLS object do not make the socket readable.
        if tls.pending():
            readable: list[Any] = [tls]
        else:
            readable, _, _ = select.select(list(peers), [], [], idle_seconds)
        if not readable:
            return
        for source in readable:
            data = source.recv(_RELAY_CHUNK)
            if not data:
                return
            peers[source].sendall(data)
