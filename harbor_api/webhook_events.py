"""Harbor's webhook requests (Default and CloudEvents payloads) as `ArtifactEvent`s.

Harbor sends one request per event and artifact events carry exactly one resource, but the
parser still yields one event per resource so a future batch shape is not silently truncated.
A payload only says *that* something changed; the reconcile step re-reads the live state.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from harbor_api.errors import AcceldError, InvalidReference
from harbor_api.reference import check_repository
from harbor_api.timestamps import parse_rfc3339

CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"

_ARTIFACT_KINDS: Mapping[str, Literal["pushed", "deleted"]] = {
    "PUSH_ARTIFACT": "pushed",
    "harbor.artifact.pushed": "pushed",
    "DELETE_ARTIFACT": "deleted",
    "harbor.artifact.deleted": "deleted",
}
# Headers a proxy in front of acceld may use to identify one delivery; Harbor sends none.
_DELIVERY_HEADERS = ("x-delivery-id", "x-request-id")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class WebhookInvalid(AcceldError):
    """A webhook body that is not a Harbor event payload; the message names the field."""


@dataclass(frozen=True)
class ArtifactEvent:
    """An artifact pushed or deleted. `tag` is None when the push was by digest."""

    kind: Literal["pushed", "deleted"]
    project: str
    repository: str
    digest: str
    tag: str | None
    operator: str
    delivery_id: str
    occurred_at: datetime


@dataclass(frozen=True)
class ArtifactEvents:
    events: tuple[ArtifactEvent, ...]


@dataclass(frozen=True)
class IgnoredEvent:
    """A well-formed event acceld has no use for (pull, scan, quota, replication, …)."""

    event_type: str


WebhookParseResult = ArtifactEvents | IgnoredEvent


def _got(value: Any) -> str:
    return json.dumps(value) if value is not None else "nothing"


def _field(data: Mapping[str, Any], key: str, where: str, kind: type, expected: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise WebhookInvalid(f"{where}{key}: expected {expected}, got {_got(value)}")
    return value


def _object(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value: Mapping[str, Any] = _field(data, key, where, dict, "an object")
    return value


def _string(data: Mapping[str, Any], key: str, where: str, *, empty_ok: bool = False) -> str:
    value: str = _field(data, key, where, str, "a string")
    if not value and not empty_ok:
        raise WebhookInvalid(f'{where}{key}: expected a non-empty string, got ""')
    return value


def parse_webhook(body: bytes, content_type: str, headers: Mapping[str, str]) -> WebhookParseResult:
    """Parse one webhook request; raises `WebhookInvalid` saying which field is wrong."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookInvalid(f"body: expected JSON, got invalid JSON ({exc})") from None
    except RecursionError:
        raise WebhookInvalid("body: JSON nested too deeply to parse") from None
    if not isinstance(document, dict):
        raise WebhookInvalid(f"body: expected a JSON object, got {_got(document)[:40]}")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == CLOUDEVENTS_CONTENT_TYPE or "specversion" in document:
        return _parse_cloudevent(document)
    return _parse_default(document, _delivery_header(headers))


def _delivery_header(headers: Mapping[str, str]) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in _DELIVERY_HEADERS:
        if lowered.get(name):
            return lowered[name]
    return ""


def _parse_default(document: Mapping[str, Any], delivery_id: str) -> WebhookParseResult:
    event_type = _string(document, "type", "")
    kind = _ARTIFACT_KINDS.get(event_type)
    if kind is None:
        return IgnoredEvent(event_type)
    occur_at = _field(document, "occur_at", "", int, "Unix seconds (an integer)")
    operator = _string(document, "operator", "", empty_ok=True)
    data = _object(document, "event_data", "")
    return _artifact_events(
        kind,
        data,
        "event_data.",
        operator=operator,
        delivery_id=delivery_id,
        occurred_at=_from_unix_seconds(occur_at),
    )


def _from_unix_seconds(seconds: int) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise WebhookInvalid(
            f"occur_at: expected Unix seconds of a date in years 1 to 9999, got {seconds}"
        ) from None


def _parse_cloudevent(document: Mapping[str, Any]) -> WebhookParseResult:
    version = document.get("specversion")
    if version != "1.0":
        raise WebhookInvalid(f'specversion: expected "1.0", got {_got(version)}')
    event_type = _string(document, "type", "")
    kind = _ARTIFACT_KINDS.get(event_type)
    if kind is None:
        return IgnoredEvent(event_type)
    delivery_id = _string(document, "id", "")
    time_text = _string(document, "time", "")
    try:
        occurred_at = parse_rfc3339(time_text).astimezone(UTC)
    except (ValueError, OverflowError):
        # OverflowError: a valid time whose offset takes it outside years 1 to 9999 in UTC.
        raise WebhookInvalid(f"time: expected an RFC 3339 time, got {_got(time_text)}") from None
    operator = document.get("operator", "")
    if not isinstance(operator, str):
        raise WebhookInvalid(f"operator: expected a string, got {_got(operator)}")
    return _artifact_events(
        kind,
        _object(document, "data", ""),
        "data.",
        operator=operator,
        delivery_id=delivery_id,
        occurred_at=occurred_at,
    )


def _artifact_events(
    kind: Literal["pushed", "deleted"],
    data: Mapping[str, Any],
    where: str,
    *,
    operator: str,
    delivery_id: str,
    occurred_at: datetime,
) -> ArtifactEvents:
    project, repository = _repository(_object(data, "repository", where), f"{where}repository.")
    resources = _field(data, "resources", where, list, "a non-empty list")
    if not resources:
        raise WebhookInvalid(f"{where}resources: expected a non-empty list, got []")
    events = []
    for i, resource in enumerate(resources):
        at = f"{where}resources[{i}]"
        if not isinstance(resource, dict):
            raise WebhookInvalid(f"{at}: expected an object, got {_got(resource)}")
        digest = resource.get("digest")
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            raise WebhookInvalid(f'{at}.digest: expected "sha256:<64 hex>", got {_got(digest)}')
        tag = resource.get("tag")
        if tag is not None and not isinstance(tag, str):
            raise WebhookInvalid(f"{at}.tag: expected a string, got {_got(tag)}")
        events.append(
            ArtifactEvent(
                kind=kind,
                project=project,
                repository=repository,
                digest=digest,
                # Harbor writes the digest into `tag` for pushes by digest.
                tag=tag if tag and not tag.startswith("sha256:") else None,
                operator=operator,
                delivery_id=delivery_id,
                occurred_at=occurred_at,
            )
        )
    return ArtifactEvents(tuple(events))


def _repository(repository: Mapping[str, Any], where: str) -> tuple[str, str]:
    project = _string(repository, "namespace", where)
    full_name = repository.get("repo_full_name")
    if full_name is None:
        full_name = f"{project}/{_string(repository, 'name', where)}"
    if (
        not isinstance(full_name, str)
        or not full_name.startswith(f"{project}/")
        or full_name == f"{project}/"
    ):
        raise WebhookInvalid(
            f'{where}repo_full_name: expected "{project}/<path>", got {_got(full_name)}'
        )
    try:
        check_repository(full_name)
    except InvalidReference:
        raise WebhookInvalid(
            f"{where}repo_full_name: expected a repository path of lowercase letters, digits "
            f"and separators . _ __ - (at most 255 characters), got {_got(full_name)}"
        ) from None
    return project, full_name
