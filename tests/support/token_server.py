"""A small Docker token service on loopback, for a real registry configured with `auth: token:`.

It checks Basic credentials, grants the requested scopes to known users (pull-only to anonymous
callers when `anonymous_pull` is set) and signs RS256 JWTs with a self-signed certificate whose
PEM the registry trusts (`rootcertbundle`). It records every request for assertions.
"""

from __future__ import annotations

import base64
import datetime
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

ISSUER = "acceld-test-token-issuer"
SERVICE = "acceld-test-registry"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class TokenRequest:
    username: str | None
    scopes: tuple[str, ...]
    service: str


@dataclass
class TokenServer:
    host: str
    cert_path: Path
    users: dict[str, str]
    expires_in: int | None = 300
    anonymous_pull: bool = False
    pull_only: frozenset[str] = frozenset()
    requests: list[TokenRequest] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _key: rsa.RSAPrivateKey | None = None
    _cert_der: bytes = b""

    @property
    def realm(self) -> str:
        return f"http://{self.host}/token"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def issue(self, username: str | None, scopes: tuple[str, ...], service: str) -> dict[str, Any]:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            may_push = username is not None and username not in self.pull_only
            may_pull = username is not None or self.anonymous_pull
            granted = [a for a in actions.split(",") if (a == "pull" and may_pull) or may_push]
            if granted:
                access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        lifetime = self.expires_in or 60
        claims = {
            "iss": ISSUER,
            "sub": username or "",
            "aud": service,
            "exp": now + lifetime,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self._cert_der).decode()]}
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        assert self._key is not None
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        answer: dict[str, Any] = {"token": f"{signing_input}.{_b64url(signature)}"}
        if self.expires_in is not None:
            answer["expires_in"] = self.expires_in
        return answer


def _self_signed(root: Path) -> tuple[rsa.RSAPrivateKey, bytes, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acceld test token signer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = root / "token-signer.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert.public_bytes(serialization.Encoding.DER), cert_path


def start_token_server(
    root: Path,
    users: dict[str, str],
    *,
    expires_in: int | None = 300,
    anonymous_pull: bool = False,
    pull_only: frozenset[str] = frozenset(),
) -> TokenServer:
    root.mkdir(parents=True, exist_ok=True)
    key, cert_der, cert_path = _self_signed(root)
    server_state: dict[str, TokenServer] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            state = server_state["server"]
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            scopes = tuple(s for value in query.get("scope", []) for s in value.split())
            service = (query.get("service") or [""])[0]
            username = None
            header = self.headers.get("Authorization", "")
            if header.startswith("Basic "):
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                if state.users.get(user) != password:
                    self._answer(401, {"details": "incorrect username or password"})
                    return
                username = user
            state.requests.append(TokenRequest(username, scopes, service))
            if url.path != "/token" or service != SERVICE:
                self._answer(400, {"details": "unknown service"})
                return
            self._answer(200, state.issue(username, scopes, service))

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    http_server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    token_server = TokenServer(
        host=f"127.0.0.1:{http_server.server_address[1]}",
        cert_path=cert_path,
        users=users,
        expires_in=expires_in,
        anonymous_pull=anonymous_pull,
        pull_only=pull_only,
        _server=http_server,
        _key=key,
        _cert_der=cert_der,
    )
    server_state["server"] = token_server
    thread = threading.Thread(target=http_server.serve_forever, daemon=True)
    thread.start()
    token_server._thread = thread
    return token_server
