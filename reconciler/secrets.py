"""Secrets named in the config: read from a file, an environment variable or a systemd credential.

A secret is never written inline in the config file, so the file can be shown, diffed and
committed. `<name>_file: PATH`, `<name>_env: VARIABLE` or `<name>_credential: NAME` say where
it is; exactly one of them. A credential is read from `--credentials-dir` (which sets
`$ACCELD_CREDENTIALS_DIR`), else from `$CREDENTIALS_DIRECTORY/NAME` (systemd fills it from
`LoadCredential=`), else from `/etc/credstore`, where systemd itself looks: there as `NAME` or
as `acceld.NAME`, the file the shipped unit loads. So an admin shell runs `check`, `plan` or
`harbor setup` with the daemon's credentials and no systemd around it. Errors name the key
and where the secret was looked for, never its value. Every secret read is registered with
the log redactor at once, and a secret file that its group or other users may read is
reported with a warning.
"""

from __future__ import annotations

import logging
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harbor_api.credentials import CredentialsError, read_secret_file
from policies.fields import FieldError, Fields
from reconciler.observability.logs import register_secret

log = logging.getLogger(__name__)

CREDENTIALS_DIRECTORY = "CREDENTIALS_DIRECTORY"
ACCELD_CREDENTIALS_DIR = "ACCELD_CREDENTIALS_DIR"
CREDSTORE = Path("/etc/credstore")
CREDSTORE_PREFIX = "acceld."
"""The shipped unit loads credential NAME from `/etc/credstore/acceld.NAME`."""
_SOURCES = ("file", "env", "credential")


@dataclass(frozen=True)
class Secret:
    """A secret value that shows as `***` in every repr, str and log line; `.reveal()` it."""

    _value: str = field(repr=False)
    origin: str
    """Where it came from (`file /run/…`, `env NAME`), safe to show."""

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('***', origin={self.origin!r})"

    def __str__(self) -> str:
        return "***"


def read_secret(fields: Fields, name: str, env: Mapping[str, str], base_dir: Path) -> Secret | None:
    """The secret configured by `<name>_file`, `<name>_env` or `<name>_credential`, if any."""
    if fields.has(name):
        raise FieldError(
            fields.where(name),
            f"a secret must not be written in the config file; use {name}_file, {name}_env "
            f"or {name}_credential",
        )
    given = {source: fields.string(f"{name}_{source}", "") for source in _SOURCES}
    chosen = [source for source, value in given.items() if value]
    if len(chosen) > 1:
        keys = " and ".join(f"{name}_{source}" for source in chosen)
        raise FieldError(fields.path, f"{keys} are both set; use one")
    if not chosen:
        return None
    source = chosen[0]
    key = f"{name}_{source}"
    where = fields.where(key)
    value = given[source]
    if source == "env":
        secret = env.get(value, "")
        if not secret:
            raise FieldError(where, f"environment variable {value} is not set or empty")
        register_secret(secret)
        return Secret(secret, f"env {value}")
    if source == "credential":
        if "/" in value or value in (".", ".."):
            raise FieldError(where, f'expected a credential name, got "{value}"')
        path = credential_path(value, env, where)
    else:
        path = base_dir / value
    try:
        secret = read_secret_file(path, where)
    except CredentialsError as exc:
        raise FieldError("", str(exc)) from None
    register_secret(secret)
    warn_if_readable_by_others(path, where)
    return Secret(secret, f"file {path}")


def credential_path(name: str, env: Mapping[str, str], where: str) -> Path:
    """Where the credential `name` is read from (see the module docstring for the order)."""
    chosen = env.get(ACCELD_CREDENTIALS_DIR, "")
    systemd = env.get(CREDENTIALS_DIRECTORY, "")
    if systemd and not chosen:
        return Path(systemd) / name
    directory = Path(chosen) if chosen else CREDSTORE
    candidates = (directory / name, directory / f"{CREDSTORE_PREFIX}{name}")
    for candidate in candidates:
        if candidate.exists():
            return candidate
    hint = "" if chosen else f"{CREDENTIALS_DIRECTORY} is not set and "
    raise FieldError(
        where,
        f"credential {name} not found: {hint}neither {candidates[0]} nor {candidates[1]} "
        "exists (run under systemd with LoadCredential=, or pass --credentials-dir DIR)",
    )


def warn_if_readable_by_others(path: Path, where: str) -> None:
    """A warning when users other than the owner may read the secret file at `path`."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning(
            "secret file is readable by its group or by other users; chmod 600 it",
            extra={"setting": where, "path": str(path), "mode": f"{stat.S_IMODE(mode):04o}"},
        )
