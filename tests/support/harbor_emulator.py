"""A Harbor for tests: the part of its REST API acceld uses, in front of a real registry.

It fronts the registry's `/v2/` the way Harbor does: a Bearer challenge and `/service/token`,
Basic auth for robots, manifest PUTs observed to keep Harbor's artifact records (tags, index
children, accessories by `subject`, `OCI-Subject` answers), the referrers API, webhook delivery
from a background thread. Harbor's traps are kept: `page_size` > 100 is a 422, a single-encoded
slash in a repository name is a 404, a wrong secret makes the caller anonymous, a `sid` cookie
sent back makes every write a 403 (CSRF), `q` is decoded twice.

Every `/api/v2.0` exchange is kept in `exchanges` so tests can check it against swagger.yaml.
"""

from __future__ import annotations

import base64
import http.cookiejar
import json
import queue
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any
from urllib.parse import parse_qsl, unquote, unquote_plus

import requests
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

API = "/api/v2.0"
ADMIN = "admin"
ADMIN_PASSWORD = "Harbor12345"
HARBOR_VERSION = "v2.15.2-emulated"
IMAGE_CONFIGS = (
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
)
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
NYDUS_BOOTSTRAP = "containerd.io/snapshot/nydus-bootstrap"
EVENT_TYPES = (
    "PUSH_ARTIFACT",
    "PULL_ARTIFACT",
    "DELETE_ARTIFACT",
    "QUOTA_EXCEED",
    "QUOTA_WARNING",
    "SCANNING_FAILED",
    "SCANNING_STOPPED",
    "SCANNING_COMPLETED",
    "REPLICATION",
    "TAG_RETENTION",
)
CLOUDEVENT_TYPES = {
    "PUSH_ARTIFACT": "harbor.artifact.pushed",
    "DELETE_ARTIFACT": "harbor.artifact.deleted",
}
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ANONYMOUS_ACTIONS = frozenset({"read", "list", "pull"})
_REGISTRY_PATH = re.compile(
    r"^/v2/(?P<name>.+?)/(?P<kind>manifests|blobs|tags|referrers)(?P<rest>/.*)?$"
)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "set-cookie"}
)


def harbor_time(moment: datetime) -> str:
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


class HarborHttpError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


@dataclass
class Principal:
    """Who a request runs as: `admin`, a robot, or anonymous (`name` == "")."""

    name: str
    admin: bool = False
    permissions: frozenset[tuple[str, str, str]] = frozenset()  # (namespace, resource, action)

    @property
    def anonymous(self) -> bool:
        return not self.name


ANONYMOUS = Principal("")


@dataclass
class ProjectRecord:
    id: int
    name: str
    public: bool
    registry_id: int | None
    created: datetime
    policies: dict[int, dict[str, Any]] = field(default_factory=dict)


@dataclass
class RepositoryRecord:
    id: int
    name: str
    project: str
    created: datetime
    updated: datetime


@dataclass
class ArtifactRecord:
    id: int
    repository: str
    digest: str
    size: int
    manifest_media_type: str
    config_media_type: str
    artifact_type: str
    push_time: datetime
    annotations: dict[str, str] = field(default_factory=dict)
    tags: dict[str, datetime] = field(default_factory=dict)
    subject: str | None = None
    accessory_type: str = ""
    children: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    @property
    def harbor_type(self) -> str:
        if self.manifest_media_type in INDEX_TYPES or self.config_media_type in IMAGE_CONFIGS:
            return "IMAGE"
        if self.config_media_type == "application/vnd.cncf.helm.config.v1+json":
            return "CHART"
        return "UNKNOWN"


@dataclass
class Delivery:
    event_type: str
    address: str
    payload_format: str
    body: bytes
    headers: dict[str, str]
    attempts: int = 0
    status: int | None = None
    dropped: bool = False
    finished: bool = False


@dataclass(frozen=True)
class ApiCall:
    """What a REST handler gets besides its path values."""

    who: Principal
    args: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    request_id: str = ""


Answer = tuple[int, Any, dict[str, str]]


@dataclass(frozen=True)
class Exchange:
    """One REST exchange, kept for the swagger contract check."""

    method: str
    raw_path: str
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]
    status: int
    body: Any


def accessory_type(manifest: Mapping[str, Any]) -> str:
    """Harbor's rule: Nydus when an image config's last layer is the Nydus bootstrap."""
    config = manifest.get("config") or {}
    from_type = manifest.get("artifactType") or config.get("mediaType", "")
    layers = manifest.get("layers") or []
    if (
        from_type in IMAGE_CONFIGS
        and layers
        and NYDUS_BOOTSTRAP in (layers[-1].get("annotations") or {})
    ):
        return "accelerator.nydus"
    return "subject.accessory"


