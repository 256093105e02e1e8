"""`acceld convert` against the real registry: what it pushes, what it prints, how it fails."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from harbor_api.version import ACCELD_VERSION
from reconciler.cli import cli
from reconciler.commands.convert import TerminalProgress
from reconciler.conversion.layer_conversion import LayerProgress
from tests.support.auth_registries import start_basic_registry
from tests.support.converted_images import check_converted_manifest, pull_manifest
from tests.support.images import Entry, push_artifact, push_image, push_index
from tests.support.registry_server import RunningRegistry
from tests.support.secret_scan import find_secrets


def _convert(*args: str, env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(cli, ["convert", *args], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_json_output_tells_what_was_pushed_and_the_state_dir_cache_is_reused(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    push_image(registry.url, "cmd/app", "v1")
    args = [
        f"{registry.host}/cmd/app:v1",
        "--plain-http",
        "--output",
        "json",
        "--state-dir",
        str(tmp_path / "state"),
        "--work-dir",
        str(tmp_path / "work"),
    ]

    first = json.loads(_convert(*args))
    second = json.loads(_convert(*args))

    assert first["tags"] == ["v1-esgz"]
    assert pull_manifest(registry.url, "cmd/app", "v1-esgz").digest == first["converted"]["digest"]
    assert first["original"]["digest"] == pull_manifest(registry.url, "cmd/app", "v1").digest
    assert first["pushed"] is True
    layers = first["manifests"][0]["layers"]
    assert [layer["cached"] for layer in layers] == [False, False]
    assert first["bytes_uploaded"] >= sum(layer["size"] for layer in layers)
    assert second["converted"]["digest"] == first["converted"]["digest"]
    assert second["pushed"] is False
    assert second["bytes_uploaded"] == 0
    assert [layer["cached"] for layer in second["manifests"][0]["layers"]] == [True, True]
    assert list((tmp_path / "work").iterdir()) == []


def test_text_output_names_the_tag_and_every_layer(registry: RunningRegistry) -> None:
    pushed = push_image(registry.url, "cmd/text", "v2")

    output = _convert(f"{registry.host}/cmd/text:v2", "--plain-http", "--tag-suffix", "-lazy")

    assert f"{registry.host}/cmd/text@{pushed.digest}" in output
    assert f"-> tag {registry.host}/cmd/text:v2-lazy" in output
    for digest in pushed.layer_digests:
        assert digest[:19] in output
    assert pull_manifest(registry.url, "cmd/text", "v2-lazy").media_type.endswith(
        "manifest.v1+json"
    )


def test_tag_and_digest_reference_converts_the_digest_and_tags_after_the_tag(
    registry: RunningRegistry,
) -> None:
    pushed = push_image(registry.url, "cmd/pinned", "v4")

    out = json.loads(
        _convert(
            f"{registry.host}/cmd/pinned:v4@{pushed.digest}", "--plain-http", "--output", "json"
        )
    )

    assert out["original"]["digest"] == pushed.digest
    assert out["tags"] == ["v4-esgz"]


def test_platform_option_converts_only_those_platforms(registry: RunningRegistry) -> None:
    push_index(registry.url, "cmd/multi", "v1", ["linux/amd64", "linux/arm64/v8"])

    out = json.loads(
        _convert(
            f"{registry.host}/cmd/multi:v1",
            "--plain-http",
            "--platform",
            "linux/arm64",
            "--output",
            "json",
        )
    )

    assert [m["platform"] for m in out["manifests"]] == ["linux/arm64/v8"]


def test_min_chunk_size_packs_small_files_into_shared_members(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    files = [Entry("lib", "dir", mode=0o755)] + [
        Entry(f"lib/m{n:03d}.py", data=b"def f%d(x):\n    return x * %d\n" % (n, n) * (n % 40 + 1))
        for n in range(200)
    ]
    push_image(registry.url, "cmd/packed", "v1", [files])
    ref = f"{registry.host}/cmd/packed:v1"

    alone = json.loads(_convert(ref, "--plain-http", "--output", "json"))
    packed = json.loads(
        _convert(
            ref,
            "--plain-http",
            "--output",
            "json",
            "--tag-suffix",
            "-packed",
            "--min-chunk-size",
            "16KiB",
        )
    )

    original = pull_manifest(registry.url, "cmd/packed", "v1")
    (blob,) = check_converted_manifest(
        registry.url,
        "cmd/packed",
        packed["converted"]["digest"],
        original,
        ACCELD_VERSION,
        tmp_path,
        shared_members=True,
    )
    assert any(entry.get("innerOffset") for entry in blob.toc["entries"])
    assert len(blob.members) < 200 // 4
    (alone_layer,) = alone["manifests"][0]["layers"]
    (packed_layer,) = packed["manifests"][0]["layers"]
    assert packed_layer["size"] < alone_layer["size"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-host/repo:v1"], "is not a registry host"),
        (["127.0.0.1:1/repo:v1", "--platform", "linux"], "expected OS/ARCH[/VARIANT]"),
        (
            ["127.0.0.1:1/repo:v1", "--format", "zstd-chunked"],
            "Invalid value for '--format': 'zstd-chunked'",
        ),
        (
            ["127.0.0.1:1/repo:v1", "--format", "nydus", "--min-chunk-size", "64KiB"],
            "--min-chunk-size applies to estargz only",
        ),
        (["127.0.0.1:1/repo:v1", "--min-chunk-size", "lots"], "expected a size like 512MiB"),
        (["127.0.0.1:1/repo:v1", "--min-chunk-size", "128MiB"], "more than the 64MiB allowed"),
    ],
)
def test_bad_arguments_are_usage_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["convert", *args])
    assert result.exit_code == 2
    assert message in result.output


def _acceld(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["acceld", "convert", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_refusals_and_registry_errors_are_one_line_without_traceback(
    registry: RunningRegistry,
) -> None:
    chart = push_artifact(
        registry.url,
        "cmd/chart",
        "1.0.0",
        "application/vnd.cncf.helm.config.v1+json",
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
        b"chart",
    )

    refused = _acceld(f"{registry.host}/cmd/chart:1.0.0", "--plain-http")
    missing = _acceld(f"{registry.host}/cmd/chart:nope", "--plain-http")

    assert refused.returncode == 1
    assert refused.stderr == (
        f"acceld: error: cmd/chart@{chart.digest}: its artifact type "
        "application/vnd.cncf.helm.config.v1+json is not an image config; "
        "only container images are converted\n"
    )
    assert missing.returncode == 1
    assert missing.stderr.startswith("acceld: error: GET ")
    assert "HTTP 404" in missing.stderr
    assert "Traceback" not in missing.stderr


PASSWORD = "s3cret-Pa55-for-acceld"


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    running = start_basic_registry(tmp_path_factory.mktemp("auth"), {"builder": PASSWORD})
    yield running
    running.stop()


def test_credentials_come_from_the_environment_and_never_show(
    auth_registry: RunningRegistry, tmp_path: Path
) -> None:
    session = requests.Session()
    session.auth = ("builder", PASSWORD)
    push_image(auth_registry.url, "cmd/private", "v1", session=session)
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    env = {
        "ACCELD_REGISTRY_USERNAME": "builder",
        "ACCELD_REGISTRY_PASSWORD_FILE": str(password_file),
        "DOCKER_CONFIG": str(tmp_path / "no-docker-config"),
    }

    anonymous = _acceld(
        f"{auth_registry.host}/cmd/private:v1",
        "--plain-http",
        env={"DOCKER_CONFIG": str(tmp_path / "none")},
    )
    done = _acceld(
        f"{auth_registry.host}/cmd/private:v1", "--plain-http", "--output", "json", env=env
    )

    assert anonymous.returncode == 1
    assert "HTTP 401" in anonymous.stderr
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", "progress is drawn only on a terminal"
    assert json.loads(done.stdout)["tags"] == ["v1-esgz"]
    outputs = {"stdout": done.stdout, "stderr": done.stderr, "refused": anonymous.stderr}
    assert find_secrets(outputs, [PASSWORD]) == []


def test_progress_is_drawn_on_stderr_when_it_is_a_terminal(registry: RunningRegistry) -> None:
    push_image(registry.url, "cmd/tty", "v1")
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run(
            ["acceld", "convert", f"{registry.host}/cmd/tty:v1", "--plain-http"],
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
            timeout=120,
            check=False,
        )
        os.close(terminal)
        drawn = b""
        for _ in range(1000):
            if not select.select([controller], [], [], 0.5)[0]:
                break
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # Linux reports EIO once the terminal side is closed and drained
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(controller)

    assert done.returncode == 0
    assert b"layer 1/2 " in drawn
    assert b": converting" in drawn
    assert b"layer 2/2 " in drawn
    assert "layer 1/2" not in done.stdout


def test_terminal_progress_rewrites_one_line_and_clears_it() -> None:
    stream = io.StringIO()
    progress = TerminalProgress(stream)
    digest = "sha256:" + "ab" * 32
    progress(LayerProgress("linux/arm64", 0, 2, digest, 3 << 20, "converting"))
    progress(LayerProgress("linux/arm64", 1, 2, digest, 10, "cached"))
    progress.clear()

    text = stream.getvalue()
    assert "\rlinux/arm64 layer 1/2 sha256:abababababab (3.0 MiB): converting" in text
    assert "layer 2/2 sha256:abababababab (10 B): cached" in text
    assert "\n" not in text
    assert text.endswith("\r")
