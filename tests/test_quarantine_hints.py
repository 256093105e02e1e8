"""A quarantine the configuration caused (a work directory budget or a layer limit too small)
names the setting and `acceld retry --all`; one the image caused does not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from converters.errors import LayerRejected
from reconciler.controller.quarantine_hints import configuration_behind, quarantine_reason
from reconciler.conversion.disk_budget import BudgetTooSmall
from tests.support.acceld_process import acceld, registry_config
from tests.support.daemon_process import estargz_policy
from tests.support.registry_server import RunningRegistry
from tests.support.reliability import push_distinct_images

RETRY_HINT = "after changing it, `acceld retry --all` releases this key"


@pytest.mark.parametrize(
    ("error", "setting"),
    [
        (BudgetTooSmall("work directory budget 10 bytes is too small"), "work_dir_budget"),
        (LayerRejected("decompressed size exceeds the limit of 100 bytes"), "limits"),
        (LayerRejected("layer: a/b: more than 10 entries"), "limits"),
        (LayerRejected("entry etc/x: 200 bytes (limit max_entry_metadata)"), "limits"),
        (LayerRejected("etc/passwd: hardlink to a later entry"), None),
        (LayerRejected("gzip: invalid block type"), None),
    ],
)
def test_the_setting_behind_a_terminal_error(error: Exception, setting: str | None) -> None:
    assert configuration_behind(error) == setting
    assert (RETRY_HINT in quarantine_reason(error)) is (setting is not None)


def test_a_budget_quarantine_says_how_to_release_it(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    (image,) = push_distinct_images(registry.url, "hint", 1, size=1 << 20, seed=901)
    layer_bytes = image.manifest["layers"][0]["size"]
    config = registry_config(
        tmp_path, registry.host, [estargz_policy("hint", "hint")], work_dir_budget=f"{layer_bytes}B"
    )
    assert acceld("backfill", "--config", str(config)).returncode == 1
    status = json.loads(acceld("status", "--config", str(config), "--output", "json").stdout)
    (quarantined,) = status["quarantined"]
    assert "[set by work_dir_budget: " + RETRY_HINT + "]" in quarantined["reason"]
    text = acceld("status", "--config", str(config)).stdout
    assert "acceld retry KEY or --all once the image or the setting named is fixed" in text