class HarborState:
    """Projects, repositories, artifacts, robots and webhook policies; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.projects: dict[str, ProjectRecord] = {}
        self.repositories: dict[str, RepositoryRecord] = {}
        self.artifacts: dict[str, dict[str, ArtifactRecord]] = {}
        self.robots: dict[str, tuple[int, str, frozenset[tuple[str, str, str]]]] = {}
        self._ids = Counter[str]()

    def next_id(self, kind: str) -> int:
        with self.lock:
            self._ids[kind] += 1
            return self._ids[kind]

    def add_project(
        self, name: str, *, public: bool = False, registry_id: int | None = None
    ) -> ProjectRecord:
        with self.lock:
            record = ProjectRecord(
                self.next_id("project"), name, public, registry_id, datetime.now(UTC)
            )
            self.projects[name] = record
            return record

    def add_robot(
        self, name: str, secret: str, permissions: Iterable[tuple[str, str]], project: str = "*"
    ) -> str:
        """A robot with `resource:action` pairs on `project` (`*` = all); returns its full name."""
        full = f"robot${project}+{name}" if project != "*" else f"robot${name}"
        with self.lock:
            self.robots[full] = (
                self.next_id("robot"),
                secret,
                frozenset((project, resource, action) for resource, action in permissions),
            )
        return full

    def project_of(self, repository: str) -> ProjectRecord:
        project = self.projects.get(repository.split("/", 1)[0])
        if project is None:
            raise HarborHttpError(
                404, "NOT_FOUND", f"project {repository.split('/', 1)[0]} not found"
            )
        return project

    def ensure_repository(self, name: str, when: datetime) -> RepositoryRecord:
        with self.lock:
            record = self.repositories.get(name)
            if record is None:
                record = RepositoryRecord(
                    self.next_id("repository"), name, name.split("/", 1)[0], when, when
                )
                self.repositories[name] = record
            record.updated = max(record.updated, when)
            return record

    def add_artifact(
        self,
        repository: str,
        digest: str,
        *,
        tags: Iterable[str] = (),
        manifest_media_type: str = "application/vnd.oci.image.manifest.v1+json",
        config_media_type: str = IMAGE_CONFIGS[0],
        artifact_type: str = "",
        size: int = 1000,
        push_time: datetime | None = None,
        subject: str | None = None,
        accessory: str = "",
        children: Iterable[tuple[str, dict[str, str]]] = (),
        annotations: Mapping[str, str] | None = None,
    ) -> ArtifactRecord:
        """Record an artifact directly (seeding state without pushing images)."""
        when = push_time or datetime.now(UTC)
        with self.lock:
            self.project_of(repository)
            self.ensure_repository(repository, when)
            records = self.artifacts.setdefault(repository, {})
            record = records.get(digest)
            if record is None:
                record = ArtifactRecord(
                    self.next_id("artifact"),
                    repository,
                    digest,
                    size,
                    manifest_media_type,
                    config_media_type,
                    artifact_type or config_media_type,
                    when,
                    dict(annotations or {}),
                    subject=subject,
                    accessory_type=accessory if subject else "",
                    children=list(children),
                )
                records[digest] = record
            for tag in tags:
                for other in records.values():
                    other.tags.pop(tag, None)
                record.tags[tag] = when
            return record

    def record_manifest(
        self, repository: str, reference: str, body: bytes, media_type: str
    ) -> ArtifactRecord:
        """What Harbor's artifact and subject middlewares do after a manifest PUT."""
        digest = "sha256:" + sha256(body).hexdigest()
        manifest = json.loads(body)
        manifest_type = manifest.get("mediaType") or media_type
        is_index = manifest_type in INDEX_TYPES or "manifests" in manifest
        config_type = "" if is_index else (manifest.get("config") or {}).get("mediaType", "")
        subject = (manifest.get("subject") or {}).get("digest")
        children = [
            (child["digest"], dict(child.get("platform") or {}))
            for child in manifest.get("manifests") or []
        ]
        return self.add_artifact(
            repository,
            digest,
            tags=() if _DIGEST.match(reference) else (reference,),
            manifest_media_type=manifest_type,
            config_media_type=config_type,
            artifact_type=manifest.get("artifactType") or config_type,
            size=len(body),
            subject=subject,
            accessory=accessory_type(manifest) if subject else "",
            children=children,
            annotations=manifest.get("annotations") or {},
        )

    def in_repository(self, repository: str) -> list[ArtifactRecord]:
        with self.lock:
            return list(self.artifacts.get(repository, {}).values())

    def delete_deeply(self, repository: str, digest: str) -> list[ArtifactRecord]:
        """What Harbor's artifact controller does when an artifact is deleted (`deleteDeeply`,
        reference/harbor.md §2.3); the deleted records, the root last.

        Its hard accessories go with it, and their accessories; its index children go unless
        tagged or listed by another index. An accessory that another index lists loses its
        link to the subject and stays. A root another index lists is refused (412).
        """
        with self.lock:
            deleted: list[ArtifactRecord] = []
            self._delete_deeply(repository, digest, deleted, root=True, accessory=False)
            return deleted

    def _delete_deeply(
        self,
        repository: str,
        digest: str,
        deleted: list[ArtifactRecord],
        *,
        root: bool,
        accessory: bool,
    ) -> None:
        records = self.artifacts.get(repository, {})
        record = records.get(digest)
        if record is None:
            if root and not accessory:
                raise HarborHttpError(404, "NOT_FOUND", f"artifact {repository}@{digest} not found")
            return
        if accessory:
            record.subject, record.accessory_type = None, ""
        if not root and record.tags:
            return
        if any(digest in (c for c, _ in parent.children) for parent in records.values()):
            if root and not accessory:
                raise HarborHttpError(
                    412,
                    "VIOLATE_FOREIGN_KEY_CONSTRAINT",
                    "the deleting artifact is referenced by others",
                )
            return
        for linked in sorted((a for a in records.values() if a.subject == digest), key=_by_id):
            self._delete_deeply(repository, linked.digest, deleted, root=True, accessory=True)
        children, record.children = record.children, []
        for child, _ in children:
            self._delete_deeply(repository, child, deleted, root=False, accessory=False)
        del records[digest]
        deleted.append(record)


def _by_id(record: ArtifactRecord) -> int:
    return record.id


class _Pages:
    """`page`/`page_size` as Harbor validates them."""

    def __init__(self, args: Mapping[str, str]) -> None:
        try:
            self.page = int(args.get("page", "1"))
            self.size = int(args.get("page_size", "10"))
        except ValueError:
            raise HarborHttpError(
                422, "UNPROCESSABLE_ENTITY", "page and page_size must be integers"
            ) from None
        if self.size > 100:
            raise HarborHttpError(
                422,
                "UNPROCESSABLE_ENTITY",
                "validation failure list:\npage_size in query should be less than or equal to 100",
            )
        if self.page < 1 or self.size < 1:
            raise HarborHttpError(400, "BAD_REQUEST", "page and page_size must be positive")

    def cut(self, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
        start = (self.page - 1) * self.size
        return items[start : start + self.size], {"X-Total-Count": str(len(items))}


def _q_clauses(raw: str) -> list[tuple[str, str]]:
    # Harbor decodes `q` a second time (Go's QueryUnescape: `+` is a space).
    text = unquote_plus(raw)
    clauses = []
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if sep:
            clauses.append((key.strip(), value))
    return clauses


def _q_time(text: str) -> datetime | None:
    text = text.strip().strip("\"'")
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)


