"""Harbor's REST API v2.0: projects, repositories, artifacts, accessories, webhooks, robots.

Three Harbor habits shape this client. Repository paths with `/` go into URLs encoded twice, and
so do `+` and `%` inside `q` (Harbor decodes both once more). Wrong Basic credentials are not a
401: Harbor answers as for an anonymous caller, so `systeminfo()` checks that it was recognised.
Lists are paged at most 100 a page and read lazily.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests
from requests.auth import HTTPBasicAuth

from harbor_api.credentials import Credentials
from harbor_api.errors import (
    Denied,
    NotFound,
    RegistryError,
    Unauthorized,
    Unreachable,
    ValidationFailed,
)
from harbor_api.harbor_models import (
    Accessory,
    Artifact,
    HarborAnswerInvalid,
    Project,
    Repository,
    Robot,
    SystemInfo,
    WebhookPolicy,
)
from harbor_api.transport import (
    HttpSession,
    RequestObserver,
    RetryPolicy,
    TlsOptions,
    describe,
    json_body,
)

_DEFAULT_TLS = TlsOptions()
_DEFAULT_RETRY = RetryPolicy()
PAGE_SIZE = 100
# A bound on any one listing, far above what a Harbor holds (100 million entries).
MAX_PAGES = 1_000_000

# What a robot needs for the calls acceld makes; named in every 403 so the fix is obvious.
ROBOT_PERMISSIONS = (
    "repository:pull",
    "repository:push",
    "tag:create",
    "artifact:read",
    "artifact:list",
    "repository:list",
    "accessory:list",
)
# The `endpoint` label of each call, for metrics to create up front.
HARBOR_ENDPOINTS = (
    "harbor_ping",
    "harbor_systeminfo",
    "harbor_projects",
    "harbor_repositories",
    "harbor_artifacts",
    "harbor_artifact",
    "harbor_accessories",
    "harbor_webhook_policies",
    "harbor_webhook_policy_create",
    "harbor_webhook_policy_update",
    "harbor_robots",
    "harbor_robot",
)


def encode_repository_path(path: str) -> str:
    """A repository path as Harbor wants it in a URL segment: `a/b` → `a%252Fb`."""
    return quote(quote(path, safe=""), safe="")


def encode_q(q: str) -> str:
    """`q` prepared for Harbor's second decoding: `+` and `%` survive it as themselves."""
    return q.replace("%", "%25").replace("+", "%2B")


