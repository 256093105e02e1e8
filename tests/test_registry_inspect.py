"""`acceld inspect` run as the real command line against real registries."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harbor_api.oci import OCI_EMPTY, OCI_MANIFEST, Descriptor, Manifest
from harbor_api.registry import RegistryClient
from harbor_api.transport import TlsOptions
from tests.support.auth_registries import start_basic_registry
from tests.support.images import push_blob, push_image, push_index
from tests.support.registry_server import RunningRegistry, free_port

USERS = {"alice": "inspect-Pa55"}


def _acceld(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ACCELD_", "DOCKER_CONFIG"))
    }
    full_env["HOME"] = "/nonexistent"
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
        check=False,
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("acceld: error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    running = start_basic_registry(tmp_path_factory.mktemp("inspect-basic"), USERS)
    yield running
    running.stop()


def test_image_json_has_manifest_config_and_referrers(registry: RunningRegistry) -> None:
    image = push_image(registry.url, "inspect/app", "v1")
    client = RegistryClient(registry.host, tls=TlsOptions(plain_http=True))
    config = push_blob(registry.url, "inspect/app", b"{}")
    referrer = Manifest(
        config=Descriptor(OCI_EMPTY, config, 2),
        layers=(Descriptor(OCI_EMPTY, config, 2),),
        subject=Descriptor(image.media_type, image.digest, image.size),
        annotations={"org.example.note": "hello"},
        artifact_type="application/vnd.example.note",
    )
    pushed = client.push_referrer("inspect/app", referrer)

    result = _acceld("inspect", f"{registry.host}/inspect/app:v1", "--plain-http")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["digest"] == image.digest
    assert found["mediaType"] == OCI_MANIFEST
    assert found["manifest"] == image.manifest
    assert found["config"]["architecture"] == "amd64"
    assert found["config"]["rootfs"]["type"] == "layers"
    assert found["referrers"] == [
        {
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.note",
            "digest": pushed.digest,
            "size": len(referrer.encode()),
            "annotations": {"org.example.note": "hello"},
        }
    ]


def test_index_table_lists_platforms(registry: RunningRegistry) -> None:
    index, children = push_index(
        registry.url, "inspect/multi", "v1", ["linux/amd64", "linux/arm64"]
    )
    result = _acceld(
        "inspect",
        f"{registry.host}/inspect/multi@{index.digest}",
        "--plain-http",
        "--output",
        "text",
    )
    assert result.returncode == 0, result.stderr
    assert f"Digest:      {index.digest}" in result.stdout
    assert "Manifests (2):" in result.stdout
    for child, platform in zip(children, ("linux/amd64", "linux/arm64"), strict=True):
        assert any(
            line.split()[:2] == [platform, child.digest] for line in result.stdout.splitlines()
        )
    assert "Referrers (0):" in result.stdout


def test_invalid_reference_is_one_error_line() -> None:
    line = _one_error_line(_acceld("inspect", "no-registry-host/App:v1"))
    assert "invalid reference 'no-registry-host/App:v1'" in line


def test_unreachable_registry_is_one_error_line() -> None:
    port = free_port()
    line = _one_error_line(_acceld("inspect", f"127.0.0.1:{port}/inspect/app:v1", "--plain-http"))
    assert f"GET http://127.0.0.1:{port}/v2/inspect/app/manifests/v1: connection refused" in line


def test_missing_image_is_one_error_line(registry: RunningRegistry) -> None:
    line = _one_error_line(_acceld("inspect", f"{registry.host}/inspect/none:v9", "--plain-http"))
    assert "HTTP 404" in line


def test_wrong_password_is_one_error_line_without_the_password(
    basic_registry: RunningRegistry, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text("wrong-Pa55word\n")
    env = {"ACCELD_REGISTRY_USERNAME": "alice", "ACCELD_REGISTRY_PASSWORD_FILE": str(secret)}
    result = _acceld("inspect", f"{basic_registry.host}/inspect/app:v1", "--plain-http", env=env)
    line = _one_error_line(result)
    assert "refused the credentials of user 'alice'" in line
    assert "wrong-Pa55word" not in result.stderr


def test_right_password_from_the_environment_works(basic_registry: RunningRegistry) -> None:
    result = _acceld(
        "inspect",
        f"{basic_registry.host}/inspect/none:v1",
        "--plain-http",
        env={"ACCELD_REGISTRY_USERNAME": "alice", "ACCELD_REGISTRY_PASSWORD": "inspect-Pa55"},
    )
    line = _one_error_line(result)
    assert "HTTP 404" in line  # authenticated: the registry now says what is missing


def test_tampered_manifest_is_a_digest_mismatch(registry: RunningRegistry) -> None:
    image = push_image(registry.url, "inspect/tampered", "v1", annotations={"unique": "tampered"})
    hex_digest = image.digest.split(":", 1)[1]
    stored = (
        registry.root
        / "data/docker/registry/v2/blobs/sha256"
        / hex_digest[:2]
        / hex_digest
        / "data"
    )
    stored.write_bytes(stored.read_bytes().replace(b'"tampered"', b'"Tampered"'))
    line = _one_error_line(
        _acceld("inspect", f"{registry.host}/inspect/tampered:v1", "--plain-http")
    )
    assert "hashes to" in line
    assert image.digest in line


def test_missing_ca_bundle_is_one_error_line(registry: RunningRegistry) -> None:
    line = _one_error_line(
        _acceld("inspect", f"{registry.host}/inspect/app:v1", "--ca-bundle", "/nonexistent.pem")
    )
    assert "--ca-bundle /nonexistent.pem: no such file" in line


def test_default_output_is_a_table_on_a_terminal_and_json_otherwise(
    registry: RunningRegistry,
) -> None:
    push_image(registry.url, "inspect/tty", "v1")
    ref = f"{registry.host}/inspect/tty:v1"
    assert json.loads(_acceld("inspect", ref, "--plain-http").stdout)["reference"] == ref
    controller, terminal = pty.openpty()
    try:
        process = subprocess.run(
            [sys.executable, "-m", "reconciler", "inspect", ref, "--plain-http"],
            stdout=terminal,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
        os.close(terminal)
        terminal = -1
        output = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    assert process.returncode == 0, process.stderr
    assert f"Reference:   {ref}" in output.decode()
