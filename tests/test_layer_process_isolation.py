"""The converter child as an attacker inside it, or beside it, would find it (issue 12).

The child parses hostile tar, gzip and zstd: it must not hold the daemon's secrets, must convert
even where a sandbox refuses it a lower priority, and must convert exactly the blob the parent
downloaded, whatever another local user does to the work area meanwhile. A `sitecustomize.py`
on PYTHONPATH runs inside the child before its `main`: it reports what the child sees, or plays
the part of a sandbox or of a local attacker at that moment.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import threading
from pathlib import Path

import pytest

from converters.estargz import EstargzOptions, convert_layer
from harbor_api.errors import DigestMismatch
from reconciler.controller.reconcile import is_transient
from reconciler.conversion import layer_process
from reconciler.conversion.layer_process import convert_layer_file
from tests.support.images import Entry, sample_layers, sha256, tar_bytes

SECRETS = {
    "ACCELD_HARBOR_PASSWORD": "harbor-password-5781",
    "ACCELD_WEBHOOK_SECRET": "webhook-secret-2214",
    "ACCELD_REGISTRY_PASSWORD": "registry-password-9902",
    "CREDENTIALS_DIRECTORY": "/run/credentials/acceld.service",
    "AWS_SECRET_ACCESS_KEY": "any-other-variable",
}


def _inside_child(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, code: str) -> None:
    """Run `code` in every Python process started from here on, before its main module."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(code)
    inherited = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", f"{site}{os.pathsep}{inherited}" if inherited else str(site))


def _layer(tmp_path: Path, name: str = "source", entries: list[Entry] | None = None) -> Path:
    source = tmp_path / name
    source.write_bytes(gzip.compress(tar_bytes(entries or sample_layers()[0]), mtime=0))
    return source


def _converted_here(source: Path, options: EstargzOptions, work: Path) -> bytes:
    expected = io.BytesIO()
    with source.open("rb") as src:
        convert_layer(src, expected, options, work)
    return expected.getvalue()


def test_the_converter_child_gets_no_secret_of_the_parent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    seen = tmp_path / "environ.json"
    _inside_child(
        monkeypatch,
        tmp_path,
        "import json, os\n"
        f"with open({str(seen)!r}, 'w') as out:\n"
        "    json.dump(dict(os.environ), out)\n",
    )
    source = _layer(tmp_path)
    work = tmp_path / "work"
    work.mkdir()

    convert_layer_file(source, work / "out", "estargz", EstargzOptions(), work, timeout=60)

    environment = json.loads(seen.read_text())
    assert not set(SECRETS) & set(environment)
    assert not any(value in json.dumps(environment) for value in SECRETS.values())
    assert environment["LC_ALL"] == "C.UTF-8"
    assert "PYTHONPATH" in environment
    allowed = {"PATH", "LANG", "PYTHONPATH", "PYTHONHOME", "PYTHONUNBUFFERED"}
    assert {name for name in environment if not name.startswith("LC_")} <= allowed


def test_a_refused_nice_is_logged_once_and_every_layer_still_converts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _inside_child(
        monkeypatch,
        tmp_path,
        "import errno, os\n"
        "def refused(increment):\n"
        "    raise PermissionError(errno.EPERM, 'Operation not permitted')\n"
        "os.nice = refused\n",
    )
    monkeypatch.setattr(layer_process, "_niceness_warned", threading.Event())
    source = _layer(tmp_path)
    options = EstargzOptions(workers=1)
    caplog.set_level(logging.WARNING, logger=layer_process.__name__)

    for attempt in range(2):
        work = tmp_path / f"work-{attempt}"
        work.mkdir()
        convert_layer_file(source, work / "out", "estargz", options, work, timeout=60)
        assert (work / "out").read_bytes() == _converted_here(source, options, work)

    warnings = [r for r in caplog.records if "priority" in r.getMessage()]
    assert len(warnings) == 1
    assert "Operation not permitted" in str(warnings[0].__dict__["error"])


def test_a_source_that_is_not_the_downloaded_blob_is_not_converted(tmp_path: Path) -> None:
    source = _layer(tmp_path)
    downloaded = sha256(gzip.compress(b"what the registry served", mtime=0))
    work = tmp_path / "work"
    work.mkdir()

    with pytest.raises(DigestMismatch) as raised:
        convert_layer_file(
            source,
            work / "out",
            "estargz",
            EstargzOptions(),
            work,
            timeout=60,
            source_digest=downloaded,
        )

    assert f"hashes to {sha256(source.read_bytes())}, not {downloaded}" in str(raised.value)
    assert is_transient(raised.value)


def test_a_layer_directory_swapped_while_the_child_starts_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The attack of issue 12: another user renames the `layer-*` directory away and puts one
    of their own, with their own source, in its place. The child converts what the parent
    downloaded and writes where the parent reads, through descriptors opened before."""
    layer_dir = tmp_path / "layer-x"
    layer_dir.mkdir()
    source = _layer(layer_dir)
    evil = _layer(tmp_path, "evil", [Entry("etc/passwd", data=b"root::0:0::/:/bin/sh\n")])
    _inside_child(
        monkeypatch,
        tmp_path,
        "import os, shutil\n"
        f"os.rename({str(layer_dir)!r}, {str(tmp_path / 'moved')!r})\n"
        f"os.mkdir({str(layer_dir)!r})\n"
        f"shutil.copy({str(evil)!r}, {str(layer_dir / 'source')!r})\n",
    )
    options = EstargzOptions(workers=1)
    expected = _converted_here(source, options, tmp_path)

    converted = convert_layer_file(
        source,
        layer_dir / "converted",
        "estargz",
        options,
        layer_dir,
        timeout=60,
        source_digest=sha256(source.read_bytes()),
    )

    assert (tmp_path / "moved" / "converted").read_bytes() == expected
    assert converted.digest == sha256(expected)
    assert sorted(p.name for p in layer_dir.iterdir()) == ["source"]
