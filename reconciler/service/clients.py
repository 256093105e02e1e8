"""Clients built from the source settings of the config: the config stays data."""

from __future__ import annotations

from harbor_api.harbor import HarborClient
from harbor_api.registry import RegistryClient
from harbor_api.transport import RequestObserver, RetryPolicy
from reconciler.config import HarborSettings, RegistrySettings
from reconciler.controller.sources import HarborSource, RegistrySource, Source
from reconciler.observability.metrics import Metrics


def harbor_client(
    settings: HarborSettings,
    observer: RequestObserver | None = None,
    retry: RetryPolicy = RetryPolicy(),  # noqa: B008 (frozen value)
) -> HarborClient:
    return HarborClient(
        settings.url,
        credentials=settings.credentials,
        tls=settings.tls,
        observer=observer,
        retry=retry,
    )


def registry_client(
    settings: HarborSettings | RegistrySettings,
    observer: RequestObserver | None = None,
    retry: RetryPolicy = RetryPolicy(),  # noqa: B008 (frozen value)
) -> RegistryClient:
    """The OCI client of the source: Harbor's own `/v2/`, or the plain registry."""
    return RegistryClient(
        settings.registry_host,
        credentials=settings.credentials,
        tls=settings.tls,
        observer=observer,
        retry=retry,
    )


def build_source(settings: HarborSettings | RegistrySettings, metrics: Metrics | None) -> Source:
    observer = metrics.request_observer() if metrics is not None else None
    if isinstance(settings, HarborSettings):
        return HarborSource(harbor_client(settings, observer), registry_client(settings, observer))
    return RegistrySource(registry_client(settings, observer))
