from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator

import pytest
import requests

from harbor_api.auth import Challenge, merge_scopes, parse_challenges
from harbor_api.credentials import Credentials
from harbor_api.errors import Unauthorized
from harbor_api.registry import RegistryClient
from harbor_api.transport import TlsOptions
from tests.support.auth_registries import start_basic_registry, start_token_registry
from tests.support.images import push_image
from tests.support.registry_server import RunningRegistry
from tests.support.token_server import TokenServer, start_token_server

USERS = {"alice": "s3cret-Pa55", "robot$ci": "another-S3cret", "reader": "read-0nly"}
PLAIN = TlsOptions(plain_http=True)


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    running = start_basic_registry(tmp_path_factory.mktemp("basic"), USERS)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    server = start_token_server(
        tmp_path_factory.mktemp("tokens"), USERS, pull_only=frozenset({"reader"})
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory, token_server: TokenServer
) -> Iterator[RunningRegistry]:
    running = start_token_registry(tmp_path_factory.mktemp("token-registry"), token_server)
    yield running
    running.stop()


def _client(
    registry: RunningRegistry, user: str | None = "alice", password: str = ""
) -> RegistryClient:
    credentials = Credentials(user, password or USERS[user]) if user else None
    return RegistryClient(registry.host, credentials=credentials, tls=PLAIN)


def test_challenge_values_with_commas_and_several_challenges_parse() -> None:
    header = (
        'Bearer realm="https://h/service/token",service="harbor-registry",'
        'scope="repository:a/b:pull,push repository:c:pull", Basic realm="harbor"'
    )
    assert parse_challenges(header) == (
        Challenge(
            "bearer",
            {
                "realm": "https://h/service/token",
                "service": "harbor-registry",
                "scope": "repository:a/b:pull,push repository:c:pull",
            },
        ),
        Challenge("basic", {"realm": "harbor"}),
    )
    assert parse_challenges(header)[0].scopes == ("repository:a/b:pull,push", "repository:c:pull")
    assert parse_challenges('Basic realm="a \\"quoted\\" realm"')[0].realm == 'a "quoted" realm'
    assert parse_challenges("") == ()


def test_scopes_of_one_repository_merge_into_one() -> None:
    assert merge_scopes(
        ["repository:a:pull", "repository:a:push,pull", "repository:b:pull", "registry:catalog:*"]
    ) == ("registry:catalog:*", "repository:a:pull,push", "repository:b:pull")


def test_basic_auth_registry_accepts_the_right_password(basic_registry: RunningRegistry) -> None:
    client = _client(basic_registry)
    client.ping()
    data = b"basic-auth blob"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    client.upload_blob("auth/basic", data, digest, len(data))
    assert client.read_blob("auth/basic", digest, 100) == data


def test_basic_auth_wrong_password_is_unauthorized_without_the_password(
    basic_registry: RunningRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = _client(basic_registry, "alice", "wrong-Pa55word")
    with pytest.raises(Unauthorized) as caught:
        client.ping()
    message = str(caught.value)
    assert "refused the credentials of user 'alice'" in message
    assert f"GET {basic_registry.url}/v2/" in message
    assert "wrong-Pa55word" not in message + caplog.text + repr(client)


def test_no_credentials_on_a_protected_registry_says_so(basic_registry: RunningRegistry) -> None:
    with pytest.raises(Unauthorized, match="requires credentials and none are configured"):
        _client(basic_registry, None).ping()


def test_bearer_token_flow_pushes_and_pulls(
    token_registry: RunningRegistry, token_server: TokenServer
) -> None:
    client = _client(token_registry, "robot$ci")
    client.ping()
    session = requests.Session()
    token = token_server.issue(
        "alice", ("repository:auth/token:pull,push",), "acceld-test-registry"
    )
    session.headers["Authorization"] = f"Bearer {token['token']}"
    image = push_image(token_registry.url, "auth/token", "v1", session=session)
    before = len(token_server.requests)
    fetched = client.get_manifest("auth/token", "v1")
    assert fetched.digest == image.digest
    assert client.read_blob("auth/token", fetched.content.config.digest, 10_000)  # type: ignore[union-attr]
    assert client.head_manifest("auth/token", image.digest) is not None
    # one token for pull on auth/token, then reused from the cache
    issued = token_server.requests[before:]
    assert [r.scopes for r in issued] == [("repository:auth/token:pull",)]
    assert issued[0].username == "robot$ci"


def test_mount_asks_one_token_for_pull_on_source_and_push_on_target(
    token_registry: RunningRegistry, token_server: TokenServer
) -> None:
    client = _client(token_registry)
    data = b"shared base layer"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    client.upload_blob("auth/mount-source", data, digest, len(data))
    before = len(token_server.requests)
    assert client.mount_blob("auth/mount-target", digest, "auth/mount-source")
    scopes = [r.scopes for r in token_server.requests[before:]]
    assert ("repository:auth/mount-source:pull", "repository:auth/mount-target:pull,push") in scopes
    assert client.read_blob("auth/mount-target", digest, 100) == data


def test_bearer_wrong_password_is_unauthorized_without_the_password(
    token_registry: RunningRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(Unauthorized, match="refused the credentials of user 'alice'") as caught:
        _client(token_registry, "alice", "not-the-Pa55word").ping()
    assert "not-the-Pa55word" not in str(caught.value) + caplog.text


def test_anonymous_on_token_registry_is_unauthorized(token_registry: RunningRegistry) -> None:
    with pytest.raises(Unauthorized, match="requires credentials"):
        _client(token_registry, None).get_manifest("auth/token", "v1")


def test_client_repr_names_the_host_only() -> None:
    client = RegistryClient("h.example", credentials=Credentials("alice", "s3cret-Pa55"))
    assert repr(client) == "RegistryClient('h.example')"


def test_delete_asks_for_the_delete_action(
    token_registry: RunningRegistry, token_server: TokenServer
) -> None:
    client = _client(token_registry)
    session = requests.Session()
    token = token_server.issue(
        "alice", ("repository:auth/delete:pull,push",), "acceld-test-registry"
    )
    session.headers["Authorization"] = f"Bearer {token['token']}"
    image = push_image(token_registry.url, "auth/delete", "v1", session=session)
    before = len(token_server.requests)
    client.delete_manifest("auth/delete", image.digest)
    assert [r.scopes for r in token_server.requests[before:]] == [
        ("repository:auth/delete:delete",)
    ]
    assert client.head_manifest("auth/delete", image.digest) is None


def test_observer_sees_bounded_endpoint_labels(token_registry: RunningRegistry) -> None:
    seen: list[tuple[str, str]] = []
    client = RegistryClient(
        token_registry.host,
        credentials=Credentials("alice", USERS["alice"]),
        tls=PLAIN,
        observer=lambda endpoint, code, seconds: seen.append((endpoint, code)),
    )
    assert client.head_manifest("auth/observed", "v1") is None
    assert seen == [("manifest_head", "401"), ("token", "200"), ("manifest_head", "404")]


def test_missing_push_right_is_unauthorized_naming_the_scope(
    token_registry: RunningRegistry,
) -> None:
    data = b"not allowed"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with pytest.raises(Unauthorized, match=r"no right to repository:auth/readonly:pull,push"):
        _client(token_registry, "reader").upload_blob("auth/readonly", data, digest, len(data))