def _q_match(value: Any, pattern: str) -> bool:
    if pattern.startswith("~"):
        return pattern[1:] in str(value)
    if pattern.startswith("[") and pattern.endswith("]"):
        low_text, _, high_text = pattern[1:-1].partition("~")
        if isinstance(value, datetime):
            low, high = _q_time(low_text), _q_time(high_text)
            return (low is None or value >= low) and (high is None or value <= high)
        number = int(value)
        return (not low_text or number >= int(low_text)) and (
            not high_text or number <= int(high_text)
        )
    if pattern.startswith("{") and pattern.endswith("}"):
        return str(value) in pattern[1:-1].split()
    return str(value) == pattern.strip("\"'")


class HarborEmulator:
    """The WSGI application; `state`, `calls`, `deliveries` and `exchanges` are for tests."""

    def __init__(self, registry_url: str, *, admin_password: str = ADMIN_PASSWORD) -> None:
        self.registry_url = registry_url.rstrip("/")
        self.admin_password = admin_password
        self.state = HarborState()
        self.calls = Counter[str]()
        self.exchanges: list[Exchange] = []
        self.deliveries: list[Delivery] = []
        self.drop_deliveries = False
        self.delivery_retry_wait = 0.05
        self.url = ""
        self._tokens: dict[str, tuple[Principal, frozenset[tuple[str, str]], float]] = {}
        self._queue: queue.Queue[Delivery] = queue.Queue()
        self._stopping = threading.Event()
        self._worker = threading.Thread(
            target=self._deliver_forever, name="harbor-webhooks", daemon=True
        )
        self._worker.start()
        self._upstream = requests.Session()
        self._upstream.trust_env = False

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]

    def stop(self) -> None:
        self._stopping.set()
        self._worker.join(timeout=10)
        self._upstream.close()

    def wait_for_deliveries(self, count: int, timeout: float = 15.0) -> list[Delivery]:
        """The first `count` deliveries once each got an answer or gave up (bounded wait)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [d for d in self.deliveries if d.dropped or d.finished]
            if len(done) >= count:
                return done[:count]
            time.sleep(0.02)
        raise AssertionError(f"{count} webhook deliveries expected, {len(self.deliveries)} seen")

    # -- WSGI -------------------------------------------------------------------------------

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        raw_uri = (
            environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
        )
        raw_path, _, query_string = raw_uri.partition("?")
        method = environ["REQUEST_METHOD"]
        headers = {
            key[5:].replace("_", "-").title(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if "CONTENT_TYPE" in environ:
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if environ.get("wsgi.input_terminated"):
            body = environ["wsgi.input"].read()
        else:
            body = environ["wsgi.input"].read(length) if length else b""
        request_id = headers.get("X-Request-Id") or str(uuid.uuid4())
        query = tuple(parse_qsl(query_string, keep_blank_values=True))
        extra = {
            "X-Request-Id": request_id,
            "Set-Cookie": f"sid={secrets.token_hex(16)}; Path=/; HttpOnly",
        }
        try:
            if method in WRITE_METHODS and "sid=" in headers.get("Cookie", ""):
                raise HarborHttpError(403, "FORBIDDEN", "CSRF token invalid")
            if raw_path.startswith("/v2/") or raw_path == "/v2":
                return self._registry(
                    method, raw_path, query_string, headers, body, extra, start_response
                )
            if raw_path == "/service/token":
                status, payload, more = self._token(query, headers)
            elif raw_path.startswith(API + "/"):
                status, payload, more = self._api(
                    method, raw_path[len(API) :], dict(query), headers, body, request_id
                )
            else:
                raise HarborHttpError(404, "NOT_FOUND", f"path {raw_path} was not found")
        except HarborHttpError as exc:
            status, payload, more = (
                exc.status,
                {"errors": [{"code": exc.code, "message": exc.message}]},
                exc.headers,
            )
        if raw_path.startswith(API + "/"):
            self.exchanges.append(Exchange(method, raw_path, query, headers, status, payload))
        if isinstance(payload, str):
            data, content_type = payload.encode(), "text/plain; charset=utf-8"
        else:
            data = b"" if payload is None else json.dumps(payload).encode()
            content_type = "application/json; charset=utf-8"
        out = {"Content-Type": content_type, "Content-Length": str(len(data)), **extra, **more}
        start_response(f"{status} {_REASONS.get(status, 'Status')}", list(out.items()))
        return [data]

    # -- identity ---------------------------------------------------------------------------

    def _principal(self, headers: Mapping[str, str]) -> Principal:
        """Basic credentials; wrong ones make the caller anonymous, as Harbor does."""
        auth = headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return ANONYMOUS
        try:
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            return ANONYMOUS
        if user == ADMIN and password == self.admin_password:
            return Principal(ADMIN, admin=True)
        robot = self.state.robots.get(user)
        if robot is not None and secrets.compare_digest(robot[1], password):
            return Principal(user, permissions=robot[2])
        return ANONYMOUS

    def _allowed(self, who: Principal, project: ProjectRecord, resource: str, action: str) -> bool:
        if who.admin:
            return True
        if (project.name, resource, action) in who.permissions or (
            "*",
            resource,
            action,
        ) in who.permissions:
            return True
        return project.public and action in ANONYMOUS_ACTIONS and resource != "notification-policy"

    def _require(self, who: Principal, project: ProjectRecord, resource: str, action: str) -> None:
        if self._allowed(who, project, resource, action):
            return
        if who.anonymous:
            raise HarborHttpError(
                401, "UNAUTHORIZED", "anonymous is not authorized to access this resource"
            )
        raise HarborHttpError(403, "FORBIDDEN", "forbidden")

    def _visible(self, who: Principal, project: ProjectRecord) -> bool:
        return (
            who.admin
            or project.public
            or any(ns in (project.name, "*") for ns, _, _ in who.permissions)
        )

    # -- REST API ---------------------------------------------------------------------------

    def _api(
        self,
        method: str,
        path: str,
        args: dict[str, str],
        headers: Mapping[str, str],
        body: bytes,
        request_id: str,
    ) -> Answer:
        who = self._principal(headers)
        # Harbor's router decodes the path once: a single-encoded `/` splits a segment.
        segments = unquote(path).strip("/").split("/")
        route = _route(method, segments)
        if route is None:
            raise HarborHttpError(404, "NOT_FOUND", f"path {API}{path} was not found")
        name, params = route
        self.calls[name] += 1
        handler: Callable[..., Answer] = getattr(self, f"_op_{name}")
        return handler(ApiCall(who, args, headers, body, request_id), **params)

    def _op_ping(self, call: ApiCall) -> Answer:
        return 200, "Pong", {}

    def _op_systeminfo(self, call: ApiCall) -> Answer:
        info: dict[str, Any] = {
            "auth_mode": "db_auth",
            "primary_auth_mode": False,
            "self_registration": False,
            "has_ca_root": False,
            "banner_message": "",
        }
        if not call.who.anonymous:
            info.update(
                harbor_version=HARBOR_VERSION,
                external_url=self.url,
                registry_url=self.host,
                read_only=False,
                notification_enable=True,
                current_time=harbor_time(datetime.now(UTC)),
                project_creation_restriction="everyone",
                registry_storage_provider_name="filesystem",
            )
        return 200, info, {}

    def _op_projects(self, call: ApiCall) -> Answer:
        pages = _Pages(call.args)
        with self.state.lock:
            projects = sorted(self.state.projects.values(), key=lambda p: p.name)
            items = [self._project_json(p) for p in projects if self._visible(call.who, p)]
        page, more = pages.cut(items)
        return 200, page, more

    @staticmethod
    def _project_json(project: ProjectRecord) -> dict[str, Any]:
        out: dict[str, Any] = {
            "project_id": project.id,
            "name": project.name,
            "owner_id": 1,
            "owner_name": "admin",
            "creation_time": harbor_time(project.created),
            "update_time": harbor_time(project.created),
            "deleted": False,
            "metadata": {"public": "true" if project.public else "false"},
        }
        if project.registry_id:
            out["registry_id"] = project.registry_id
        return out

    def _project(self, name_or_id: str, headers: Mapping[str, str] | None = None) -> ProjectRecord:
        by_name = headers is None or headers.get("X-Is-Resource-Name", "").lower() == "true"
        with self.state.lock:
            if not by_name and name_or_id.isdigit():
                for project in self.state.projects.values():
                    if project.id == int(name_or_id):
                        return project
            elif name_or_id in self.state.projects:
                return self.state.projects[name_or_id]
        raise HarborHttpError(404, "NOT_FOUND", f"project {name_or_id} not found")

    def _op_repositories(self, call: ApiCall, project: str) -> Answer:
        pages = _Pages(call.args)
        record = self._project(project)
        self._require(call.who, record, "repository", "list")
        with self.state.lock:
            repos = sorted(
                (r for r in self.state.repositories.values() if r.project == record.name),
                key=lambda r: r.name,
            )
            items = [
                {
                    "id": r.id,
                    "project_id": record.id,
                    "name": r.name,
                    "artifact_count": len(self._listable(r.name, base=False)),
                    "pull_count": 0,
                    "creation_time": harbor_time(r.created),
                    "update_time": harbor_time(r.updated),
                }
                for r in repos
            ]
        page, more = pages.cut(items)
        return 200, page, more

    def _repository(self, who: Principal, project: str, repository: str, action: str) -> str:
        record = self._project(project)
        self._require(who, record, "artifact", action)
        full = f"{record.name}/{unquote(repository)}"
        if full not in self.state.repositories:
            raise HarborHttpError(404, "NOT_FOUND", f"repository {full} not found")
        return full

    def _listable(self, repository: str, *, base: bool) -> list[ArtifactRecord]:
        """Harbor hides accessories always, and untagged index children unless `base=*`."""
        records = self.state.in_repository(repository)
        children = {digest for a in records for digest, _ in a.children}
        return [
            a for a in records if a.subject is None and (base or a.tags or a.digest not in children)
        ]

    def _op_artifacts(self, call: ApiCall, project: str, repository: str) -> Answer:
        pages = _Pages(call.args)
        full = self._repository(call.who, project, repository, "list")
        clauses = _q_clauses(call.args.get("q", ""))
        with self.state.lock:
            base = ("base", "*") in clauses
            records = [a for a in self._listable(full, base=base) if _artifact_matches(a, clauses)]
            records.sort(key=_sort_key(call.args.get("sort") or "-push_time,-id"))
            items = [self._artifact_json(a, call.args) for a in records]
        page, more = pages.cut(items)
        return 200, page, more

    def _find_artifact(self, repository: str, reference: str) -> ArtifactRecord:
        with self.state.lock:
            for record in self.state.in_repository(repository):
                if record.digest == reference or reference in record.tags:
                    return record
        raise HarborHttpError(404, "NOT_FOUND", f"artifact {repository}:{reference} not found")

    def _op_artifact(self, call: ApiCall, project: str, repository: str, reference: str) -> Answer:
        full = self._repository(call.who, project, repository, "read")
        with self.state.lock:
            return 200, self._artifact_json(self._find_artifact(full, reference), call.args), {}

    def _op_artifact_delete(
        self, call: ApiCall, project: str, repository: str, reference: str
    ) -> Answer:
        """`deleteArtifact`: the artifact, its accessories and children as Harbor deletes
        them (`HarborState.delete_deeply`), each gone from the registry as well."""
        full = self._repository(call.who, project, repository, "delete")
        with self.state.lock:
            deleted = self.state.delete_deeply(full, self._find_artifact(full, reference).digest)
        self._forget_upstream(full, deleted)
        self._fire_deleted(deleted[-1], call.who.name, call.request_id)
        return 200, None, {}

    def _forget_upstream(self, repository: str, deleted: Iterable[ArtifactRecord]) -> None:
        """Harbor answers 404 for an artifact it deleted until its GC frees the blobs; here the
        registry behind forgets the manifest (and with it its tags) at once."""
        for record in deleted:
            answer = self._upstream.delete(
                f"{self.registry_url}/v2/{repository}/manifests/{record.digest}", timeout=30
            )
            if answer.status_code not in (202, 404):
                answer.raise_for_status()

    def _op_accessories(
        self, call: ApiCall, project: str, repository: str, reference: str
    ) -> Answer:
        pages = _Pages(call.args)
        record = self._project(project)
        self._require(call.who, record, "accessory", "list")
        full = f"{record.name}/{unquote(repository)}"
        clauses = _q_clauses(call.args.get("q", ""))
        with self.state.lock:
            subject = self._find_artifact(full, reference)
            items = [
                self._accessory_json(a, subject)
                for a in self._accessories(subject)
                if all(_q_match(a.accessory_type, v) for k, v in clauses if k == "type")
            ]
        page, more = pages.cut(items)
        return 200, page, more

    def _accessories(self, subject: ArtifactRecord) -> list[ArtifactRecord]:
        return sorted(
            (
                a
                for a in self.state.in_repository(subject.repository)
                if a.subject == subject.digest
            ),
            key=lambda a: a.id,
        )

    @staticmethod
    def _accessory_json(accessory: ArtifactRecord, subject: ArtifactRecord) -> dict[str, Any]:
        return {
            "id": accessory.id,
            "artifact_id": accessory.id,
            "subject_artifact_id": subject.id,
            "subject_artifact_digest": subject.digest,
            "subject_artifact_repo": subject.repository,
            "size": accessory.size,
            "digest": accessory.digest,
            "type": accessory.accessory_type,
            "icon": "",
            "creation_time": harbor_time(accessory.push_time),
        }

    def _artifact_json(self, record: ArtifactRecord, args: Mapping[str, str]) -> dict[str, Any]:
        repo = self.state.repositories[record.repository]
        project = self.state.projects[repo.project]
        out: dict[str, Any] = {
            "id": record.id,
            "type": record.harbor_type,
            "media_type": record.config_media_type or record.manifest_media_type,
            "manifest_media_type": record.manifest_media_type,
            "artifact_type": record.artifact_type,
            "project_id": project.id,
            "repository_id": repo.id,
            "repository_name": record.repository,
            "digest": record.digest,
            "size": record.size,
            "icon": "",
            "push_time": harbor_time(record.push_time),
            "pull_time": "0001-01-01T00:00:00.000Z",
            "extra_attrs": {},
            "annotations": dict(record.annotations),
        }
        if record.children:
            out["references"] = [
                {
                    "parent_id": record.id,
                    "child_id": self._child_id(record.repository, digest),
                    "child_digest": digest,
                    **({"platform": platform} if platform else {}),
                }
                for digest, platform in record.children
            ]
        if args.get("with_tag", "true") == "true" and record.tags:
            out["tags"] = [
                {
                    "id": record.id * 1000 + i,
                    "repository_id": repo.id,
                    "artifact_id": record.id,
                    "name": tag,
                    "push_time": harbor_time(when),
                    "pull_time": "0001-01-01T00:00:00.000Z",
                    "immutable": False,
                }
                for i, (tag, when) in enumerate(sorted(record.tags.items()))
            ]
        if args.get("with_accessory") == "true":
            accessories = self._accessories(record)
            if accessories:
                out["accessories"] = [self._accessory_json(a, record) for a in accessories]
        return out

    def _child_id(self, repository: str, digest: str) -> int:
        child = self.state.artifacts.get(repository, {}).get(digest)
        return child.id if child else 0

    def _op_webhook_policies(self, call: ApiCall, project: str) -> Answer:
        pages = _Pages(call.args)
        record = self._project(project, call.headers)
        self._require(call.who, record, "notification-policy", "list")
        with self.state.lock:
            items = [dict(p) for _, p in sorted(record.policies.items())]
        page, more = pages.cut(items)
        return 200, page, more

    def _op_webhook_policy_create(self, call: ApiCall, project: str) -> Answer:
        record = self._project(project, call.headers)
        self._require(call.who, record, "notification-policy", "create")
        policy = _valid_policy(call.body)
        with self.state.lock:
            if any(p["name"] == policy["name"] for p in record.policies.values()):
                raise HarborHttpError(
                    409, "CONFLICT", f"notification policy named {policy['name']} already exists"
                )
            policy_id = self.state.next_id("webhook_policy")
            now = harbor_time(datetime.now(UTC))
            policy.update(
                id=policy_id,
                project_id=record.id,
                creator=call.who.name,
                creation_time=now,
                update_time=now,
            )
            record.policies[policy_id] = policy
        return 201, None, {"Location": f"{API}/projects/{record.id}/webhook/policies/{policy_id}"}

    def _op_webhook_policy_update(self, call: ApiCall, project: str, policy_id: str) -> Answer:
        record = self._project(project, call.headers)
        self._require(call.who, record, "notification-policy", "update")
        policy = _valid_policy(call.body)
        with self.state.lock:
            old = record.policies.get(int(policy_id))
            if old is None:
                raise HarborHttpError(404, "NOT_FOUND", f"webhook policy {policy_id} not found")
            policy.update(
                id=old["id"],
                project_id=record.id,
                creator=old["creator"],
                creation_time=old["creation_time"],
                update_time=harbor_time(datetime.now(UTC)),
            )
            record.policies[int(policy_id)] = policy
        return 200, None, {}

    def _op_robots(self, call: ApiCall) -> Answer:
        pages = _Pages(call.args)
        self._require_admin(call.who)
        clauses = _q_clauses(call.args.get("q", ""))
        with self.state.lock:
            items = [
                self._robot_json(name, robot)
                for name, robot in sorted(self.state.robots.items(), key=lambda r: r[1][0])
                if all(_q_match(name, v) for k, v in clauses if k == "name")
            ]
        page, more = pages.cut(items)
        return 200, page, more

    def _op_robot(self, call: ApiCall, robot_id: str) -> Answer:
        self._require_admin(call.who)
        with self.state.lock:
            for name, robot in self.state.robots.items():
                if robot[0] == int(robot_id):
                    return 200, self._robot_json(name, robot), {}
        raise HarborHttpError(404, "NOT_FOUND", f"robot {robot_id} not found")

    @staticmethod
    def _require_admin(who: Principal) -> None:
        if who.anonymous:
            raise HarborHttpError(401, "UNAUTHORIZED", "anonymous is not authorized")
        if not who.admin:
            raise HarborHttpError(403, "FORBIDDEN", "forbidden")

    @staticmethod
    def _robot_json(
        name: str, robot: tuple[int, str, frozenset[tuple[str, str, str]]]
    ) -> dict[str, Any]:
        robot_id, _, permissions = robot
        namespaces = sorted({ns for ns, _, _ in permissions})
        return {
            "id": robot_id,
            "name": name,
            "description": "",
            "level": "system" if "*" in namespaces else "project",
            "duration": -1,
            "editable": True,
            "disable": False,
            "expires_at": -1,
            "permissions": [
                {
                    "kind": "project",
                    "namespace": ns,
                    "access": [
                        {"resource": r, "action": a} for n, r, a in sorted(permissions) if n == ns
                    ],
                }
                for ns in namespaces
            ],
        }

    # -- token service and /v2 -------------------------------------------------------------

    def _token(self, query: tuple[tuple[str, str], ...], headers: Mapping[str, str]) -> Answer:
        self.calls["token"] += 1
        who = self._principal(headers)
        scopes = [s for key, value in query if key == "scope" for s in value.split()]
        if who.anonymous and not scopes:
            raise HarborHttpError(401, "UNAUTHORIZED", "anonymous token request needs a scope")
        granted = set()
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            project = self.state.projects.get(name.split("/", 1)[0])
            if kind != "repository" or project is None:
                continue
            for action in actions.split(","):
                resource = "artifact" if action == "delete" else "repository"
                if self._allowed(who, project, resource, action):
                    granted.add((name, action))
        token = secrets.token_urlsafe(24)
        self._tokens[token] = (who, frozenset(granted), time.monotonic() + 1800)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return 200, {"token": token, "access_token": "", "expires_in": 1800, "issued_at": now}, {}

    def _registry(
        self,
        method: str,
        raw_path: str,
        query_string: str,
        headers: Mapping[str, str],
        body: bytes,
        extra: dict[str, str],
        start_response: Callable[..., Any],
    ) -> Iterable[bytes]:
        matched = _REGISTRY_PATH.match(raw_path)
        name = matched.group("name") if matched else ""
        kind = (
            matched.group("kind")
            if matched
            else ("catalog" if raw_path.endswith("_catalog") else "base")
        )
        self.calls[f"registry_{kind}_{method.lower()}"] += 1
        action = {"GET": "pull", "HEAD": "pull", "DELETE": "delete"}.get(method, "push")
        try:
            self._authorize_registry(headers, name, action, kind)
            if kind == "referrers":
                return self._referrers(name, raw_path, query_string, extra, start_response)
            if method in WRITE_METHODS and name:
                project = self.state.project_of(name)
                if project.registry_id:
                    raise HarborHttpError(403, "DENIED", "can not push artifact to a proxy project")
        except HarborHttpError as exc:
            data = json.dumps({"errors": [{"code": exc.code, "message": exc.message}]}).encode()
            out = {
                "Content-Type": "application/json; charset=utf-8",
                "Content-Length": str(len(data)),
                "Docker-Distribution-Api-Version": "registry/2.0",
                **extra,
                **exc.headers,
            }
            start_response(f"{exc.status} {_REASONS.get(exc.status, 'Status')}", list(out.items()))
            return [data]
        return self._forward(
            method, raw_path, query_string, headers, body, extra, start_response, name, kind
        )

    def _authorize_registry(
        self, headers: Mapping[str, str], name: str, action: str, kind: str
    ) -> None:
        auth = headers.get("Authorization", "")
        scope_actions = "pull,push" if action == "push" else action
        if not auth:
            challenge = f'Bearer realm="{self.url}/service/token",service="harbor-registry"'
            if name:
                challenge += f',scope="repository:{name}:{scope_actions}"'
            raise HarborHttpError(
                401,
                "UNAUTHORIZED",
                "unauthorized to access repository",
                {"Www-Authenticate": challenge},
            )
        insufficient = HarborHttpError(
            401,
            "UNAUTHORIZED",
            f"unauthorized to access repository: {name}, action: {action}",
            {"Www-Authenticate": 'Basic realm="harbor"'},
        )
        if auth.startswith("Bearer "):
            entry = self._tokens.get(auth[7:])
            if entry is None or entry[2] < time.monotonic():
                raise insufficient
            who, granted, _ = entry
            if not name:
                if kind == "catalog" and not who.admin:
                    raise insufficient
                return
            if (name, action) not in granted:
                raise insufficient
            return
        who = self._principal(headers)
        if who.anonymous:
            raise insufficient
        if not name:
            if kind == "catalog" and not who.admin:
                raise insufficient
            return
        project = self.state.project_of(name)
        resource = "artifact" if action == "delete" else "repository"
        if not self._allowed(who, project, resource, action):
            raise insufficient

    def _referrers(
        self,
        name: str,
        raw_path: str,
        query_string: str,
        extra: dict[str, str],
        start_response: Callable[..., Any],
    ) -> Iterable[bytes]:
        digest = raw_path.rsplit("/", 1)[-1]
        if not _DIGEST.match(digest):
            raise HarborHttpError(400, "BAD_REQUEST", f"unsupported digest {digest}")
        wanted = dict(parse_qsl(query_string)).get("artifactType", "")
        with self.state.lock:
            all_refs = [a for a in self.state.in_repository(name) if a.subject == digest]
            refs = [a for a in all_refs if not wanted or a.artifact_type == wanted]
            index = {
                "schemaVersion": 2,
                "mediaType": INDEX_TYPES[0],
                "manifests": [
                    {
                        "mediaType": a.manifest_media_type,
                        "digest": a.digest,
                        "size": a.size,
                        "annotations": dict(a.annotations),
                        "artifactType": a.artifact_type,
                    }
                    for a in sorted(refs, key=lambda a: a.id)
                ],
            }
        data = json.dumps(index).encode()
        out = {
            "Content-Type": INDEX_TYPES[0],
            "Content-Length": str(len(data)),
            "X-Total-Count": str(len(all_refs)),
            **extra,
        }
        if wanted:
            out["OCI-Filters-Applied"] = "artifactType"
        start_response("200 OK", list(out.items()))
        return [data]

    def _forward(
        self,
        method: str,
        raw_path: str,
        query_string: str,
        headers: Mapping[str, str],
        body: bytes,
        extra: dict[str, str],
        start_response: Callable[..., Any],
        name: str,
        kind: str,
    ) -> Iterable[bytes]:
        upstream_headers = {
            k: v
            for k, v in headers.items()
            if k.lower() not in ("authorization", "host", "cookie", "content-length")
        }
        url = f"{self.registry_url}{raw_path}" + (f"?{query_string}" if query_string else "")
        answer = self._upstream.request(
            method,
            url,
            headers=upstream_headers,
            data=body or None,
            stream=True,
            allow_redirects=False,
            timeout=120,
        )
        out = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_HEADERS}
        if "Location" in out and out["Location"].startswith(self.registry_url):
            out["Location"] = self.url + out["Location"][len(self.registry_url) :]
        out.update(extra)
        if kind == "manifests" and method == "PUT" and answer.status_code == 201:
            out.update(
                self._after_manifest_put(name, raw_path.rsplit("/", 1)[-1], body, headers, extra)
            )
        if kind == "manifests" and method == "DELETE" and answer.status_code == 202:
            self._after_manifest_delete(name, raw_path.rsplit("/", 1)[-1], headers, extra)
        start_response(f"{answer.status_code} {answer.reason}", list(out.items()))
        if method == "HEAD":
            answer.close()
            return []
        return _stream(answer)

    def _after_manifest_put(
        self,
        name: str,
        reference: str,
        body: bytes,
        headers: Mapping[str, str],
        extra: dict[str, str],
    ) -> dict[str, str]:
        record = self.state.record_manifest(name, reference, body, headers.get("Content-Type", ""))
        operator = self._operator(headers)
        self._fire("PUSH_ARTIFACT", record, reference, operator, extra["X-Request-Id"])
        return {"OCI-Subject": record.subject} if record.subject else {}

    def _after_manifest_delete(
        self, name: str, digest: str, headers: Mapping[str, str], extra: dict[str, str]
    ) -> None:
        """Harbor's registry DELETE goes through the same `deleteDeeply` as the REST one."""
        try:
            deleted = self.state.delete_deeply(name, digest)
        except HarborHttpError:
            return  # pushed past Harbor, or listed by an index: only the registry's copy went
        self._forget_upstream(name, deleted[:-1])
        self._fire_deleted(deleted[-1], self._operator(headers), extra["X-Request-Id"])

    def _fire_deleted(self, record: ArtifactRecord, operator: str, request_id: str) -> None:
        """DELETE_ARTIFACT for the root only, not for what went with it; Harbor names the
        first tag the artifact had, else its digest."""
        reference = min(record.tags, default=record.digest)
        self._fire("DELETE_ARTIFACT", record, reference, operator, request_id)

    def _operator(self, headers: Mapping[str, str]) -> str:
        auth = headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            entry = self._tokens.get(auth[7:])
            return entry[0].name if entry else ""
        return self._principal(headers).name

    # -- webhooks ---------------------------------------------------------------------------

    def _fire(
        self,
        event_type: str,
        record: ArtifactRecord,
        reference: str,
        operator: str,
        request_id: str,
    ) -> None:
        project = self.state.projects[record.repository.split("/", 1)[0]]
        repo = self.state.repositories[record.repository]
        at = f":{reference}" if not _DIGEST.match(reference) else f"@{reference}"
        occur_at = int(time.time())
        event_data = {
            "resources": [
                {
                    "digest": record.digest,
                    "tag": reference,
                    "resource_url": f"{self.host}/{record.repository}{at}",
                }
            ],
            "repository": {
                "date_created": int(repo.created.timestamp()),
                "name": record.repository.split("/", 1)[1],
                "namespace": project.name,
                "repo_full_name": record.repository,
                "repo_type": "public" if project.public else "private",
            },
        }
        with self.state.lock:
            policies = [
                dict(p)
                for p in project.policies.values()
                if p["enabled"] and event_type in p["event_types"]
            ]
        for policy in policies:
            for target in policy["targets"]:
                payload_format = target.get("payload_format") or "Default"
                if payload_format == "CloudEvents":
                    document: dict[str, Any] = {
                        "specversion": "1.0",
                        "id": str(uuid.uuid4()),
                        "requestid": request_id,
                        "source": f"/projects/{project.id}/webhook/policies/{policy['id']}",
                        "type": CLOUDEVENT_TYPES[event_type],
                        "datacontenttype": "application/json",
                        "time": datetime.fromtimestamp(occur_at, UTC).strftime(
                            "%Y-%m-%dT%H:%M:%SZ"
                        ),
                        "data": event_data,
                        "operator": operator,
                    }
                    content_type = "application/cloudevents+json"
                else:
                    document = {
                        "type": event_type,
                        "occur_at": occur_at,
                        "operator": operator,
                        "event_data": event_data,
                    }
                    content_type = "application/json"
                delivery_headers = {"Content-Type": content_type}
                if target.get("auth_header"):
                    delivery_headers["Authorization"] = target["auth_header"]
                delivery = Delivery(
                    event_type,
                    target["address"],
                    payload_format,
                    json.dumps(document).encode(),
                    delivery_headers,
                )
                self.deliveries.append(delivery)
                if self.drop_deliveries:
                    delivery.dropped = True
                else:
                    self._queue.put(delivery)

    def _deliver_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                delivery = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self._deliver(delivery)

    def _deliver(self, delivery: Delivery) -> None:
        address = delivery.address if "://" in delivery.address else f"http://{delivery.address}"
        for attempt in range(1, 4):
            if attempt > 1 and self._stopping.wait(self.delivery_retry_wait * attempt):
                break
            delivery.attempts = attempt
            try:
                answer = requests.post(
                    address, data=delivery.body, headers=delivery.headers, timeout=3
                )
                delivery.status = answer.status_code
            except requests.RequestException:
                delivery.status = 0
            if 200 <= delivery.status < 300:
                break
        delivery.finished = True


