"""`*_credential` secrets outside systemd: `--credentials-dir`, else `/etc/credstore`."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.fields import FieldError, Fields
from reconciler import secrets
from reconciler.secrets import read_secret
from tests.support.acceld_process import acceld, registry_config
from tests.support.registry_server import RunningRegistry

POLICY = [{"name": "all", "formats": ["estargz"]}]


def _fields() -> Fields:
    return Fields({"password_credential": "harbor-robot"})


@pytest.mark.parametrize("file_name", ["harbor-robot", "acceld.harbor-robot"])
def test_a_credential_falls_back_to_the_credstore_as_systemd_or_the_shipped_unit_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file_name: str
) -> None:
    monkeypatch.setattr(secrets, "CREDSTORE", tmp_path)
    (tmp_path / file_name).write_text("s3cret\n")
    secret = read_secret(_fields(), "password", {}, tmp_path)
    assert secret is not None
    assert secret.reveal() == "s3cret"


def test_systemds_credentials_directory_comes_before_the_credstore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(secrets, "CREDSTORE", tmp_path / "store")
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "harbor-robot").write_text("old\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "harbor-robot").write_text("loaded\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path / "run")}
    secret = read_secret(_fields(), "password", env, tmp_path)
    assert secret is not None
    assert secret.reveal() == "loaded"


def test_a_missing_credential_names_every_place_it_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(secrets, "CREDSTORE", tmp_path)
    with pytest.raises(FieldError) as caught:
        read_secret(_fields(), "password", {}, tmp_path)
    assert str(caught.value) == (
        f"password_credential: credential harbor-robot not found: CREDENTIALS_DIRECTORY is not "
        f"set and neither {tmp_path}/harbor-robot nor {tmp_path}/acceld.harbor-robot exists "
        "(run under systemd with LoadCredential=, or pass --credentials-dir DIR)"
    )


def test_check_reads_credentials_from_the_credentials_dir_flag(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    config = registry_config(
        tmp_path,
        registry.host,
        POLICY,
        server={"listen": "127.0.0.1:8099", "webhook_secret_credential": "webhook-secret"},
    )
    store = tmp_path / "credstore"
    store.mkdir()
    (store / "acceld.webhook-secret").write_text("Bearer hook\n")
    (store / "acceld.webhook-secret").chmod(0o600)
    env = {"CREDENTIALS_DIRECTORY": ""}
    without = acceld("check", "--config", str(config), env=env)
    assert without.returncode == 2, without.stderr
    assert "credential webhook-secret not found" in without.stderr
    found = acceld("check", "--config", str(config), "--credentials-dir", str(store), env=env)
    assert found.returncode == 0, found.stderr
    assert "Bearer hook" not in found.stdout + found.stderr
