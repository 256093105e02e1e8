"""`acceld serve` that cannot start says why in one line and exits 1, before serving anything."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.support.acceld_process import acceld
from tests.support.daemon_process import (
    SECRETS_ENV,
    DaemonProcess,
    edit_config,
    loopback_listen,
    serve_config,
)


def config_for(tmp_path: Path, listen: str, harbor_url: str = "http://127.0.0.1:9") -> Path:
    return serve_config(
        tmp_path / "config.yaml",
        harbor_url,
        "robot$acceld",
        [{"name": "all", "formats": ["estargz"]}],
        listen=listen,
    )


def test_broken_config_is_one_error_line_naming_file_and_field(tmp_path: Path) -> None:
    config = config_for(tmp_path, "127.0.0.1:9")
    edit_config(config, workers=0)
    done = acceld("serve", "--config", str(config), env=SECRETS_ENV, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"acceld: error: {config}: workers")
    assert not (tmp_path / "state").exists()


def test_listen_address_in_use_is_one_error_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        done = acceld("serve", "--config", str(config_for(tmp_path, listen)), env=SECRETS_ENV)
    assert done.returncode == 1
    assert (
        done.stderr.splitlines()[-1]
        == f"acceld: error: cannot listen on {listen}: Address already in use"
    )
    assert "Traceback" not in done.stdout + done.stderr


def test_unreachable_harbor_keeps_the_daemon_up_but_not_ready(tmp_path: Path) -> None:
    listen = loopback_listen()
    with DaemonProcess(config_for(tmp_path, listen), listen, env=SECRETS_ENV) as daemon:
        daemon.wait_for_log('"scan failed"', timeout=60)
        ready = daemon.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["failing"] == ["source_reachable"]
        assert daemon.get("/healthz").status_code == 200
        assert daemon.stop() == 0


def test_sigterm_exits_promptly_while_harbor_hangs(tmp_path: Path) -> None:
    listen = loopback_listen()
    with socket.socket() as silent:
        # Connections complete in the backlog and then nothing is ever answered.
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        harbor_url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        config = config_for(tmp_path, listen, harbor_url)
        with DaemonProcess(
            config, listen, env=SECRETS_ENV, args=("--grace-seconds", "1")
        ) as daemon:
            daemon.wait_for_log("msg=serving")
            time.sleep(1)
            started = time.monotonic()
            assert daemon.stop(timeout=60) == 0
            seconds = time.monotonic() - started
    assert seconds < 1 + 4, daemon.log_text()
    assert "Traceback" not in daemon.log_text()
