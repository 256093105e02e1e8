"""Registry credentials and where they come from.

Order: explicit configuration, then the environment (`ACCELD_REGISTRY_USERNAME` with
`ACCELD_REGISTRY_PASSWORD` or `ACCELD_REGISTRY_PASSWORD_FILE`), then a Docker `config.json`
(`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`). Secrets may live in files (systemd
`LoadCredential`); they never reach a command line, a log line or an error message.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harbor_api.errors import AcceldError

ENV_USERNAME = "ACCELD_REGISTRY_USERNAME"
ENV_PASSWORD = "ACCELD_REGISTRY_PASSWORD"  # noqa: S105 (a variable name)
ENV_PASSWORD_FILE = "ACCELD_REGISTRY_PASSWORD_FILE"  # noqa: S105 (a variable name)


class CredentialsError(AcceldError):
    """Credentials that were asked for but cannot be read (missing file, malformed config)."""


@dataclass(frozen=True)
class Credentials:
    """A username and password (or robot secret); the password never shows in a repr."""

    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.username:
            raise CredentialsError("registry credentials: the username is empty")
        if ":" in self.username:
            raise CredentialsError("registry credentials: the username contains ':'")

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password='***')"

    __str__ = __repr__


def read_secret_file(path: Path, what: str) -> str:
    """The secret in `path`, one trailing newline removed (as `echo` and editors add one)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CredentialsError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    if text.endswith("\n"):
        text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
    if not text:
        raise CredentialsError(f"{what}: {path} is empty")
    return text


def credentials_from_env(env: Mapping[str, str]) -> Credentials | None:
    """Credentials from `ACCELD_REGISTRY_*`, or None when no username is set."""
    username = env.get(ENV_USERNAME, "")
    password = env.get(ENV_PASSWORD, "")
    password_file = env.get(ENV_PASSWORD_FILE, "")
    if not username:
        if password or password_file:
            raise CredentialsError(f"{ENV_USERNAME} is not set but a registry password is")
        return None
    if password and password_file:
        raise CredentialsError(f"set one of {ENV_PASSWORD} and {ENV_PASSWORD_FILE}, not both")
    if password_file:
        password = read_secret_file(Path(password_file), ENV_PASSWORD_FILE)
    if not password:
        raise CredentialsError(
            f"{ENV_USERNAME} is set but neither {ENV_PASSWORD} nor {ENV_PASSWORD_FILE} is"
        )
    return Credentials(username, password)


def docker_config_path(env: Mapping[str, str]) -> Path:
    directory = env.get("DOCKER_CONFIG")
    if directory:
        return Path(directory) / "config.json"
    return Path(env.get("HOME") or Path.home()) / ".docker" / "config.json"


def _auth_key_host(key: str) -> str:
    """The host of a `config.json` `auths` key (`https://h:5000/v1/` → `h:5000`)."""
    host = key.split("://", 1)[1] if "://" in key else key
    return host.split("/", 1)[0]


def credentials_from_docker_config(path: Path, host: str) -> Credentials | None:
    """The `auths` entry of a Docker `config.json` for `host`, or None (no file, no entry)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CredentialsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data: Any = json.loads(raw)
    except ValueError:
        raise CredentialsError(f"{path}: not valid JSON") from None
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        return None
    for key, entry in auths.items():
        if not isinstance(key, str) or _auth_key_host(key) != host:
            continue
        if not isinstance(entry, dict):
            raise CredentialsError(f"{path}: auths[{key!r}]: expected an object")
        return _entry_credentials(entry, f"{path}: auths[{key!r}]")
    return None


def _entry_credentials(entry: Mapping[str, Any], where: str) -> Credentials | None:
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise CredentialsError(f"{where}.auth: not base64 of USERNAME:PASSWORD") from None
        username, sep, password = decoded.partition(":")
        if not sep or not username:
            raise CredentialsError(f"{where}.auth: not base64 of USERNAME:PASSWORD")
        return Credentials(username, password)
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and name and isinstance(secret, str):
        return Credentials(name, secret)
    return None


def resolve_credentials(
    host: str,
    explicit: Credentials | None = None,
    env: Mapping[str, str] | None = None,
) -> Credentials | None:
    """The credentials for `host`: explicit, else environment, else Docker config, else None."""
    if explicit is not None:
        return explicit
    environ = os.environ if env is None else env
    from_env = credentials_from_env(environ)
    if from_env is not None:
        return from_env
    return credentials_from_docker_config(docker_config_path(environ), host)
