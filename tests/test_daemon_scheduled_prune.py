"""`prune.interval` makes `acceld serve` prune on its own: the copies of a deleted original go
without anyone running `acceld prune`, each deletion logged and counted."""

from __future__ import annotations

from pathlib import Path

import requests

from tests.support.daemon_process import (
    DaemonProcess,
    estargz_policy,
    loopback_listen,
    sample,
    wait_until,
)
from tests.support.images import PushedImage, push_image
from tests.support.registry_server import RunningRegistry
from tests.support.reliability import distinct_layer, fallback_entries, registry_serve_config
from tests.test_prune_registry import _delete, _exists

PROJECT = "sched"


def _converted(url: str, image: PushedImage) -> list[str]:
    return wait_until(
        lambda: fallback_entries(url, image.repository, image.digest),
        60,
        f"the copy of {image.tag}",
    )


def test_the_daemon_prunes_the_copies_of_a_deleted_original_on_its_interval(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    url = registry.url
    gone = push_image(url, f"{PROJECT}/app", "v1", [distinct_layer(9100, 4096)])
    kept = push_image(url, f"{PROJECT}/app", "v2", [distinct_layer(9101, 4096)])
    listen = loopback_listen()
    config = registry_serve_config(
        tmp_path,
        registry.host,
        [estargz_policy("apps", PROJECT)],
        listen=listen,
        prune={"interval": "2s"},
    )
    with DaemonProcess(config, listen) as daemon:
        daemon.wait_ready(timeout=30)
        copies = {image.digest: _converted(url, image) for image in (gone, kept)}
        _delete(url, gone.repository, gone.digest)
        (copy,) = copies[gone.digest]
        line = daemon.wait_for_log("msg=pruned ", timeout=30)
        assert f"digest={copy}" in line
        assert "reason=orphan" in line
        samples = daemon.wait_for_sample("acceld_pruned_copies_total", 1, reason="orphan")
        assert sample(samples, "acceld_pruned_copies_total", reason="orphan") == 1
        assert daemon.stop() == 0, daemon.log_text()

    assert not _exists(url, gone.repository, copy)
    assert fallback_entries(url, gone.repository, gone.digest) == []
    tags = requests.get(f"{url}/v2/{PROJECT}/app/tags/list", timeout=10).json()["tags"]
    assert "v1-esgz" not in tags
    assert "v2-esgz" in tags
    assert fallback_entries(url, kept.repository, kept.digest) == copies[kept.digest]
    assert all(_exists(url, kept.repository, digest) for digest in copies[kept.digest])
