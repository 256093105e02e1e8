"""A registry source given as `http://HOST` or `https://HOST`, and the error for HTTPS to a
registry that only speaks plain HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from harbor_api.errors import Unreachable
from harbor_api.registry import RegistryClient
from harbor_api.transport import NO_RETRY, TlsOptions
from reconciler.config import ConfigError, RegistrySettings, load_config
from tests.support.registry_server import RunningRegistry


def _load(tmp_path: Path, source: str) -> RegistrySettings:
    path = tmp_path / "config.yaml"
    path.write_text(f"source: {{kind: registry, {source}}}\npolicies: []\n")
    settings = load_config(path, {}).source
    assert isinstance(settings, RegistrySettings)
    return settings


@pytest.mark.parametrize(
    ("source", "host", "plain_http"),
    [
        ("url: 'http://127.0.0.1:5000'", "127.0.0.1:5000", True),
        ("url: 'https://registry.example.com'", "registry.example.com", False),
        ("url: 'registry.example.com:443'", "registry.example.com:443", False),
        ("url: '127.0.0.1:5000', plain_http: true", "127.0.0.1:5000", True),
    ],
)
def test_the_registry_url_scheme_sets_plain_http(
    tmp_path: Path, source: str, host: str, plain_http: bool
) -> None:
    settings = _load(tmp_path, source)
    assert settings.host == host
    assert settings.tls.plain_http is plain_http


def test_a_scheme_that_contradicts_plain_http_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, "url: 'https://registry.example.com', plain_http: true")
    assert str(caught.value).endswith("source.plain_http: is true but url is https://")


def test_a_registry_url_with_a_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, "url: 'https://registry.example.com/v2'")
    assert "expected HOST[:PORT], http://HOST[:PORT] or https://HOST[:PORT]" in str(caught.value)


def test_https_to_a_plain_http_registry_names_plain_http(registry: RunningRegistry) -> None:
    client = RegistryClient(registry.host, tls=TlsOptions(), retry=NO_RETRY)
    with pytest.raises(Unreachable) as caught:
        client.ping()
    assert "plain_http" in str(caught.value)
