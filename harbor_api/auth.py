"""Registry authentication: anonymous, Basic, and the Bearer token challenge.

The first request to a registry goes out anonymous; its 401 challenge says which scheme the
registry wants. Bearer tokens are cached per (realm, service, scopes) until shortly before they
expire, and a 401 on a cached token renews it once. Tokens and passwords never appear in logs
or errors: errors name the request, the user and what the server said.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from harbor_api.credentials import Credentials
from harbor_api.errors import RegistryError, Unauthorized
from harbor_api.origins import Origin, check_same_origin
from harbor_api.transport import HttpSession, describe, error_from_response, json_body

DEFAULT_TOKEN_SECONDS = 60
# A token is renewed this long before it expires (never more than a tenth of its lifetime).
RENEW_EARLY_SECONDS = 30.0
CATALOG_SCOPE = "registry:catalog:*"
# One token per repository is cached; a scan over many repositories must not grow it forever.
MAX_CACHED_TOKENS = 1024

_PARAM = re.compile(r'\s*([A-Za-z0-9!#$%&\'*+.^_`|~-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*')
_SCHEME = re.compile(r"\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)(?:\s+|$)")

Body = bytes | Callable[[], Any] | None
"""A request body: bytes, nothing, or a factory giving a fresh stream for each attempt."""


@dataclass(frozen=True)
class Challenge:
    """One `WWW-Authenticate` challenge; `scheme` is lower case."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.params.get("scope", "").split())


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_challenges(header: str) -> tuple[Challenge, ...]:
    """Every challenge in a `WWW-Authenticate` value (RFC 9110 §11.6.1).

    Quoted values may hold commas (`scope="repository:a:pull,push"`), and one header may carry
    several challenges (`Bearer realm="…", Basic realm="…"`). A malformed tail is dropped.
    """
    challenges: list[Challenge] = []
    pos, end = 0, len(header)
    while pos < end:
        if header[pos] in ", \t":
            pos += 1
            continue
        scheme = _SCHEME.match(header, pos)
        if not scheme:
            break
        pos = scheme.end()
        params: dict[str, str] = {}
        while pos < end:
            param = _PARAM.match(header, pos)
            if not param:
                break
            params[param.group(1).lower()] = _unquote(param.group(2))
            pos = param.end()
            if pos < end and header[pos] != ",":
                pos = end
            pos += 1
        challenges.append(Challenge(scheme.group(1).lower(), params))
    return tuple(challenges)


def repository_scope(repository: str, actions: Iterable[str]) -> str:
    return f"repository:{repository}:{','.join(actions)}"


def pull_scope(repository: str) -> str:
    return repository_scope(repository, ("pull",))


def push_scope(repository: str) -> str:
    return repository_scope(repository, ("pull", "push"))


