"""acceld's HTTP endpoints as one WSGI application.

`POST /webhooks/harbor` (and `POST /api/v1/conversions`, the path Harbor's Go service used)
takes Harbor's webhook, checks it and hands its events to the injected `enqueue`; the answer
(202) comes back in milliseconds because nothing else happens on the request: Harbor waits 3 s
and then counts the delivery as failed. `GET /metrics`, `/healthz` and `/readyz` serve
Prometheus and the service manager; `GET /api/v1/health` answers as the Go service did.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import IO, TYPE_CHECKING

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from harbor_api.webhook_events import ArtifactEvent, ArtifactEvents, WebhookInvalid, parse_webhook
from reconciler.observability.metrics import Metrics
from reconciler.service.metrics_app import metrics_response

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)

WEBHOOK_CONTENT_TYPES = frozenset({"application/json", "application/cloudevents+json"})
DEFAULT_MAX_BODY_BYTES = 1 << 20

# `enqueue(events) -> number of keys added`; it must not call Harbor or wait for work.
Enqueue = Callable[[tuple[ArtifactEvent, ...]], int]
# `readiness() -> {check name: passed}`, e.g. state store open, source reachable, scheduler.
Readiness = Callable[[], Mapping[str, bool]]

_ROUTES = Map(
    [
        Rule("/webhooks/harbor", methods=["POST"], endpoint="webhook"),
        Rule("/api/v1/conversions", methods=["POST"], endpoint="webhook"),
        Rule("/metrics", methods=["GET"], endpoint="metrics"),
        Rule("/healthz", methods=["GET"], endpoint="healthz"),
        Rule("/readyz", methods=["GET"], endpoint="readyz"),
        Rule("/api/v1/health", methods=["GET"], endpoint="health"),
    ],
    # No redirects: werkzeug would answer `//webhooks//harbor` with a 308 to a URL built from
    # the Host header; Harbor is configured with the exact path, anything else is a 404.
    merge_slashes=False,
    redirect_defaults=False,
)


def _read_at_most(stream: IO[bytes], limit: int) -> bytes | None:
    """The whole body, or None as soon as it proves longer than `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = stream.read(min(64 * 1024, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    return None


def _json(document: object, status: int) -> Response:
    return Response(json.dumps(document) + "\n", status=status, mimetype="application/json")


class HttpApp:
    """The WSGI application. With `webhook_secret` None every webhook is refused (401).

    Only the sha256 of the secret is kept, so the secret never sits in this object.
    """

    def __init__(
        self,
        *,
        webhook_secret: str | None,
        enqueue: Enqueue,
        readiness: Readiness,
        metrics: Metrics,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self._secret_sha256 = (
            hashlib.sha256(webhook_secret.encode("utf-8")).digest() if webhook_secret else None
        )
        self._enqueue = enqueue
        self._readiness = readiness
        self._metrics = metrics
        self._max_body_bytes = max_body_bytes

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        response = self._dispatch(request)
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        adapter = _ROUTES.bind_to_environ(request.environ)
        try:
            endpoint, _ = adapter.match()
        except HTTPException as exc:
            response = _json({"error": exc.description}, exc.code or 500)
            allow = exc.get_response(request.environ).headers.get("Allow")
            if allow:
                response.headers["Allow"] = allow
            return response
        if endpoint == "webhook":
            return self._webhook(request)
        if endpoint == "metrics":
            return self._prometheus(request)
        if endpoint == "readyz":
            return self._ready()
        if endpoint == "health":
            return self._go_health()
        return _json({"alive": True}, 200)

    def _webhook(self, request: Request) -> Response:
        response, result = self._webhook_outcome(request)
        self._metrics.webhook_answered(result)
        return response

    def _webhook_outcome(self, request: Request) -> tuple[Response, str]:
        remote = request.remote_addr or "-"
        if not self._authorized(request):
            log.warning("Webhook refused: wrong or missing Authorization", extra={"remote": remote})
            return _json({"error": "missing or wrong Authorization header"}, 401), "unauthorized"
        too_large = f"body larger than {self._max_body_bytes} bytes"
        if (request.content_length or 0) > self._max_body_bytes:
            return self._invalid(remote, too_large, 413)
        if request.mimetype not in WEBHOOK_CONTENT_TYPES:
            got = request.mimetype or "none"
            expected = " or ".join(sorted(WEBHOOK_CONTENT_TYPES))
            return self._invalid(remote, f"Content-Type: expected {expected}, got {got}", 415)
        body = _read_at_most(request.stream, self._max_body_bytes)
        if body is None:
            return self._invalid(remote, too_large, 413)
        try:
            parsed = parse_webhook(body, request.content_type or "", dict(request.headers))
        except WebhookInvalid as exc:
            return self._invalid(remote, str(exc), 400)
        if not isinstance(parsed, ArtifactEvents):
            log.info("Webhook ignored", extra={"remote": remote, "event_type": parsed.event_type})
            return _json({"ignored": parsed.event_type}, 202), "ignored"
        try:
            added = self._enqueue(parsed.events)
        except Exception:
            # Any failure to record the events must reach Harbor as a 5xx so it delivers again.
            log.exception("Webhook not queued", extra={"remote": remote})
            return _json({"error": "events could not be queued, try again"}, 503), "unavailable"
        for event in parsed.events:
            log.info(
                "Webhook accepted",
                extra={
                    "remote": remote,
                    "kind": event.kind,
                    "repository": event.repository,
                    "digest": event.digest,
                    "tag": event.tag,
                },
            )
        return _json({"events": len(parsed.events), "queued": added}, 202), "accepted"

    def _authorized(self, request: Request) -> bool:
        if self._secret_sha256 is None:
            return False
        # WSGI decodes header bytes as latin-1; Harbor sends the configured UTF-8 string as is.
        header = request.headers.get("Authorization", "").encode("latin-1", "replace")
        # Comparing digests keeps the time independent of the secret's length as well.
        return hmac.compare_digest(hashlib.sha256(header).digest(), self._secret_sha256)

    def _invalid(self, remote: str, reason: str, status: int) -> tuple[Response, str]:
        log.warning(
            "Webhook rejected", extra={"remote": remote, "status": status, "reason": reason}
        )
        return _json({"error": reason}, status), "invalid"

    def _prometheus(self, request: Request) -> Response:
        return metrics_response(self._metrics, request.headers.get("Accept", ""))

    def _go_health(self) -> Response:
        """Harbor's Go service's answer: `200 Ok` while the store answers, else
        `500 {"code": "ERR_UNHEALTHY"}`, so checks written for it keep working."""
        try:
            healthy = bool(self._readiness().get("state_store", False))
        except Exception:
            log.exception("Health check failed")
            healthy = False
        if healthy:
            return Response("Ok", status=200, mimetype="text/plain")
        return _json({"code": "ERR_UNHEALTHY", "message": "the state store does not answer"}, 500)

    def _ready(self) -> Response:
        try:
            checks = dict(self._readiness())
        except Exception as exc:
            log.exception("Readiness check failed")
            return _json({"ready": False, "error": type(exc).__name__}, 503)
        failing = sorted(name for name, passed in checks.items() if not passed)
        status = 503 if failing else 200
        return _json({"ready": not failing, "checks": checks, "failing": failing}, status)
