"""`acceld serve` that cannot start says why in one line and exits 1, before serving anything."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.support.acceld_process import acceld
from tests.support.daemon_process import SECRETS_ENV, edit_config, serve_config


def config_for(tmp_path: Path, listen: str) -> Path:
    return serve_config(
        tmp_path / "config.yaml",
        "http://127.0.0.1:9",
        "robot$acceld",
        [{"name": "all", "formats": ["estargz"]}],
        listen=listen,
    )


def test_broken_config_is_one_error_line_naming_file_and_field(tmp_path: Path) -> None:
    config = config_for(tmp_path, "127.0.0.1:9")
    edit_config(config, workers=0)
    done = acceld("serve", "--config", str(config), env=SECRETS_ENV, timeout=60)
    assert done.returncode == 1
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
