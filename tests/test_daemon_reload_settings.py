"""Which changed settings a SIGHUP reload cannot apply (pure: two loaded configs compared)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.config import Config, ScanConfig, load_config
from reconciler.service.daemon import settings_needing_restart
from tests.support.acceld_process import registry_config


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = registry_config(tmp_path, "127.0.0.1:5000", [{"name": "all", "formats": ["estargz"]}])
    return load_config(path)


def test_same_config_needs_no_restart(config: Config) -> None:
    assert settings_needing_restart(config, replace(config)) == []


def test_policy_source_and_limit_changes_are_applied_by_a_reload(config: Config) -> None:
    loaded = replace(
        config,
        policies=(),
        limits=replace(config.limits, max_entries=10),
        server=replace(config.server, max_body_bytes=4096, external_url="https://x.example"),
        scan=replace(config.scan, safety_margin_seconds=1),
    )
    assert settings_needing_restart(config, loaded) == []


def test_listener_directories_workers_and_schedule_need_a_restart(config: Config) -> None:
    loaded = replace(
        config,
        state_dir=config.state_dir / "other",
        work_dir=config.work_dir / "other",
        work_dir_budget_bytes=config.work_dir_budget_bytes + 1,
        workers=config.workers + 1,
        scan=ScanConfig(full_interval_seconds=60, incremental_interval_seconds=30),
        server=replace(config.server, listen_port=config.server.listen_port + 1),
    )
    assert settings_needing_restart(config, loaded) == [
        "state_dir",
        "work_dir",
        "work_dir_budget",
        "workers",
        "scan.full_interval/incremental_interval",
        "server.listen",
    ]


def test_tls_files_need_a_restart(config: Config, tmp_path: Path) -> None:
    server = replace(config.server, tls_cert=tmp_path / "c.pem", tls_key=tmp_path / "k.pem")
    loaded = replace(config, server=server)
    assert settings_needing_restart(config, loaded) == ["server.tls_cert/tls_key"]
