"""The clients a loaded config builds reach real servers with the configured credentials."""

from pathlib import Path

import pytest

from harbor_api.errors import Unauthorized
from reconciler.config import HarborSettings, RegistrySettings, load_config
from reconciler.service.clients import harbor_client, registry_client
from tests.support.harbor_emulator import ADMIN, ADMIN_PASSWORD, RunningHarbor
from tests.support.images import push_image
from tests.support.registry_server import RunningRegistry

pytest_plugins = ("tests.support.harbor_fixtures",)


def _harbor_config(tmp_path: Path, url: str, password: str) -> Path:
    (tmp_path / "admin.secret").write_text(password + "\n")
    path = tmp_path / "config.yaml"
    path.write_text(
        f"source:\n  kind: harbor\n  url: {url}\n  username: {ADMIN}\n"
        "  password_file: admin.secret\npolicies: []\n"
    )
    return path


def test_harbor_source_clients_use_the_robot_secret_from_its_file(
    tmp_path: Path, harbor: RunningHarbor
) -> None:
    source = load_config(_harbor_config(tmp_path, harbor.url, ADMIN_PASSWORD), {}).source
    assert isinstance(source, HarborSettings)
    assert source.tls.plain_http
    assert harbor_client(source).systeminfo().harbor_version
    registry_client(source).ping()


def test_harbor_source_with_a_wrong_secret_is_refused(
    tmp_path: Path, harbor: RunningHarbor
) -> None:
    source = load_config(_harbor_config(tmp_path, harbor.url, "wrong"), {}).source
    assert isinstance(source, HarborSettings)
    with pytest.raises(Unauthorized):
        harbor_client(source).systeminfo()


def test_registry_source_client_lists_the_plain_http_registry(
    tmp_path: Path, registry: RunningRegistry
) -> None:
    push_image(registry.url, "configsrc/app", "v1")
    path = tmp_path / "config.yaml"
    path.write_text(
        f"source:\n  kind: registry\n  url: {registry.host}\n  plain_http: true\npolicies: []\n"
    )
    source = load_config(path, {}).source
    assert isinstance(source, RegistrySettings)
    client = registry_client(source)
    assert "configsrc/app" in list(client.catalog())
    assert list(client.list_tags("configsrc/app")) == ["v1"]