def q_time(moment: datetime) -> str:
    """A time in the only form Harbor's `q` parser reads as a time (UTC, no zone suffix)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def pushed_since_clause(moment: datetime) -> str:
    return f"push_time=[{q_time(moment)}~]"


def _join_q(*clauses: str) -> str:
    return ",".join(c for c in clauses if c)


def _bool(value: bool) -> str:
    return "true" if value else "false"


class HarborClient:
    """A Harbor at `url` (`https://harbor.example.com`), as a user or a robot (`robot$…`)."""

    def __init__(
        self,
        url: str,
        *,
        credentials: Credentials | None,
        tls: TlsOptions = _DEFAULT_TLS,
        timeout: float = 30.0,
        retry: RetryPolicy = _DEFAULT_RETRY,
        observer: RequestObserver | None = None,
    ) -> None:
        if "://" not in url:
            url = f"{tls.scheme}://{url}"
        self.url = url.rstrip("/")
        self._api = f"{self.url}/api/v2.0"
        self._credentials = credentials
        self._auth = (
            HTTPBasicAuth(credentials.username, credentials.password) if credentials else None
        )
        self._http = HttpSession(tls, timeout=timeout, retry=retry, observer=observer)

    def __repr__(self) -> str:
        user = self._credentials.username if self._credentials else "anonymous"
        return f"HarborClient({self.url!r}, user={user!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HarborClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls ------------------------------------------------------------------------------

    def ping(self) -> None:
        """Harbor's API process answers (no credentials are checked)."""
        self._get("/ping", endpoint="harbor_ping", permission="")

    def systeminfo(self) -> SystemInfo:
        """Version and URLs; raises `Unauthorized` when Harbor did not recognise the caller."""
        response = self._get("/systeminfo", endpoint="harbor_systeminfo", permission="")
        info = SystemInfo.from_json(json_body(response, describe("GET", response.url)))
        if self._credentials is not None and not info.harbor_version:
            raise Unauthorized(
                f"GET {self._api}/systeminfo",
                401,
                "UNAUTHORIZED",
                f"Harbor answered as for an anonymous caller: it does not accept the "
                f"credentials of {self._credentials.username!r}; check the robot name "
                f"(robot$…) and its secret",
            )
        return info

    def projects(self) -> Iterator[Project]:
        """Projects the caller can see, proxy-cache projects skipped (they refuse pushes)."""
        for i, item in self._paged(
            "/projects",
            {"with_detail": "false"},
            endpoint="harbor_projects",
            permission="project:read",
        ):
            project = Project.from_json(item, f"projects[{i}]")
            if not project.is_proxy_cache:
                yield project

    def repositories(self, project: str) -> Iterator[Repository]:
        path = f"/projects/{quote(project, safe='')}/repositories"
        for i, item in self._paged(
            path,
            {},
            endpoint="harbor_repositories",
            permission="repository:list",
            project=project,
        ):
            yield Repository.from_json(item, f"repositories[{i}]")

    def artifacts(
        self,
        project: str,
        repository_path: str,
        *,
        with_accessory: bool = True,
        with_tag: bool = True,
        q: str = "",
        sort: str = "",
        pushed_since: datetime | None = None,
    ) -> Iterator[Artifact]:
        """Artifacts of `project/repository_path`: Harbor hides accessories and untagged
        index children. `q` uses Harbor's syntax (`tags=*`, `push_time=[a~b]`, …)."""
        params = {"with_tag": _bool(with_tag), "with_accessory": _bool(with_accessory)}
        full_q = _join_q(q, pushed_since_clause(pushed_since) if pushed_since else "")
        if full_q:
            params["q"] = encode_q(full_q)
        if sort:
            params["sort"] = sort
        for i, item in self._paged(
            f"{self._repository_path(project, repository_path)}/artifacts",
            params,
            endpoint="harbor_artifacts",
            permission="artifact:list",
            project=project,
        ):
            yield Artifact.from_json(item, f"artifacts[{i}]")

    def artifact(self, project: str, repository_path: str, reference: str) -> Artifact:
        """One artifact by tag or digest (accessories and index children included)."""
        response = self._get(
            f"{self._repository_path(project, repository_path)}/artifacts/"
            f"{quote(reference, safe=':')}",
            params={"with_tag": "true", "with_accessory": "true"},
            endpoint="harbor_artifact",
            permission="artifact:read",
            project=project,
        )
        return Artifact.from_json(json_body(response, describe("GET", response.url)), "artifact")

    def accessories(
        self, project: str, repository_path: str, reference: str
    ) -> Iterator[Accessory]:
        path = (
            f"{self._repository_path(project, repository_path)}/artifacts/"
            f"{quote(reference, safe=':')}/accessories"
        )
        for i, item in self._paged(
            path, {}, endpoint="harbor_accessories", permission="accessory:list", project=project
        ):
            yield Accessory.from_json(item, f"accessories[{i}]")

    def webhook_policies(self, project: str) -> Iterator[WebhookPolicy]:
        for i, item in self._paged(
            self._webhook_path(project),
            {},
            endpoint="harbor_webhook_policies",
            permission="notification-policy:list",
            project=project,
            headers={"X-Is-Resource-Name": "true"},
        ):
            yield WebhookPolicy.from_json(item, f"webhook_policies[{i}]")

    def create_webhook_policy(self, project: str, policy: WebhookPolicy) -> int | None:
        """Create `policy` on `project`; the new id (from `Location`) when Harbor gave it."""
        response = self._write(
            "POST",
            self._webhook_path(project),
            policy.to_json(),
            endpoint="harbor_webhook_policy_create",
            permission="notification-policy:create",
            project=project,
        )
        location = response.headers.get("Location", "")
        last = location.rstrip("/").rsplit("/", 1)[-1]
        return int(last) if last.isdigit() else None

    def update_webhook_policy(self, project: str, policy: WebhookPolicy) -> None:
        if policy.id is None:
            raise ValueError("update_webhook_policy needs a policy with an id")
        self._write(
            "PUT",
            f"{self._webhook_path(project)}/{policy.id}",
            policy.to_json(),
            endpoint="harbor_webhook_policy_update",
            permission="notification-policy:update",
            project=project,
        )

    def robots(self, q: str = "") -> Iterator[Robot]:
        params = {"q": encode_q(q)} if q else {}
        for i, item in self._paged(
            "/robots", params, endpoint="harbor_robots", permission="robot:list"
        ):
            yield Robot.from_json(item, f"robots[{i}]")

    def robot(self, robot_id: int) -> Robot:
        response = self._get(
            f"/robots/{int(robot_id)}", endpoint="harbor_robot", permission="robot:read"
        )
        return Robot.from_json(json_body(response, describe("GET", response.url)), "robot")

    # -- plumbing ---------------------------------------------------------------------------

    @staticmethod
    def _repository_path(project: str, repository_path: str) -> str:
        return (
            f"/projects/{quote(project, safe='')}/repositories/"
            f"{encode_repository_path(repository_path)}"
        )

    @staticmethod
    def _webhook_path(project: str) -> str:
        return f"/projects/{quote(project, safe='')}/webhook/policies"

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"X-Request-Id": str(uuid.uuid4()), "Accept": "application/json"}
        headers.update(extra or {})
        return headers

    def _get(
        self,
        path: str,
        *,
        endpoint: str,
        permission: str,
        project: str = "",
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        try:
            return self._http.send_idempotent(
                "GET",
                f"{self._api}{path}",
                endpoint=endpoint,
                params=params,
                headers=self._headers(headers),
                auth=self._auth,
            )
        except RegistryError as exc:
            raise self._explain(exc, permission, project) from exc

    def _write(
        self,
        method: str,
        path: str,
        body: Any,
        *,
        endpoint: str,
        permission: str,
        project: str,
    ) -> requests.Response:
        headers = self._headers({"X-Is-Resource-Name": "true"})
        headers["Content-Type"] = "application/json"
        send = self._http.send_idempotent if method == "PUT" else self._http.send
        try:
            return send(
                method,
                f"{self._api}{path}",
                endpoint=endpoint,
                ok=(200, 201),
                data=json.dumps(body),
                headers=headers,
                auth=self._auth,
            )
        except RegistryError as exc:
            raise self._explain(exc, permission, project) from exc

    def _paged(
        self,
        path: str,
        params: Mapping[str, str],
        *,
        endpoint: str,
        permission: str,
        project: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[tuple[int, Any]]:
        """Items of a list, page by page (lazily), with their position for error messages."""
        seen = 0
        for page in range(1, MAX_PAGES + 1):
            query = dict(params, page=str(page), page_size=str(PAGE_SIZE))
            response = self._get(
                path,
                params=query,
                headers=headers,
                endpoint=endpoint,
                permission=permission,
                project=project,
            )
            what = describe("GET", response.url)
            items = json_body(response, what)
            if not isinstance(items, list):
                raise HarborAnswerInvalid(f"{what}: expected a JSON list")
            for item in items:
                yield seen, item
                seen += 1
            total = response.headers.get("X-Total-Count", "")
            if len(items) < PAGE_SIZE or (total.isdigit() and seen >= int(total)):
                return

    def _explain(self, exc: RegistryError, permission: str, project: str) -> RegistryError:
        """The same error, its message saying what to fix."""
        who = repr(self._credentials.username) if self._credentials else "the anonymous caller"
        scope = f" on project {project!r}" if project else ""
        if isinstance(exc, Unreachable):
            return Unreachable(f"cannot reach Harbor at {self.url}", 0, "", exc.message)
        if isinstance(exc, Unauthorized):
            hint = (
                "check the robot name (robot$…) and its secret"
                if self._credentials
                else "configure a robot account and its secret"
            )
            message = f"Harbor refused {who}{scope}: {hint}"
        elif isinstance(exc, Denied) and permission:
            message = f"{who} lacks the permission {permission}{scope} in Harbor"
            if exc.message:
                message += f" (Harbor said: {exc.message})"
        elif isinstance(exc, NotFound) and project and exc.message.lower().startswith("project"):
            message = f"project {project!r} does not exist in Harbor at {self.url}"
        elif isinstance(exc, ValidationFailed):
            message = f"Harbor refused the request: {exc.message}"
        else:
            return exc
        return type(exc)(exc.request, exc.status, exc.code, message, exc.retry_after)
