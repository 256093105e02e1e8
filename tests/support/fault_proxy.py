"""A loopback HTTP proxy between acceld and a registry (or the Harbor emulator) that injects faults.

Clients are pointed at `proxy.host` with plain HTTP. Every request is forwarded with its body
streamed both ways; redirects and token realms that name the upstream are rewritten to name the
proxy, so a client never leaves it. A seeded RNG decides, request by request, whether one of the
rules fires. Every request is recorded (method, path, status, injected fault), so a test can check
afterwards what touched what.

Requests that must not be repeated (starting or continuing a blob upload) never get a fault unless
the rule says `unrepeatable_too=True`: a correct client does not retry them, so a fault there fails
the whole operation, which a test has to ask for.
"""

from __future__ import annotations

import contextlib
import enum
import http.client
import io
import json
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

MAX_DELAY_SECONDS = 10.0
MAX_REQUESTS = 100_000
MAX_CONNECTIONS = 64
_CHUNK = 64 * 1024
_DRAIN_LIMIT = 64 << 20
_MAX_CHUNK_LINE = 1024
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "expect",
    }
)
_REWRITTEN = frozenset({"location", "content-location", "www-authenticate", "link"})


class Fault(enum.Enum):
    """What goes wrong. The HTTP_* answers come from the proxy (the upstream never sees the
    request; 429 carries `Retry-After: 1`). RESET_UPLOAD forwards half the request body, then
    resets both connections; RESET_DOWNLOAD and TRUNCATED_BODY send the upstream's status and
    half its body, then reset (RST) or close cleanly short of `Content-Length`. SLOW forwards
    after the rule's delay. A fault that does not fit the request (no body to cut) is not
    injected, and the record says so."""

    HTTP_500 = "500"
    HTTP_502 = "502"
    HTTP_503 = "503"
    HTTP_429 = "429"
    RESET_UPLOAD = "reset-upload"
    RESET_DOWNLOAD = "reset-download"
    SLOW = "slow"
    TRUNCATED_BODY = "truncated-body"

    @property
    def status(self) -> int | None:
        """The status the proxy answers with itself, for the faults that are an answer."""
        return int(self.value) if self.value.isdigit() else None


@dataclass(frozen=True)
class FaultRule:
    """Inject `fault` on a share `rate` of the requests that match `methods` and `path`.

    `path` is a regular expression searched in the request path (no query); empty matches all.
    `methods` empty matches all. `delay_seconds` is the pause of a SLOW answer.
    """

    fault: Fault
    rate: float = 1.0
    methods: frozenset[str] = frozenset()
    path: str = ""
    unrepeatable_too: bool = False
    delay_seconds: float = 1.0
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rule {self.fault.value}: rate {self.rate} is not in [0, 1]")
        if not 0.0 <= self.delay_seconds <= MAX_DELAY_SECONDS:
            raise ValueError(
                f"fault rule {self.fault.value}: delay_seconds {self.delay_seconds} is not in "
                f"[0, {MAX_DELAY_SECONDS}]"
            )
        try:
            pattern = re.compile(self.path)
        except re.error as exc:
            raise ValueError(f"fault rule {self.fault.value}: path {self.path!r}: {exc}") from None
        object.__setattr__(self, "_pattern", pattern)
        object.__setattr__(self, "methods", frozenset(m.upper() for m in self.methods))

    def matches(self, method: str, path: str) -> bool:
        if self.methods and method not in self.methods:
            return False
        if is_unrepeatable(method, path) and not self.unrepeatable_too:
            return False
        return self._pattern.search(path) is not None


def is_unrepeatable(method: str, path: str) -> bool:
    """A request that changes state in a way a repeat would not reproduce (upload sessions)."""
    return method in ("POST", "PATCH") or (method == "PUT" and "/blobs/uploads/" in path)


@dataclass(frozen=True)
class ProxyRecord:
    """One request as the proxy saw it. `status` is None when no status line reached the client."""

    method: str
    path: str
    query: str
    status: int | None
    fault: Fault | None
    request_bytes: int
    response_bytes: int
    seconds: float


class _ResetConnection(Exception):
    """The handler gave up on the client connection on purpose (it was reset or cut)."""


