"""Run the real `acceld` command as a subprocess, as an operator would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml


def acceld(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def write_config(path: Path, document: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def registry_config(
    tmp: Path, registry_host: str, policies: list[dict[str, object]], **extra: object
) -> Path:
    """A config for a plain loopback registry, state and work dirs under `tmp`."""
    document: dict[str, object] = {
        "source": {"kind": "registry", "url": registry_host, "plain_http": True},
        "state_dir": str(tmp / "state"),
        "work_dir": str(tmp / "work"),
        "workers": 2,
        "policies": policies,
        **extra,
    }
    return write_config(tmp / "config.yaml", document)
