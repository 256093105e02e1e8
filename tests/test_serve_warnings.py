"""`acceld serve` says at start what its listener exposes: no TLS off loopback, no webhook
secret (every webhook would be refused with 401)."""

from __future__ import annotations

from pathlib import Path

from reconciler.commands.serve import exposure_warnings
from reconciler.config import ServerConfig
from reconciler.secrets import Secret
from tests.support.acceld_process import registry_config
from tests.support.daemon_process import DaemonProcess
from tests.support.registry_server import RunningRegistry, free_port

SECRET = Secret("Bearer x", "env X")


def test_no_warning_on_loopback_with_a_webhook_secret() -> None:
    assert exposure_warnings(ServerConfig("127.0.0.1", 8080, SECRET)) == []


def test_a_public_address_without_tls_is_warned_about() -> None:
    (warning,) = exposure_warnings(ServerConfig("0.0.0.0", 8080, SECRET))
    assert warning.startswith("listening on an address that is not loopback without TLS")


def test_tls_silences_the_public_address_warning() -> None:
    server = ServerConfig("0.0.0.0", 8443, SECRET, Path("c.pem"), Path("k.pem"))
    assert exposure_warnings(server) == []


def test_serve_without_a_webhook_secret_warns_at_start(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    config = registry_config(
        tmp_path,
        registry.host,
        [{"name": "all", "formats": ["estargz"]}],
        server={"listen": listen},
    )
    with DaemonProcess(config, listen) as daemon:
        daemon.wait_ready()
        log = daemon.log_text()
    assert "no server.webhook_secret: every webhook is refused with 401" in log
    assert "not loopback" not in log