class FaultProxy:
    """Start with `with FaultProxy(upstream_host, rules, seed=1) as proxy:`; use `proxy.host`."""

    def __init__(
        self,
        upstream: str,
        rules: Sequence[FaultRule] = (),
        *,
        seed: int = 0,
        timeout: float = 30.0,
        max_requests: int = MAX_REQUESTS,
    ) -> None:
        upstream = upstream.removeprefix("http://").rstrip("/")
        host, _, port = upstream.rpartition(":")
        if host not in _LOOPBACK or not port.isdigit():
            raise ValueError(f"fault proxy: upstream {upstream!r} is not a loopback host:port")
        self.upstream = upstream
        self._upstream_addr = (host.strip("[]"), int(port))
        self._timeout = timeout
        self._max_requests = max_requests
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._in_flight = 0
        self._rules: tuple[FaultRule, ...] = tuple(rules)
        self._rng = random.Random(seed)
        self._records: list[ProxyRecord] = []
        self._seen = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        if self._server is None:
            raise RuntimeError("fault proxy is not running")
        host, port = self._server.socket.getsockname()[:2]
        return f"{host}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> FaultProxy:
        server = _Server(("127.0.0.1", 0), _Handler, self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_open_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def set_rules(self, rules: Sequence[FaultRule], *, seed: int | None = None) -> None:
        with self._lock:
            self._rules = tuple(rules)
            if seed is not None:
                self._rng = random.Random(seed)

    def records(self) -> tuple[ProxyRecord, ...]:
        """Every request so far, once those in flight are recorded (a client may see the end of
        its answer, or a reset, before the handler has written its record)."""
        with self._lock:
            self._settled.wait_for(lambda: self._in_flight == 0, timeout=self._timeout)
            if self._seen > self._max_requests:
                raise RuntimeError(
                    f"fault proxy: more than {self._max_requests} requests; the record is "
                    "incomplete"
                )
            return tuple(self._records)

    def clear_records(self) -> None:
        with self._lock:
            self._records.clear()
            self._seen = 0

    def faults(self) -> tuple[ProxyRecord, ...]:
        return tuple(r for r in self.records() if r.fault is not None)

    def _admit(self, method: str, path: str) -> tuple[bool, FaultRule | None]:
        """Whether the request is within the bound, and the rule that fires on it (if any)."""
        with self._lock:
            self._seen += 1
            self._in_flight += 1
            if self._seen > self._max_requests:
                return False, None
            for rule in self._rules:
                if rule.matches(method, path) and self._rng.random() < rule.rate:
                    return True, rule
            return True, None

    def _record(self, record: ProxyRecord) -> None:
        with self._lock:
            self._records.append(record)
            self._in_flight -= 1
            self._settled.notify_all()

    def _rewrite(self, value: str) -> str:
        if self._server is None:
            return value
        return value.replace(f"//{self.upstream}", f"//{self.host}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], proxy: FaultProxy
    ) -> None:
        self.proxy = proxy
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(timeout=self.proxy._timeout):
            self.shutdown_request(request)
            return
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)
            self._slots.release()

    def close_open_connections(self) -> None:
        """Wake handlers idling on keep-alive connections so that closing does not wait."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.proxy._timeout)
        # headers and body go out in separate writes: without this, Nagle's algorithm and
        # delayed ACKs add 40 ms to every small answer
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """The record replaces the access log."""

    def do_GET(self) -> None:
        self._proxy()

    def do_HEAD(self) -> None:
        self._proxy()

    def do_POST(self) -> None:
        self._proxy()

    def do_PUT(self) -> None:
        self._proxy()

    def do_PATCH(self) -> None:
        self._proxy()

    def do_DELETE(self) -> None:
        self._proxy()

    def do_OPTIONS(self) -> None:
        self._proxy()

    def _proxy(self) -> None:
        proxy = self.server.proxy
        started = time.monotonic()
        path, _, query = self.path.partition("?")
        admitted, rule = proxy._admit(self.command, path)
        outcome = _Outcome()
        try:
            if not admitted:
                self.close_connection = True
                self._answer(503, {}, "fault proxy: request limit reached", outcome)
                return
            fault = rule.fault if rule is not None else None
            if fault is not None and fault.status is not None:
                outcome.fault = fault
                self._drain_body(outcome)
                headers = {"Retry-After": "1"} if fault is Fault.HTTP_429 else {}
                self._answer(fault.status, headers, f"injected {fault.value}", outcome)
                return
            if rule is not None and fault is Fault.SLOW:
                outcome.fault = fault
                time.sleep(rule.delay_seconds)
            self._forward(fault, outcome)
        except _ResetConnection:
            self.close_connection = True
        except (OSError, http.client.HTTPException) as exc:
            self.close_connection = True
            if outcome.status is None and outcome.fault is None:
                self._answer_quietly(502, f"fault proxy: upstream failed: {exc}", outcome)
        finally:
            proxy._record(
                ProxyRecord(
                    self.command,
                    path,
                    query,
                    outcome.status,
                    outcome.fault,
                    outcome.request_bytes,
                    outcome.response_bytes,
                    time.monotonic() - started,
                )
            )

    def _forward(self, fault: Fault | None, outcome: _Outcome) -> None:
        proxy = self.server.proxy
        upstream = http.client.HTTPConnection(*proxy._upstream_addr, timeout=proxy._timeout)
        try:
            upstream.connect()
            upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            upstream.putheader("Host", proxy.upstream)
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    upstream.putheader(name, value)
            chunked = self._request_is_chunked()
            if chunked:
                upstream.putheader("Transfer-Encoding", "chunked")
            upstream.endheaders()
            cut = self._upload_cut() if fault is Fault.RESET_UPLOAD else None
            for piece in self._body_pieces():
                if cut is not None and outcome.request_bytes + len(piece) > cut:
                    keep = piece[: max(0, cut - outcome.request_bytes)]
                    upstream.send(_frame(keep) if chunked and keep else keep)
                    outcome.request_bytes += len(keep)
                    outcome.fault = fault
                    self._reset_client()
                upstream.send(_frame(piece) if chunked else piece)
                outcome.request_bytes += len(piece)
            if chunked:
                upstream.send(b"0\r\n\r\n")
            response = upstream.getresponse()
            self._relay(response, fault, outcome)
        finally:
            upstream.close()

    def _relay(
        self, response: http.client.HTTPResponse, fault: Fault | None, outcome: _Outcome
    ) -> None:
        proxy = self.server.proxy
        has_body = self.command != "HEAD" and response.status not in (204, 304)
        length = response.getheader("Content-Length")
        known = int(length) if has_body and length and length.isdigit() else None
        chunked = has_body and known is None
        cut: int | None = None
        if fault is Fault.TRUNCATED_BODY and known is not None and known >= 2:
            cut = known // 2
        elif fault is Fault.RESET_DOWNLOAD and has_body and (known is None or known >= 2):
            cut = known // 2 if known is not None else _CHUNK // 2
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            lower = name.lower()
            if lower in _HOP_BY_HOP:
                continue
            self.send_header(name, proxy._rewrite(value) if lower in _REWRITTEN else value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        if response.will_close or self.close_connection:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        outcome.status = response.status
        if not has_body:
            return
        while True:
            piece = response.read1(_CHUNK)
            if not piece:
                break
            if cut is not None and outcome.response_bytes + len(piece) > cut:
                keep = piece[: cut - outcome.response_bytes]
                if keep:
                    self.wfile.write(_frame(keep) if chunked else keep)
                    outcome.response_bytes += len(keep)
                outcome.fault = fault
                if fault is Fault.TRUNCATED_BODY:
                    self._cut_client()
                self._reset_client()
            self.wfile.write(_frame(piece) if chunked else piece)
            outcome.response_bytes += len(piece)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _answer(self, status: int, headers: dict[str, str], message: str, out: _Outcome) -> None:
        body = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": message}]}).encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
            out.response_bytes = len(body)
        out.status = status

    def _answer_quietly(self, status: int, message: str, outcome: _Outcome) -> None:
        with contextlib.suppress(OSError):
            self._answer(status, {}, message, outcome)

    def _request_is_chunked(self) -> bool:
        return "chunked" in self.headers.get("Transfer-Encoding", "").lower()

    def _upload_cut(self) -> int:
        length = self.headers.get("Content-Length", "")
        if length.isdigit():
            return int(length) // 2
        return _CHUNK // 2

    def _body_pieces(self) -> Iterator[bytes]:
        if self._request_is_chunked():
            yield from self._chunked_pieces()
            return
        length = self.headers.get("Content-Length", "")
        remaining = int(length) if length.isdigit() else 0
        while remaining > 0:
            piece = self.rfile.read(min(_CHUNK, remaining))
            if not piece:
                raise _ResetConnection
            remaining -= len(piece)
            yield piece

    def _chunked_pieces(self) -> Iterator[bytes]:
        while True:
            line = self.rfile.readline(_MAX_CHUNK_LINE)
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _ResetConnection from None
            if size == 0:
                while self.rfile.readline(_MAX_CHUNK_LINE) not in (b"\r\n", b"\n", b""):
                    pass
                return
            while size > 0:
                piece = self.rfile.read(min(_CHUNK, size))
                if not piece:
                    raise _ResetConnection
                size -= len(piece)
                yield piece
            self.rfile.readline(_MAX_CHUNK_LINE)

    def _drain_body(self, outcome: _Outcome) -> None:
        """Read the body of a request answered by the proxy so that the connection stays usable."""
        for piece in self._body_pieces():
            outcome.request_bytes += len(piece)
            if outcome.request_bytes > _DRAIN_LIMIT:
                self.close_connection = True
                return

    def _cut_client(self) -> None:
        """End the response early with an orderly close: the client sees a short body."""
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_WR)
        raise _ResetConnection

    def _reset_client(self) -> None:
        """Abort the client connection with a TCP reset."""
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()
        self.wfile.close()
        self.connection.close()
        # the base handler still flushes and closes its files after us
        self.rfile, self.wfile = io.BytesIO(), io.BytesIO()
        raise _ResetConnection


@dataclass
class _Outcome:
    status: int | None = None
    fault: Fault | None = None
    request_bytes: int = 0
    response_bytes: int = 0


def _frame(piece: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(piece), piece)
