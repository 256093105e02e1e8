"""Find secrets where they must never be: logs, error messages, metrics, reprs, command lines.

A secret counts as found in any of the forms a leak takes: as is, JSON-escaped, URL-encoded,
or base64 (standard or URL-safe, alone or inside a longer base64 text such as the `user:secret`
of a Basic `Authorization` header, whatever the user).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

MIN_SECRET_LENGTH = 6
_EXEC_WAIT_SECONDS = 2.0


@dataclass(frozen=True)
class SecretHit:
    source: str
    form: str
    offset: int

    def __str__(self) -> str:
        return f"{self.source}: a secret, {self.form}, at offset {self.offset}"


def secret_forms(secret: str) -> dict[str, str]:
    """Form name → text to look for. Base64 forms are the part of the encoding that stays the
    same whatever precedes the secret: one per alignment of its first byte in a 3-byte group."""
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"secret of {len(secret)} characters: at least {MIN_SECRET_LENGTH} are needed "
            "for a search that does not match everywhere"
        )
    forms = {
        "as is": secret,
        "JSON-escaped": json.dumps(secret)[1:-1],
        "URL-encoded": quote(secret, safe=""),
        "form-encoded": quote_plus(secret, safe=""),
    }
    raw = secret.encode("utf-8")
    for shift in range(3):
        aligned = raw[shift:]
        whole_groups = aligned[: len(aligned) // 3 * 3]
        if len(whole_groups) < 3:
            continue
        forms[f"base64 (from byte {shift})"] = base64.b64encode(whole_groups).decode()
        forms[f"URL-safe base64 (from byte {shift})"] = base64.urlsafe_b64encode(
            whole_groups
        ).decode()
    return forms


def find_secrets(texts: Mapping[str, str], secrets: Iterable[str]) -> list[SecretHit]:
    """Every place a secret shows in `texts` (source name → text), in any form it leaks in."""
    needles: dict[str, str] = {}
    for secret in secrets:
        for form, needle in secret_forms(secret).items():
            needles.setdefault(needle, form)
    hits = []
    for source, text in texts.items():
        for needle, form in needles.items():
            offset = text.find(needle)
            if offset >= 0:
                hits.append(SecretHit(source, form, offset))
    return hits


def command_line(pid: int) -> list[str]:
    """The arguments of process `pid` as the kernel shows them to every local user.

    The environment is deliberately not read: it is the channel secrets are allowed to take
    (along with files), and only the process owner can see it.
    """
    # A process caught in the middle of exec shows an empty command line for a moment.
    deadline = time.monotonic() + _EXEC_WAIT_SECONDS
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    while not raw and time.monotonic() < deadline:
        time.sleep(0.01)
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return [arg.decode("utf-8", "replace") for arg in raw.split(b"\0") if arg]


def find_secrets_in_command_line(pid: int, secrets: Iterable[str]) -> list[SecretHit]:
    arguments = command_line(pid)
    return find_secrets({f"argv[{i}] of pid {pid}": a for i, a in enumerate(arguments)}, secrets)
