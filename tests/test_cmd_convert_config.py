"""`acceld convert --config`: the source's credentials and TLS settings, and `--ca-bundle`."""

from __future__ import annotations

from pathlib import Path

from tests.support.acceld_process import acceld, write_config
from tests.support.images import push_image
from tests.support.registry_server import RunningRegistry


def _config(tmp_path: Path, url: str) -> Path:
    return write_config(
        tmp_path / "config.yaml",
        {"source": {"kind": "registry", "url": url}, "policies": []},
    )


def test_convert_takes_plain_http_from_the_config(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    push_image(registry.url, "convcfg/app", "v1")
    config = _config(tmp_path, f"http://{registry.host}")
    done = acceld("convert", f"{registry.host}/convcfg/app:v1", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert f"-> tag {registry.host}/convcfg/app:v1-esgz" in done.stdout


def test_convert_refuses_a_reference_on_another_registry_than_the_config(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, "http://127.0.0.1:5000")
    done = acceld("convert", "other.example.com/a/b:v1", "--config", str(config))
    assert done.returncode == 2
    assert "other.example.com is not the registry of the config's source" in done.stderr


def test_convert_ca_bundle_must_be_a_file(tmp_path: Path) -> None:
    done = acceld("convert", "r.example.com/a/b:v1", "--ca-bundle", str(tmp_path / "no.pem"))
    assert done.returncode == 2
    assert "--ca-bundle" in done.stderr
