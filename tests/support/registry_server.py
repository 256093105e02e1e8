"""A real OCI registry (Debian's `docker-registry`, CNCF distribution 2.8) on loopback."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

REGISTRY_BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningRegistry:
    host: str
    root: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_search(self, pattern: str, timeout: float = 5.0) -> re.Match[str] | None:
        """The first match of `pattern` in the access log, waiting for lines still being written."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.log_text())
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_registry(root: Path, auth: dict[str, object] | None = None) -> RunningRegistry:
    """Start a registry storing under `root`; `auth` is the registry's `auth:` config section."""
    if not Path(REGISTRY_BINARY).exists():
        raise RuntimeError(
            "docker-registry is not installed: run `apt-get install docker-registry` "
            "(scripts/test.sh does it)"
        )
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}, "formatter": "text"},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "data")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": "test-registry-http-secret"},
    }
    if auth:
        config["auth"] = auth
    config_path = root / "config.yml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = root / "registry.log"
    log = log_path.open("ab")
    process = subprocess.Popen(
        [REGISTRY_BINARY, "serve", str(config_path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    registry = RunningRegistry(f"127.0.0.1:{port}", root, log_path, process)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited early:\n{registry.log_text()[-2000:]}")
        try:
            answer = requests.get(f"{registry.url}/v2/", timeout=1)
            if answer.status_code in (200, 401):
                return registry
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    registry.stop()
    raise RuntimeError(f"docker-registry did not answer on {registry.url} within 30 s")
