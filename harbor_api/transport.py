"""The HTTP session every client in `harbor_api` shares.

It owns TLS options, timeouts, the `User-Agent`, typed errors and the retry policy for single
calls. It keeps no cookies: Harbor turns on CSRF checks once its `sid` cookie is sent back, and
every write then fails with 403.
"""

from __future__ import annotations

import email.utils
import http.cookiejar
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
import tenacity

from harbor_api.errors import RegistryError, Unreachable, error_for_status
from harbor_api.version import USER_AGENT

log = logging.getLogger(__name__)

# endpoint label, status code ("200", "error" when no answer), seconds
RequestObserver = Callable[[str, str, float], None]

# 500 too: registries answer it for passing storage and database failures (oras-go retries
# it as well), and a scan has no other retry layer.
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class TlsOptions:
    """How to reach a server: `plain_http` only when asked (loopback, development)."""

    plain_http: bool = False
    insecure: bool = False
    ca_bundle: str | None = None

    @property
    def scheme(self) -> str:
        return "http" if self.plain_http else "https"

    @property
    def verify(self) -> bool | str:
        if self.insecure:
            return False
        return self.ca_bundle or True


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of one idempotent call: exponential backoff with jitter, bounded twice."""

    attempts: int = 5
    max_seconds: float = 120.0
    initial_wait: float = 0.5
    max_wait: float = 30.0


NO_RETRY = RetryPolicy(attempts=1)


class _NoCookies(http.cookiejar.CookiePolicy):
    netscape = True
    rfc2965 = False
    hide_cookie2 = True

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def domain_return_ok(self, domain: str, request: Any) -> bool:
        return False

    def path_return_ok(self, path: str, request: Any) -> bool:
        return False


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_from_response(request: str, response: requests.Response) -> RegistryError:
    """The typed error for a non-success answer, with the server's first error code/message."""
    code, message = "", ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
            code = str(errors[0].get("code") or "")
            message = str(errors[0].get("message") or "")
        elif "code" in body or "message" in body:
            code = str(body.get("code") or "")
            message = str(body.get("message") or "")
    if not message and response.text and len(response.text) < 300:
        content_type = response.headers.get("Content-Type", "")
        if "json" not in content_type and "html" not in content_type:
            message = response.text.strip()
    return error_for_status(
        request,
        response.status_code,
        code,
        message,
        parse_retry_after(response.headers.get("Retry-After")),
    )


def describe(method: str, url: str) -> str:
    """`METHOD url` without the query string (which may carry upload state tokens)."""
    return f"{method} {url.split('?', 1)[0]}"


class _RetryAfterWait(tenacity.wait.wait_base):
    """Exponential backoff with jitter, never shorter than the server's `Retry-After`."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._backoff = tenacity.wait_exponential_jitter(
            multiplier=policy.initial_wait, max=policy.max_wait
        )

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        wait = float(self._backoff(retry_state))
        outcome = retry_state.outcome
        if outcome is not None and outcome.failed:
            exc = outcome.exception()
            if isinstance(exc, RegistryError) and exc.retry_after is not None:
                wait = max(wait, exc.retry_after)
        return wait


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, Unreachable) or (
        isinstance(exc, RegistryError) and exc.status in _RETRYABLE_STATUS
    )


def retrying(policy: RetryPolicy, what: str) -> tenacity.Retrying:
    """A tenacity controller for one idempotent call, one log line per retry."""

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        sleep = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "retrying request",
            extra={
                "request": what,
                "attempt": state.attempt_number,
                "wait_seconds": round(sleep, 2),
                "error": str(exc),
            },
        )

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.attempts)
        | tenacity.stop_after_delay(policy.max_seconds),
        wait=_RetryAfterWait(policy),
        retry=tenacity.retry_if_exception(_is_retryable),
        before_sleep=before_sleep,
        reraise=True,
    )


class HttpSession:
    """A `requests.Session` with acceld's rules: no cookies, TLS options, typed errors."""

    def __init__(
        self,
        tls: TlsOptions = TlsOptions(),
        *,
        timeout: float = 60.0,
        retry: RetryPolicy = RetryPolicy(),
        observer: RequestObserver | None = None,
    ) -> None:
        self.tls = tls
        self.timeout = timeout
        self.retry = retry
        self._observer = observer
        self._session = requests.Session()
        self._session.cookies.set_policy(_NoCookies())
        self._session.headers["User-Agent"] = USER_AGENT
        self._session.verify = tls.verify

    def close(self) -> None:
        self._session.close()

    def send(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        ok: tuple[int, ...] = (200,),
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | list[tuple[str, str]] | None = None,
        data: Any = None,
        stream: bool = False,
        auth: Any = None,
        allow_redirects: bool = True,
    ) -> requests.Response:
        """One request, no retry. A status outside `ok` raises the typed error.

        `endpoint` is a bounded label for metrics (`manifest_get`, `blob_upload`, …).
        """
        what = describe(method, url)
        started = time.monotonic()
        try:
            response = self._session.request(
                method,
                url,
                headers=dict(headers or {}),
                params=params,
                data=data,
                stream=stream,
                timeout=self.timeout,
                auth=auth,
                allow_redirects=allow_redirects,
            )
        except requests.RequestException as exc:
            self._observe(endpoint, "error", started)
            raise Unreachable(what, message=_connection_message(exc)) from exc
        self._observe(endpoint, str(response.status_code), started)
        if response.status_code not in ok:
            error = error_from_response(what, response)
            response.close()
            raise error
        return response

    def send_idempotent(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """`send` under the retry policy: only for calls that are safe to repeat."""
        response: requests.Response = retrying(self.retry, describe(method, url))(
            self.send, method, url, **kwargs
        )
        return response

    def _observe(self, endpoint: str, code: str, started: float) -> None:
        if self._observer is not None:
            self._observer(endpoint, code, time.monotonic() - started)


def _connection_message(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.exceptions.SSLError):
        if "WRONG_VERSION_NUMBER" in str(exc) or "wrong version number" in str(exc):
            return (
                "TLS handshake failed: the server answers plain HTTP, not HTTPS (for a registry "
                "without TLS set plain_http: true, or give its URL as http://HOST)"
            )
        return "TLS handshake failed (set a CA bundle, or insecure for a test registry)"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        text = str(exc)
        if "Connection refused" in text:
            return "connection refused"
        if "Name or service not known" in text or "nodename nor servname" in text:
            return "host name does not resolve"
        return "connection failed"
    return type(exc).__name__


def json_body(response: requests.Response, what: str) -> Any:
    """The JSON of an answer, or a `RegistryError` saying the server sent something else."""
    try:
        return response.json()
    except ValueError as exc:
        raise RegistryError(what, response.status_code, message="answer is not JSON") from exc
