from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from harbor_api.credentials import Credentials, CredentialsError, resolve_credentials


def _docker_config(directory: Path, auths: dict[str, object]) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps({"auths": auths}))
    return {"DOCKER_CONFIG": str(directory)}


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_explicit_credentials_win_over_environment() -> None:
    explicit = Credentials("cfg", "from-config")
    env = {"ACCELD_REGISTRY_USERNAME": "env", "ACCELD_REGISTRY_PASSWORD": "x"}
    assert resolve_credentials("h.example", explicit, env) == explicit


def test_environment_password_or_password_file(tmp_path: Path) -> None:
    env = {"ACCELD_REGISTRY_USERNAME": "robot$ci", "ACCELD_REGISTRY_PASSWORD": "p1"}
    assert resolve_credentials("h.example", None, env) == Credentials("robot$ci", "p1")
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    env = {"ACCELD_REGISTRY_USERNAME": "robot$ci", "ACCELD_REGISTRY_PASSWORD_FILE": str(secret)}
    assert resolve_credentials("h.example", None, env) == Credentials("robot$ci", "from-file")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ACCELD_REGISTRY_PASSWORD": "p"}, "ACCELD_REGISTRY_USERNAME is not set"),
        ({"ACCELD_REGISTRY_USERNAME": "u"}, "neither"),
        (
            {
                "ACCELD_REGISTRY_USERNAME": "u",
                "ACCELD_REGISTRY_PASSWORD": "p",
                "ACCELD_REGISTRY_PASSWORD_FILE": "/f",
            },
            "not both",
        ),
        (
            {"ACCELD_REGISTRY_USERNAME": "u", "ACCELD_REGISTRY_PASSWORD_FILE": "/nonexistent/pw"},
            "cannot read /nonexistent/pw",
        ),
    ],
)
def test_incomplete_environment_is_a_precise_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(CredentialsError, match=message):
        resolve_credentials("h.example", None, env)


def test_docker_config_entry_matching_the_host(tmp_path: Path) -> None:
    env = _docker_config(
        tmp_path / "docker",
        {
            "https://other.example/v1/": {"auth": _auth("someone", "else")},
            "h.example:5000": {"auth": _auth("alice", "pa:ss")},
        },
    )
    assert resolve_credentials("h.example:5000", None, env) == Credentials("alice", "pa:ss")
    assert resolve_credentials("unknown.example", None, env) is None


def test_docker_config_in_home_when_docker_config_is_unset(tmp_path: Path) -> None:
    _docker_config(tmp_path / ".docker", {"h.example": {"auth": _auth("bob", "pw")}})
    assert resolve_credentials("h.example", None, {"HOME": str(tmp_path)}) == Credentials(
        "bob", "pw"
    )
    assert resolve_credentials("h.example", None, {"HOME": str(tmp_path / "none")}) is None


def test_malformed_docker_config_auth_names_the_entry_not_the_secret(tmp_path: Path) -> None:
    env = _docker_config(tmp_path / "d", {"h.example": {"auth": "%%%not-base64"}})
    with pytest.raises(CredentialsError, match=r"auths\['h.example'\].auth: not base64"):
        resolve_credentials("h.example", None, env)
    (tmp_path / "d" / "config.json").write_text("{not json")
    with pytest.raises(CredentialsError, match="not valid JSON"):
        resolve_credentials("h.example", None, env)


def test_password_never_shows_in_repr() -> None:
    credentials = Credentials("alice", "hunter2-secret")
    assert "hunter2" not in repr(credentials)
    assert "hunter2" not in f"{credentials}"
    assert "hunter2" not in repr([credentials])
