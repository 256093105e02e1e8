"""Config loading refuses credentials inside URLs, hides every secret from the logs, warns about
readable secret files and clear-text URLs, and exposes the metadata limits (issue 12)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from reconciler.config import ConfigError, load_config
from reconciler.observability.logs import secrets as log_redactor

ROBOT_SECRET = "Qw9-robot-password-for-hardening"
URL_PASSWORD = "pass-in-the-url-77"


def _write(tmp_path: Path, source: str, extra: str = "", mode: int = 0o600) -> Path:
    secret = tmp_path / "robot.secret"
    secret.write_text(ROBOT_SECRET + "\n")
    secret.chmod(mode)
    path = tmp_path / "config.yaml"
    path.write_text(
        f"source:\n{source}  username: robot$acceld\n  password_file: robot.secret\n"
        f"{extra}policies:\n  - name: all\n    formats: [estargz]\n"
    )
    return path


HARBOR = "  kind: harbor\n  url: https://harbor.test\n"


def test_metadata_limits_come_from_the_limits_section(tmp_path: Path) -> None:
    default = load_config(_write(tmp_path, HARBOR), {})
    assert default.limits.max_entry_metadata == 2 << 20
    assert default.limits.max_layer_metadata == 512 << 20
    path = _write(
        tmp_path, HARBOR, "limits:\n  max_entry_metadata: 64KiB\n  max_layer_metadata: 8MiB\n"
    )
    config = load_config(path, {})
    assert (config.limits.max_entry_metadata, config.limits.max_layer_metadata) == (
        64 << 10,
        8 << 20,
    )


def test_a_zero_metadata_limit_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_layer_metadata must be positive"):
        load_config(_write(tmp_path, HARBOR, "limits:\n  max_layer_metadata: 0\n"), {})


@pytest.mark.parametrize(
    "source",
    [
        f"  kind: harbor\n  url: https://robot:{URL_PASSWORD}@harbor.test\n",
        f"  kind: registry\n  url: robot:{URL_PASSWORD}@registry.test:5000\n",
    ],
)
def test_a_source_url_with_credentials_inside_is_refused_without_echoing_them(
    tmp_path: Path, source: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, source), {})
    message = str(caught.value)
    assert "source.url" in message
    assert "user:password@" in message
    assert URL_PASSWORD not in message
    assert "robot:" not in message


def test_every_secret_read_is_registered_with_the_log_redactor(tmp_path: Path) -> None:
    hook = "Bearer webhook-secret-for-hardening"
    path = _write(tmp_path, HARBOR, "server:\n  webhook_secret_env: HOOK\n")
    load_config(path, {"HOOK": hook})
    assert log_redactor.redact(f"robot {ROBOT_SECRET} hook {hook}") == (
        "robot <redacted> hook <redacted>"
    )


def test_a_group_readable_secret_file_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="reconciler.secrets"):
        load_config(_write(tmp_path, HARBOR, mode=0o640), {})
    warned = [r for r in caplog.records if "readable by its group" in r.getMessage()]
    assert warned
    assert warned[0].__dict__["mode"] == "0640"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="reconciler.secrets"):
        load_config(_write(tmp_path, HARBOR, mode=0o600), {})
    assert not caplog.records


@pytest.mark.parametrize(
    ("source", "warned"),
    [
        ("  kind: harbor\n  url: http://harbor.test\n", True),
        ("  kind: harbor\n  url: http://127.0.0.1:8080\n", False),
        ("  kind: harbor\n  url: https://harbor.test\n", False),
        ("  kind: registry\n  url: registry.test:5000\n  plain_http: true\n", True),
        ("  kind: registry\n  url: localhost:5000\n  plain_http: true\n", False),
        ("  kind: registry\n  url: '[::1]:5000'\n  plain_http: true\n", False),
    ],
)
def test_plain_http_to_a_host_that_is_not_loopback_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, source: str, warned: bool
) -> None:
    with caplog.at_level(logging.WARNING, logger="reconciler.config"):
        load_config(_write(tmp_path, source), {})
    found = [r for r in caplog.records if "plain http" in r.getMessage()]
    assert bool(found) == warned