def _stream(answer: requests.Response) -> Iterator[bytes]:
    try:
        yield from answer.raw.stream(65536, decode_content=False)
    finally:
        answer.close()


def _valid_policy(body: bytes) -> dict[str, Any]:
    try:
        policy = json.loads(body)
    except ValueError:
        raise HarborHttpError(400, "BAD_REQUEST", "invalid JSON body") from None
    if (
        not isinstance(policy, dict)
        or not isinstance(policy.get("name"), str)
        or not policy["name"]
    ):
        raise HarborHttpError(400, "BAD_REQUEST", "name is required")
    events = policy.get("event_types")
    if not isinstance(events, list) or not events or any(e not in EVENT_TYPES for e in events):
        raise HarborHttpError(400, "BAD_REQUEST", f"invalid event_types {events!r}")
    targets = policy.get("targets")
    if not isinstance(targets, list) or not targets:
        raise HarborHttpError(400, "BAD_REQUEST", "empty notification target")
    for target in targets:
        if target.get("type") != "http" or not target.get("address"):
            raise HarborHttpError(400, "BAD_REQUEST", "invalid notification target")
        if target.get("payload_format", "Default") not in ("Default", "CloudEvents"):
            raise HarborHttpError(
                400, "BAD_REQUEST", f"unsupported payload format {target['payload_format']}"
            )
    return {
        "name": policy["name"],
        "description": policy.get("description", ""),
        "enabled": policy.get("enabled") is True,
        "event_types": list(events),
        "targets": [dict(t, payload_format=t.get("payload_format") or "Default") for t in targets],
    }


