"""Errors that retrying can never fix are quarantined with their reason, not retried with backoff
for ever (issue 12): an image config over the 8 MiB cap, an image config nested too deep to
parse. And the command line never prints a Python traceback, whatever goes wrong."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest

from harbor_api.blobs import BlobTooLarge
from harbor_api.errors import PermanentError
from harbor_api.oci import parse_manifest
from reconciler import cli
from reconciler.controller.reconcile import is_terminal
from reconciler.conversion.config_rewrite import config_platform, rewrite_config
from tests.support.acceld_process import acceld, registry_config
from tests.support.bad_images import GZIP_LAYER
from tests.support.daemon_process import estargz_policy
from tests.support.images import (
    OCI_CONFIG,
    OCI_MANIFEST,
    Entry,
    image_config,
    push_blob,
    push_manifest,
    sha256,
    tar_bytes,
)
from tests.support.registry_server import RunningRegistry

DEPTH = 100_000


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _push_with_config(url: str, repository: str, config: bytes) -> str:
    tar = tar_bytes([Entry("hello", data=b"hello\n")])
    layer = gzip.compress(tar, mtime=0)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": push_blob(url, repository, config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": GZIP_LAYER,
                "digest": push_blob(url, repository, layer),
                "size": len(layer),
            }
        ],
    }
    return push_manifest(url, repository, "v1", json.dumps(manifest).encode(), OCI_MANIFEST)


def _quarantined(config: Path, key: str) -> str:
    """The reason `key` was quarantined by a backfill, not left to retry with backoff."""
    refused = acceld("backfill", "--config", str(config), "--output", "json")
    assert refused.returncode == 1, refused.stderr
    (result,) = json.loads(refused.stdout)["results"]
    assert (result["key"], result["ok"]) == (key, False)
    status = json.loads(acceld("status", "--config", str(config), "--output", "json").stdout)
    reasons = {q["key"]: q["reason"] for q in status["quarantined"]}
    assert key in reasons, status
    return str(reasons[key])


def test_an_image_config_over_the_cap_is_quarantined(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    document = image_config([sha256(tar_bytes([Entry("hello", data=b"hello\n")]))])
    document["padding"] = "x" * (9 << 20)
    digest = _push_with_config(registry.url, "capsize/config", json.dumps(document).encode())
    config = registry_config(tmp_path, registry.host, [estargz_policy("capsize", "capsize")])

    reason = _quarantined(config, f"capsize/config@{digest}#estargz")

    assert "BlobTooLarge" in reason
    assert f"is larger than {8 << 20} bytes" in reason


def test_an_image_config_nested_too_deep_is_quarantined(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    document = image_config([sha256(tar_bytes([Entry("hello", data=b"hello\n")]))])
    raw = json.dumps(document)[:-1] + f', "deep": {_deep(DEPTH)}}}'
    digest = _push_with_config(registry.url, "capdeep/config", raw.encode())
    config = registry_config(tmp_path, registry.host, [estargz_policy("capdeep", "capdeep")])

    reason = _quarantined(config, f"capdeep/config@{digest}#estargz")

    assert "image config: JSON nested too deep to parse" in reason


def test_deep_json_is_a_terminal_error_wherever_it_is_parsed() -> None:
    deep = _deep(DEPTH).encode()
    for parse in (
        config_platform,
        lambda raw: rewrite_config(raw, []),
        lambda raw: parse_manifest(raw, OCI_MANIFEST),
    ):
        with pytest.raises(PermanentError, match="nested too deep"):
            parse(deep)
    assert is_terminal(BlobTooLarge("blob sha256:… in r is larger than 8 bytes"))


def test_an_unexpected_error_is_one_line_and_exit_1_with_the_traceback_at_debug_level(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(**_: object) -> None:
        raise KeyError("rootfs")

    monkeypatch.setattr(cli.cli, "main", broken)
    caplog.set_level(logging.DEBUG, logger=cli.__name__)

    with pytest.raises(SystemExit) as exited:
        cli.main()

    assert exited.value.code == 1
    assert capsys.readouterr().err.splitlines() == [
        "acceld: error: KeyError: 'rootfs' (unexpected; the traceback is logged at debug level)"
    ]
    (record,) = caplog.records
    assert record.levelno == logging.DEBUG
    assert record.exc_info is not None
