"""Real registries that want credentials: htpasswd Basic auth, and Bearer tokens."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.registry_server import RunningRegistry, start_registry
from tests.support.token_server import ISSUER, SERVICE, TokenServer


def start_basic_registry(root: Path, users: dict[str, str]) -> RunningRegistry:
    """A registry with `auth: htpasswd:` (bcrypt entries made by `htpasswd -Bbn`)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for user, password in users.items():
        entry = subprocess.run(
            ["htpasswd", "-Bbn", user, password], check=True, capture_output=True, text=True
        ).stdout.strip()
        lines.append(entry)
    htpasswd = root / "htpasswd"
    htpasswd.write_text("\n".join(lines) + "\n")
    return start_registry(root, auth={"htpasswd": {"realm": "acceld-test", "path": str(htpasswd)}})


def start_token_registry(root: Path, tokens: TokenServer) -> RunningRegistry:
    """A registry with `auth: token:` trusting the certificate `tokens` signs with."""
    return start_registry(
        root,
        auth={
            "token": {
                "realm": tokens.realm,
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(tokens.cert_path),
            }
        },
    )