def _artifact_matches(record: ArtifactRecord, clauses: list[tuple[str, str]]) -> bool:
    for key, value in clauses:
        if key == "tags":
            if value == "*" and not record.tags:
                return False
            if value == "nil" and record.tags:
                return False
            if value not in ("*", "nil") and not any(_q_match(tag, value) for tag in record.tags):
                return False
        elif key in (
            "digest",
            "media_type",
            "manifest_media_type",
            "artifact_type",
            "type",
            "push_time",
            "size",
        ):
            field_value = {
                "digest": record.digest,
                "media_type": record.config_media_type or record.manifest_media_type,
                "manifest_media_type": record.manifest_media_type,
                "artifact_type": record.artifact_type,
                "type": record.harbor_type,
                "push_time": record.push_time,
                "size": record.size,
            }[key]
            if not _q_match(field_value, value):
                return False
    return True


def _sort_key(sort: str) -> Callable[[ArtifactRecord], tuple[Any, ...]]:
    fields = [(f.lstrip("-"), f.startswith("-")) for f in sort.split(",") if f]

    def key(record: ArtifactRecord) -> tuple[Any, ...]:
        out: list[Any] = []
        for name, descending in fields:
            value = {
                "push_time": record.push_time.timestamp(),
                "id": record.id,
                "size": record.size,
            }.get(name)
            if value is None:
                value = record.digest
                out.append(value)
            else:
                out.append(-value if descending else value)
        return tuple(out)

    return key


