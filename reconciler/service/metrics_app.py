"""`/metrics` as Prometheus scrapes it, and the separate listener that serves only that.

With `server.metrics_listen` set, a second listener answers `GET /metrics` (and nothing else)
on its own address: scrapes need neither the webhook listener's TLS nor its exposure, and the
webhook port can stay reachable from Harbor only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.exposition import choose_encoder
from werkzeug.wrappers import Request, Response

from reconciler.observability.metrics import Metrics

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def metrics_response(metrics: Metrics, accept: str) -> Response:
    """The exposition of every metric, in the format the `Accept` header asks for."""
    encoder, content_type = choose_encoder(accept)
    return Response(encoder(metrics.collector), content_type=content_type)


class MetricsOnlyApp:
    """The WSGI app of the metrics listener: `GET /metrics`, 404 for anything else."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        if request.path == "/metrics" and request.method in ("GET", "HEAD"):
            response = metrics_response(self._metrics, request.headers.get("Accept", ""))
        else:
            response = Response(
                json.dumps({"error": "only GET /metrics is served here"}) + "\n",
                status=404,
                mimetype="application/json",
            )
        return response(environ, start_response)
