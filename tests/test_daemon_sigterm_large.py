"""SIGTERM while `acceld serve` compresses a large layer on every core (slow: a 256 MiB layer
is built, pushed and converted): the process still exits within its grace period and a restart
converts the image once."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
import requests
from isal import igzip

from tests.support.daemon_process import (
    accessories_of,
    estargz_policy,
    set_up_serving,
    wait_until,
)
from tests.support.harbor_emulator import RunningHarbor
from tests.support.images import (
    LAYER_MEDIA,
    OCI_CONFIG,
    OCI_MANIFEST,
    PushedImage,
    image_config,
    push_blob,
    push_manifest,
)
from tests.support.registry_log import parse_access_log, writes_to_manifests
from tests.support.registry_server import RunningRegistry
from tests.support.synthetic_layers import text_pool, write_single_file_layer

pytest_plugins = ("tests.support.harbor_fixtures",)

LAYER_SIZE = 256 << 20
GRACE_SECONDS = 0.5


def push_large_image(
    harbor: RunningHarbor, admin: requests.Session, repository: str, work: Path
) -> PushedImage:
    layer_path = work / "layer.tar.gz"
    write_single_file_layer(layer_path, LAYER_SIZE, text_pool())
    diff_id = hashlib.sha256()
    with igzip.open(layer_path, "rb") as tar:
        while piece := tar.read(1 << 20):
            diff_id.update(piece)
    layer = layer_path.read_bytes()
    layer_digest = push_blob(harbor.url, repository, layer, admin)
    config = json.dumps(image_config(["sha256:" + diff_id.hexdigest()])).encode()
    config_digest = push_blob(harbor.url, repository, config, admin)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [
            {
                "mediaType": LAYER_MEDIA[("oci", "gzip")],
                "digest": layer_digest,
                "size": len(layer),
            }
        ],
    }
    body = json.dumps(manifest).encode()
    digest = push_manifest(harbor.url, repository, "v1", body, OCI_MANIFEST, admin)
    return PushedImage(repository, digest, len(body), OCI_MANIFEST, "v1", (layer_digest,), manifest)


def converting(work: Path) -> bool:
    """Compressed output is being written: the child converter is past the download."""
    return any(f.stat().st_size > 8 << 20 for f in work.rglob("converted"))


def converters_in(work: Path) -> list[int]:
    """Pids of converter processes working under `work`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
            # The child gets descriptors, not paths, and works in its layer directory.
            where = os.readlink(entry / "cwd")
        except OSError:
            continue
        if b"reconciler.conversion.layer_process" in arguments and where.startswith(str(work)):
            found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_sigterm_while_compressing_exits_within_grace_and_a_restart_converts_once(
    registry: RunningRegistry, harbor: RunningHarbor, admin: requests.Session, tmp_path: Path
) -> None:
    setup = set_up_serving(harbor, admin, tmp_path, ["big"], [estargz_policy("big", "big")])
    image = push_large_image(harbor, admin, "big/data", tmp_path)
    with setup.start(args=("--grace-seconds", str(GRACE_SECONDS))) as first:
        first.wait_for_log('"reconcile started"')
        work = tmp_path / "work"
        wait_until(lambda: converting(work), 60, "the converted layer growing in the work dir")
        started = time.monotonic()
        assert first.stop() == 0
        seconds = time.monotonic() - started
    assert "Traceback" not in first.log_text()
    assert '"released unfinished key"' in first.log_text()
    assert seconds < GRACE_SECONDS + 3, first.log_text()
    # The converter child must not go on converting for a daemon that is gone.
    wait_until(lambda: not converters_in(work), 5, "the converter child to end with the daemon")

    with setup.start() as second:
        second.wait_for_sample(
            "acceld_conversions_total", 1, timeout=180, format="estargz", result="success"
        )
        assert second.stop() == 0
    (accessory,) = accessories_of(harbor, image)
    logged = parse_access_log(registry.log_text())
    assert len(writes_to_manifests(logged, image.repository, [accessory])) == 1