_ROUTES: list[tuple[str, tuple[str, ...], str]] = [
    ("GET", ("ping",), "ping"),
    ("GET", ("systeminfo",), "systeminfo"),
    ("GET", ("projects",), "projects"),
    ("GET", ("projects", "{project}", "repositories"), "repositories"),
    ("GET", ("projects", "{project}", "repositories", "{repository}", "artifacts"), "artifacts"),
    (
        "GET",
        ("projects", "{project}", "repositories", "{repository}", "artifacts", "{reference}"),
        "artifact",
    ),
    (
        "DELETE",
        ("projects", "{project}", "repositories", "{repository}", "artifacts", "{reference}"),
        "artifact_delete",
    ),
    (
        "GET",
        (
            "projects",
            "{project}",
            "repositories",
            "{repository}",
            "artifacts",
            "{reference}",
            "accessories",
        ),
        "accessories",
    ),
    ("GET", ("projects", "{project}", "webhook", "policies"), "webhook_policies"),
    ("POST", ("projects", "{project}", "webhook", "policies"), "webhook_policy_create"),
    (
        "PUT",
        ("projects", "{project}", "webhook", "policies", "{policy_id}"),
        "webhook_policy_update",
    ),
    ("GET", ("robots",), "robots"),
    ("GET", ("robots", "{robot_id}"), "robot"),
]


