"""`python -m reconciler serve` as a real subprocess: start, wait for /readyz, read its log and
its /metrics, signal it, stop it. Every wait is bounded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TypeVar
from urllib.parse import quote

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.harbor_emulator import ADMIN, ADMIN_PASSWORD, RunningHarbor, harbor_session
from tests.support.images import PushedImage
from tests.support.registry_server import free_port
from tests.test_backfill_harbor import PERMISSIONS

T = TypeVar("T")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def wait_until(
    condition: Callable[[], T | None], timeout: float, what: str, *, interval: float = 0.1
) -> T:
    """The first truthy value of `condition()` within `timeout` seconds, else AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def parse_samples(text: str) -> Samples:
    """(sample name, its labels) → value, for every sample of a Prometheus text exposition."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class DaemonProcess:
    """One `acceld serve` process, its stdout collected line by line as it comes."""

    def __init__(
        self,
        config: Path,
        listen: str,
        *,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.url = f"http://{listen}"
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "serve", "--config", str(config), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
        assert self.process.stdout is not None
        self._reader = threading.Thread(
            target=self._collect, args=(self.process.stdout,), name="daemon-log", daemon=True
        )
        self._reader.start()

    def _collect(self, stream: IO[str]) -> None:
        for line in stream:
            with self._lock:
                self._lines.append(line)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def wait_for_log(self, text: str, timeout: float = 20.0, *, after: int = 0) -> str:
        """The first log line containing `text`, among the lines past the first `after`."""

        def found() -> str | None:
            with self._lock:
                return next((line for line in self._lines[after:] if text in line), None)

        return self._wait(found, timeout, f"{text!r} in the daemon log")

    def _wait(
        self, condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1
    ) -> T:
        try:
            return wait_until(condition, timeout, what, interval=interval)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the daemon log:\n{self.log_text()}") from None

    def log_line_count(self) -> int:
        with self._lock:
            return len(self._lines)

    def wait_ready(self, timeout: float = 20.0) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"acceld serve exited with {self.process.returncode}:\n{self.log_text()}"
                )
            try:
                return requests.get(self.url + "/readyz", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        self._wait(ready, timeout, "/readyz of acceld serve")

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=5)

    def metrics_text(self) -> str:
        answer = self.get("/metrics")
        answer.raise_for_status()
        return answer.text

    def samples(self) -> Samples:
        return parse_samples(self.metrics_text())

    def wait_for_sample(
        self, name: str, at_least: float, timeout: float = 30.0, **labels: str
    ) -> Samples:
        def reached() -> Samples | None:
            samples = self.samples()
            return samples if sample(samples, name, **labels) >= at_least else None

        return self._wait(reached, timeout, f"{name}{labels} >= {at_least}", interval=0.2)

    def send(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            self._reader.join(timeout=5)
        return code

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then the exit status; SIGKILL (and AssertionError) if it does not exit."""
        if self.process.poll() is None:
            self.send(signal.SIGTERM)
        try:
            return self.wait_exit(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError(
                f"acceld serve ignored SIGTERM for {timeout:g} s:\n{self.log_text()}"
            ) from None

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


ROBOT_SECRET = "robot-secret-of-the-serve-tests"
WEBHOOK_SECRET = "Bearer webhook-secret-of-the-serve-tests"
ROBOT_SECRET_ENV = "ACCELD_TEST_ROBOT_SECRET"
WEBHOOK_SECRET_ENV = "ACCELD_TEST_WEBHOOK_SECRET"
SECRETS_ENV = {ROBOT_SECRET_ENV: ROBOT_SECRET, WEBHOOK_SECRET_ENV: WEBHOOK_SECRET}


def estargz_policy(name: str, *projects: str) -> dict[str, object]:
    return {"name": name, "projects": list(projects), "formats": ["estargz"]}


def serve_config(
    path: Path,
    harbor_url: str,
    robot: str,
    policies: list[dict[str, object]],
    *,
    listen: str,
    incremental_interval: str = "1h",
    workers: int = 1,
    secrets_in_files: bool = False,
) -> Path:
    """Write a serve config over Harbor (full scan only at start). The robot secret and the
    webhook secret never sit in the file: they come from the environment (`SECRETS_ENV`), or
    with `secrets_in_files` from `secret_files(path)`, written here with the same values."""
    robot_file, webhook_file = secret_files(path)
    if secrets_in_files:
        robot_file.write_text(ROBOT_SECRET + "\n")
        webhook_file.write_text(WEBHOOK_SECRET + "\n")
        robot_key, webhook_key = (
            {"password_file": robot_file.name},
            {"webhook_secret_file": webhook_file.name},
        )
    else:
        robot_key = {"password_env": ROBOT_SECRET_ENV}
        webhook_key = {"webhook_secret_env": WEBHOOK_SECRET_ENV}
    document: dict[str, object] = {
        "source": {"kind": "harbor", "url": harbor_url, "username": robot, **robot_key},
        "state_dir": str(path.parent / "state"),
        "work_dir": str(path.parent / "work"),
        "workers": workers,
        "scan": {"full_interval": "1h", "incremental_interval": incremental_interval},
        "server": {"listen": listen, **webhook_key},
        "policies": policies,
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def secret_files(config: Path) -> tuple[Path, Path]:
    """Where a config written with `secrets_in_files` reads the robot and webhook secrets."""
    return config.parent / "robot.secret", config.parent / "webhook.secret"


def add_webhook(harbor: RunningHarbor, admin: requests.Session, project: str, url: str) -> None:
    """Harbor's webhook policy on `project`, to acceld at `url`, as `acceld harbor setup` does."""
    policy = {
        "name": "acceld",
        "enabled": True,
        "event_types": ["PUSH_ARTIFACT", "DELETE_ARTIFACT"],
        "targets": [
            {
                "type": "http",
                "address": url + "/webhooks/harbor",
                "auth_header": WEBHOOK_SECRET,
                "payload_format": "Default",
            }
        ],
    }
    answer = admin.post(f"{harbor.url}/api/v2.0/projects/{project}/webhook/policies", json=policy)
    assert answer.status_code == 201, answer.text


def prepare_harbor(
    harbor: RunningHarbor, admin: requests.Session, projects: Sequence[str], listen: str
) -> str:
    """Projects with a webhook to `listen`, and acceld's robot; returns the robot's name."""
    for project in projects:
        harbor.emulator.state.add_project(project)
        add_webhook(harbor, admin, project, f"http://{listen}")
    return harbor.emulator.state.add_robot("acceld", ROBOT_SECRET, PERMISSIONS)


def accessories_of(harbor: RunningHarbor, image: PushedImage) -> list[str]:
    """Digests of the accessories Harbor's REST API lists for `image`, as its UI shows them."""
    project, _, path = image.repository.partition("/")
    # Harbor wants the `/` of a repository path encoded twice.
    encoded = quote(quote(path, safe=""), safe="")
    url = (
        f"{harbor.url}/api/v2.0/projects/{project}/repositories/{encoded}"
        f"/artifacts/{image.digest}/accessories"
    )
    with harbor_session(ADMIN, ADMIN_PASSWORD) as admin:
        answer = admin.get(url, params={"page_size": "100"}, timeout=10)
    answer.raise_for_status()
    return [item["digest"] for item in answer.json()]


def loopback_listen() -> str:
    return f"127.0.0.1:{free_port()}"


@dataclass(frozen=True)
class ServeSetup:
    """A config at `config` for a daemon listening at `listen`, which Harbor's webhooks name."""

    config: Path
    listen: str

    def start(
        self, *, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
    ) -> DaemonProcess:
        """A daemon with the secrets in its environment, once /readyz answers 200."""
        daemon = DaemonProcess(
            self.config, self.listen, env={**SECRETS_ENV, **(env or {})}, args=args
        )
        try:
            daemon.wait_ready()
        except BaseException:
            daemon.__exit__(None, None, None)
            raise
        return daemon


def set_up_serving(
    harbor: RunningHarbor,
    admin: requests.Session,
    directory: Path,
    projects: Sequence[str],
    policies: list[dict[str, object]],
    *,
    source_url: str = "",
    incremental_interval: str = "1h",
    workers: int = 1,
    secrets_in_files: bool = False,
) -> ServeSetup:
    """`projects` with webhooks to a free loopback port, acceld's robot, and a config in
    `directory` reaching Harbor at `source_url` (default: the emulator itself)."""
    listen = loopback_listen()
    robot = prepare_harbor(harbor, admin, projects, listen)
    config = serve_config(
        directory / "config.yaml",
        source_url or harbor.url,
        robot,
        policies,
        listen=listen,
        incremental_interval=incremental_interval,
        workers=workers,
        secrets_in_files=secrets_in_files,
    )
    return ServeSetup(config, listen)


def edit_config(config: Path, **settings: object) -> None:
    """Replace top-level settings of the config file, e.g. `policies=[...]`."""
    document = yaml.safe_load(config.read_text())
    document.update(settings)
    config.write_text(yaml.safe_dump(document, sort_keys=False))
