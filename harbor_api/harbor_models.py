"""Values of Harbor's REST API v2.0, parsed from its JSON at the edge.

Each `from_json` checks the fields acceld relies on and names the one that is wrong, so a Harbor
that answers something unexpected fails with a message instead of a `KeyError` deep inside.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from harbor_api.errors import AcceldError
from harbor_api.oci import Platform
from harbor_api.timestamps import parse_rfc3339


class HarborAnswerInvalid(AcceldError):
    """Harbor answered with JSON that does not have the shape its API documents."""


def _object(data: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise HarborAnswerInvalid(f"{where}: expected an object, got {type(data).__name__}")
    return data


def _str(data: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise HarborAnswerInvalid(f"{where}.{key}: expected a string, got {value!r}")
    return value


def _int(data: Mapping[str, Any], key: str, where: str) -> int:
    value = data.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool):
        raise HarborAnswerInvalid(f"{where}.{key}: expected an integer, got {value!r}")
    return value


def _list(data: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise HarborAnswerInvalid(f"{where}.{key}: expected a list, got {value!r}")
    return value


def parse_time(value: str, where: str) -> datetime | None:
    """A Harbor timestamp (`2026-01-09T12:00:00.123Z`) as an aware UTC datetime."""
    if not value or value.startswith("0001-01-01"):
        return None
    try:
        return parse_rfc3339(value)
    except ValueError:
        raise HarborAnswerInvalid(f"{where}: expected an RFC 3339 time, got {value!r}") from None


def _annotations(data: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    value = data.get(key) or {}
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise HarborAnswerInvalid(f"{where}.{key}: expected a map of strings")
    return dict(value)


@dataclass(frozen=True)
class SystemInfo:
    """`GET /systeminfo` as an authenticated caller sees it."""

    harbor_version: str
    external_url: str
    registry_url: str

    @classmethod
    def from_json(cls, data: Any) -> SystemInfo:
        body = _object(data, "systeminfo")
        return cls(
            harbor_version=_str(body, "harbor_version", "systeminfo"),
            external_url=_str(body, "external_url", "systeminfo"),
            registry_url=_str(body, "registry_url", "systeminfo"),
        )


@dataclass(frozen=True)
class Project:
    id: int
    name: str
    registry_id: int | None
    public: bool

    @property
    def is_proxy_cache(self) -> bool:
        """Proxy-cache projects refuse pushes, so nothing can be converted into them."""
        return bool(self.registry_id)

    @classmethod
    def from_json(cls, data: Any, where: str) -> Project:
        body = _object(data, where)
        metadata = _object(body.get("metadata") or {}, f"{where}.metadata")
        registry_id = body.get("registry_id")
        if registry_id is not None and (
            not isinstance(registry_id, int) or isinstance(registry_id, bool)
        ):
            raise HarborAnswerInvalid(f"{where}.registry_id: expected an integer or null")
        return cls(
            id=_int(body, "project_id", where),
            name=_str(body, "name", where, required=True),
            registry_id=registry_id or None,
            public=metadata.get("public") == "true",
        )


@dataclass(frozen=True)
class Repository:
    """A repository; `name` is the full `project/path`, `path` what follows the project."""

    name: str
    project: str
    path: str
    artifact_count: int
    update_time: datetime | None

    @classmethod
    def from_json(cls, data: Any, where: str) -> Repository:
        body = _object(data, where)
        name = _str(body, "name", where, required=True)
        project, sep, path = name.partition("/")
        if not sep or not path:
            raise HarborAnswerInvalid(f"{where}.name: expected 'project/path', got {name!r}")
        return cls(
            name=name,
            project=project,
            path=path,
            artifact_count=_int(body, "artifact_count", where),
            update_time=parse_time(_str(body, "update_time", where), f"{where}.update_time"),
        )


@dataclass(frozen=True)
class ChildRef:
    """A manifest an index references, with the platform the index gives it."""

    digest: str
    platform: Platform | None

    @classmethod
    def from_json(cls, data: Any, where: str) -> ChildRef:
        body = _object(data, where)
        platform = body.get("platform")
        return cls(
            digest=_str(body, "child_digest", where, required=True),
            platform=Platform.from_json(platform) if isinstance(platform, Mapping) else None,
        )


# Harbor accessory types that are never accelerated images.
NOT_ACCELERATED_ACCESSORY_TYPES = frozenset(
    {"signature.cosign", "signature.notation", "sbom.harbor"}
)


@dataclass(frozen=True)
class Accessory:
    """An artifact Harbor links to a subject (`accelerator.nydus`, `subject.accessory`, …)."""

    digest: str
    type: str

    @classmethod
    def from_json(cls, data: Any, where: str) -> Accessory:
        body = _object(data, where)
        return cls(
            digest=_str(body, "digest", where, required=True),
            type=_str(body, "type", where),
        )


@dataclass(frozen=True)
class Artifact:
    """An artifact as Harbor lists it. `media_type` is the config media type."""

    digest: str
    media_type: str
    manifest_media_type: str
    artifact_type: str
    type: str
    tags: tuple[str, ...]
    push_time: datetime | None
    references: tuple[ChildRef, ...]
    accessories: tuple[Accessory, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, where: str) -> Artifact:
        body = _object(data, where)
        tags = []
        for i, tag in enumerate(_list(body, "tags", where)):
            tags.append(_str(_object(tag, f"{where}.tags[{i}]"), "name", f"{where}.tags[{i}]"))
        return cls(
            digest=_str(body, "digest", where, required=True),
            media_type=_str(body, "media_type", where),
            manifest_media_type=_str(body, "manifest_media_type", where),
            artifact_type=_str(body, "artifact_type", where),
            type=_str(body, "type", where),
            tags=tuple(tags),
            push_time=parse_time(_str(body, "push_time", where), f"{where}.push_time"),
            references=tuple(
                ChildRef.from_json(ref, f"{where}.references[{i}]")
                for i, ref in enumerate(_list(body, "references", where))
            ),
            accessories=tuple(
                Accessory.from_json(acc, f"{where}.accessories[{i}]")
                for i, acc in enumerate(_list(body, "accessories", where))
            ),
            annotations=_annotations(body, "annotations", where),
        )


@dataclass(frozen=True)
class WebhookTarget:
    """Where Harbor posts events. `auth_header` is a secret: it stays out of the repr."""

    address: str
    auth_header: str = field(default="", repr=False)
    payload_format: str = "Default"
    skip_cert_verify: bool = False
    type: str = "http"

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "address": self.address,
            "auth_header": self.auth_header,
            "skip_cert_verify": self.skip_cert_verify,
            "payload_format": self.payload_format,
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> WebhookTarget:
        body = _object(data, where)
        return cls(
            address=_str(body, "address", where),
            auth_header=_str(body, "auth_header", where),
            payload_format=_str(body, "payload_format", where) or "Default",
            skip_cert_verify=bool(body.get("skip_cert_verify")),
            type=_str(body, "type", where) or "http",
        )


@dataclass(frozen=True)
class WebhookPolicy:
    """A project's webhook policy; `id` is None until Harbor stored it."""

    name: str
    enabled: bool
    event_types: tuple[str, ...]
    targets: tuple[WebhookTarget, ...]
    description: str = ""
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        # `enabled` always goes out: Harbor stores an omitted one as false and never fires.
        return {
            "name": self.name,
            "description": self.description,
            "enabled": self.enabled,
            "event_types": list(self.event_types),
            "targets": [target.to_json() for target in self.targets],
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> WebhookPolicy:
        body = _object(data, where)
        event_types = _list(body, "event_types", where)
        if not all(isinstance(e, str) for e in event_types):
            raise HarborAnswerInvalid(f"{where}.event_types: expected a list of strings")
        return cls(
            name=_str(body, "name", where, required=True),
            enabled=body.get("enabled") is True,
            event_types=tuple(event_types),
            targets=tuple(
                WebhookTarget.from_json(t, f"{where}.targets[{i}]")
                for i, t in enumerate(_list(body, "targets", where))
            ),
            description=_str(body, "description", where),
            id=_int(body, "id", where) or None,
        )


@dataclass(frozen=True)
class RobotPermission:
    """What a robot may do in one namespace: `(resource, action)` pairs."""

    kind: str
    namespace: str
    access: tuple[tuple[str, str], ...]

    @classmethod
    def from_json(cls, data: Any, where: str) -> RobotPermission:
        body = _object(data, where)
        access = []
        for i, entry in enumerate(_list(body, "access", where)):
            item = _object(entry, f"{where}.access[{i}]")
            access.append(
                (
                    _str(item, "resource", f"{where}.access[{i}]"),
                    _str(item, "action", f"{where}.access[{i}]"),
                )
            )
        return cls(
            kind=_str(body, "kind", where),
            namespace=_str(body, "namespace", where),
            access=tuple(access),
        )


@dataclass(frozen=True)
class Robot:
    """A robot account as listed (never with its secret)."""

    id: int
    name: str
    level: str
    disabled: bool
    expires_at: int
    permissions: tuple[RobotPermission, ...]

    @classmethod
    def from_json(cls, data: Any, where: str) -> Robot:
        body = _object(data, where)
        return cls(
            id=_int(body, "id", where),
            name=_str(body, "name", where, required=True),
            level=_str(body, "level", where),
            disabled=body.get("disable") is True,
            expires_at=_int(body, "expires_at", where),
            permissions=tuple(
                RobotPermission.from_json(p, f"{where}.permissions[{i}]")
                for i, p in enumerate(_list(body, "permissions", where))
            ),
        )