def _route(method: str, segments: list[str]) -> tuple[str, dict[str, str]] | None:
    for route_method, pattern, name in _ROUTES:
        if route_method != method or len(pattern) != len(segments):
            continue
        params = {}
        for want, got in zip(pattern, segments, strict=True):
            if want.startswith("{"):
                params[want[1:-1]] = got
            elif want != got:
                break
        else:
            return name, params
    return None


_REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    412: "Precondition Failed",
    422: "Unprocessable Entity",
    500: "Internal Server Error",
}


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Tests read `calls` and `exchanges`, not an access log on stderr."""


@dataclass
class RunningHarbor:
    emulator: HarborEmulator
    server: BaseWSGIServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        return self.emulator.url

    @property
    def host(self) -> str:
        return self.emulator.host

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)
        self.server.server_close()
        self.emulator.stop()


def start_harbor_emulator(
    registry_url: str, *, admin_password: str = ADMIN_PASSWORD
) -> RunningHarbor:
    """Serve a `HarborEmulator` over `registry_url` on a free loopback port, in a thread."""
    emulator = HarborEmulator(registry_url, admin_password=admin_password)
    server = make_server("127.0.0.1", 0, emulator, threaded=True, request_handler=_QuietHandler)
    emulator.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    return RunningHarbor(emulator, server, thread)


def harbor_session(username: str, password: str) -> requests.Session:
    """A session for test pushes through the emulator: Basic auth, and no cookies kept."""
    session = requests.Session()
    session.auth = (username, password)
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return session
