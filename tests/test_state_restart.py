"""PostgreSQL restarted while `acceld backfill` converts: the backfill says the state database
went away and came back, keeps its workers, and ends converged with every image converted
once."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.acceld_process import registry_config
from tests.support.daemon_process import wait_until
from tests.support.postgres_server import RunningPostgres, start_postgres
from tests.support.registry_server import RunningRegistry
from tests.support.reliability import (
    assert_converged,
    assert_pushed_once,
    fallback_entries,
    push_distinct_images,
    queue_counts,
)

IMAGES = 10
LAYER_BYTES = 3 << 20
DOWN_SECONDS = 12.0
DSN_ENV = "ACCELD_STATE_DSN"


@pytest.fixture
def restartable_postgres() -> Iterator[RunningPostgres]:
    """A cluster of this test's own: restarting it disturbs no other test."""
    running = start_postgres()
    yield running
    running.stop()


def _converted(registry: RunningRegistry, repositories: list[tuple[str, str]]) -> int:
    return sum(
        1
        for repository, digest in repositories
        if fallback_entries(registry.url, repository, digest)
    )


@pytest.mark.slow
def test_backfill_survives_a_postgresql_restart_and_converts_each_image_once(
    registry: RunningRegistry, restartable_postgres: RunningPostgres, tmp_path: Path
) -> None:
    images = push_distinct_images(registry.url, "restart", IMAGES, size=LAYER_BYTES, seed=7)
    env = {DSN_ENV: restartable_postgres.dsn(restartable_postgres.create_database())}
    config = registry_config(
        tmp_path,
        registry.host,
        [{"name": "restart", "projects": ["restart"], "formats": ["estargz"]}],
        workers=2,
        state={"backend": "postgresql", "dsn_env": DSN_ENV, "lease_period": "8s"},
    )
    log = (tmp_path / "backfill.log").open("w+")
    backfill = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconciler",
            "backfill",
            "--config",
            str(config),
            "--output",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**__import__("os").environ, **env},
    )
    try:
        originals = [(image.repository, image.digest) for image in images]
        wait_until(lambda: _converted(registry, originals) >= 2, 60, "two images converted")
        restartable_postgres.restart(down_seconds=DOWN_SECONDS)
        assert _converted(registry, originals) < IMAGES
        output, _ = backfill.communicate(timeout=120)
    finally:
        if backfill.poll() is None:
            backfill.kill()
            backfill.wait(timeout=10)
    log.seek(0)
    text = log.read()
    assert backfill.returncode == 0, text
    assert json.loads(output)["converged"] is True
    assert "state database unavailable" in text
    assert "state database reachable again" in text
    assert "Traceback" not in text
    assert queue_counts(config, env) == {"pending": 0, "in_progress": 0, "quarantined": 0}

    assert_pushed_once(registry.url, registry.log_text(), images)
    assert_converged(registry.url, images, tmp_path / "pulled")