def merge_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Scopes with the actions of one resource joined, in a stable order (a cache key)."""
    actions: dict[str, set[str]] = {}
    for scope in scopes:
        resource, sep, wanted = scope.rpartition(":")
        if not sep or not resource:
            continue
        actions.setdefault(resource, set()).update(a for a in wanted.split(",") if a)
    return tuple(f"{r}:{','.join(sorted(a))}" for r, a in sorted(actions.items()))


@dataclass(frozen=True)
class _Token:
    value: str
    renew_at: float


def basic_header(credentials: Credentials) -> str:
    pair = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


class RegistryAuth:
    """Sends requests to one registry with the right `Authorization`, learning it from 401s.

    Every request must go to the registry's `origin`; any other URL is refused before it is
    sent (see `origins.py`).
    """

    def __init__(
        self,
        http: HttpSession,
        credentials: Credentials | None,
        origin: Origin,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._credentials = credentials
        self._origin = origin
        self._clock = clock
        self._lock = threading.Lock()
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, str, tuple[str, ...]], _Token] = {}
        self._wanted: dict[tuple[str, ...], tuple[str, ...]] = {}

    def request(
        self,
        method: str,
        url: str,
        *,
        scopes: tuple[str, ...],
        endpoint: str,
        ok: tuple[int, ...] = (200,),
        idempotent: bool = False,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | list[tuple[str, str]] | None = None,
        body: Body = None,
        stream: bool = False,
        allow_redirects: bool = True,
    ) -> requests.Response:
        """One authorized request; a 401 is answered once (token fetched or renewed)."""
        check_same_origin(url, self._origin, describe(method, url))
        scopes = merge_scopes(scopes)
        send = self._http.send_idempotent if idempotent else self._http.send
        for attempt in (1, 2):
            authorization = self._authorization(scopes)
            all_headers = dict(headers or {})
            if authorization:
                all_headers["Authorization"] = authorization
            response = send(
                method,
                url,
                endpoint=endpoint,
                ok=(*ok, 401),
                headers=all_headers,
                params=params,
                data=body() if callable(body) else body,
                stream=stream,
                allow_redirects=allow_redirects,
            )
            if response.status_code != 401 or 401 in ok:
                return response
            error = error_from_response(describe(method, url), response)
            challenge = _preferred(parse_challenges(response.headers.get("WWW-Authenticate", "")))
            response.close()
            if attempt == 2 or not self._learn(challenge, scopes, bool(authorization)):
                raise self._refused(error, scopes)
        raise AssertionError("unreachable")

    def _authorization(self, scopes: tuple[str, ...]) -> str:
        with self._lock:
            challenge = self._challenge
        if challenge is None:
            return ""
        if challenge.scheme == "basic":
            return basic_header(self._credentials) if self._credentials else ""
        return "Bearer " + self._token(challenge, scopes)

    def _learn(self, challenge: Challenge | None, scopes: tuple[str, ...], sent: bool) -> bool:
        """Remember what a 401 asked for; whether trying again can help."""
        if challenge is None:
            return False
        with self._lock:
            known = self._challenge
            self._challenge = challenge
            if challenge.scheme == "basic":
                return self._credentials is not None and not (
                    sent and known is not None and known.scheme == "basic"
                )
            if len(self._wanted) >= MAX_CACHED_TOKENS:
                self._wanted.clear()
            self._wanted[scopes] = merge_scopes((*scopes, *challenge.scopes))
            self._tokens.pop((challenge.realm, challenge.service, scopes), None)
            return True

    def _token(self, challenge: Challenge, scopes: tuple[str, ...]) -> str:
        key = (challenge.realm, challenge.service, scopes)
        with self._lock:
            cached = self._tokens.get(key)
            wanted = self._wanted.get(scopes, scopes)
        if cached is not None and self._clock() < cached.renew_at:
            return cached.value
        token = self._fetch_token(challenge, wanted)
        with self._lock:
            if len(self._tokens) >= MAX_CACHED_TOKENS:
                now = self._clock()
                self._tokens = {k: t for k, t in self._tokens.items() if t.renew_at > now}
                if len(self._tokens) >= MAX_CACHED_TOKENS:
                    self._tokens.clear()
            self._tokens[key] = token
        return token.value

    def _fetch_token(self, challenge: Challenge, scopes: tuple[str, ...]) -> _Token:
        realm = challenge.realm
        what = describe("GET", realm)
        try:
            realm_origin = Origin.of(realm)
        except ValueError as exc:
            raise Unauthorized(
                what, 401, message=f"the Bearer challenge has no usable realm ({exc})"
            ) from None
        if realm_origin.scheme == "http" and self._origin.scheme == "https" and self._credentials:
            raise Unauthorized(
                what, 401, message="refusing to send credentials to a plain-HTTP token realm"
            )
        params = [("service", challenge.service)] if challenge.service else []
        params += [("scope", scope) for scope in scopes]
        auth = (
            (self._credentials.username, self._credentials.password) if self._credentials else None
        )
        started = self._clock()
        response = self._http.send_idempotent(
            "GET", realm, endpoint="token", ok=(200, 401, 403), params=params, auth=auth
        )
        if response.status_code != 200:
            error = error_from_response(what, response)
            response.close()
            raise self._refused(error, scopes)
        data = json_body(response, what)
        value = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(value, str) or not value:
            raise RegistryError(what, 200, message="the token service answered without a token")
        expires_in = data.get("expires_in")
        lifetime = (
            float(expires_in)
            if isinstance(expires_in, int | float) and expires_in > 0
            else float(DEFAULT_TOKEN_SECONDS)
        )
        return _Token(value, started + lifetime - min(RENEW_EARLY_SECONDS, lifetime / 10))

    def _refused(self, error: RegistryError, scopes: tuple[str, ...]) -> Unauthorized:
        if self._credentials is None:
            reason = "the registry requires credentials and none are configured"
        else:
            reason = f"the registry refused the credentials of user {self._credentials.username!r}"
            if scopes:
                # Harbor answers 401, not 403, to valid credentials that lack a permission.
                reason += f" (wrong password, or no right to {' '.join(scopes)})"
        detail = f" ({error.message})" if error.message else ""
        return Unauthorized(error.request, error.status, error.code, reason + detail)


def _preferred(challenges: tuple[Challenge, ...]) -> Challenge | None:
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return None
