"""Resource limits: a work-directory budget too small for a layer is a clear terminal error that
leaves no file behind, and a larger budget plus `acceld retry` converts the image.
(`test_work_dir_budget.py` proves the budget counts what is written, not declared sizes.)"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.support.acceld_process import acceld, registry_config
from tests.support.daemon_process import estargz_policy
from tests.support.registry_server import RunningRegistry
from tests.support.reliability import assert_converged, fallback_entries, push_distinct_images


def test_a_work_dir_budget_too_small_for_a_layer_is_terminal_and_leaves_no_file(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    (image,) = push_distinct_images(registry.url, "budget", 1, size=1 << 20, seed=900)
    layer_bytes = image.manifest["layers"][0]["size"]
    config = registry_config(
        tmp_path,
        registry.host,
        [estargz_policy("budget", "budget")],
        work_dir_budget=f"{layer_bytes}B",
    )

    refused = acceld("backfill", "--config", str(config), "--output", "json")
    assert refused.returncode == 1, refused.stderr
    (result,) = json.loads(refused.stdout)["results"]
    reason = (
        f"work directory budget {layer_bytes} bytes is too small: this image needs "
        f"{3 * layer_bytes} bytes for its largest layer (raise work_dir_budget)"
    )
    assert result["ok"] is False
    assert reason in result["detail"]
    status = json.loads(acceld("status", "--config", str(config), "--output", "json").stdout)
    (quarantined,) = status["quarantined"]
    assert quarantined["key"] == f"{image.repository}@{image.digest}#estargz"
    assert reason in quarantined["reason"]
    assert list((tmp_path / "work").iterdir()) == []
    assert fallback_entries(registry.url, image.repository, image.digest) == []

    document = yaml.safe_load(config.read_text())
    # Room for what is really written: the source, its decompressed spill and the output.
    document["work_dir_budget"] = "64MiB"
    config.write_text(yaml.safe_dump(document))
    retried = acceld("retry", "--all", "--config", str(config))
    assert retried.returncode == 0, retried.stderr
    converted = acceld("backfill", "--config", str(config), "--output", "json")
    assert converted.returncode == 0, converted.stderr
    assert json.loads(converted.stdout)["converged"] is True
    assert_converged(registry.url, [image], tmp_path / "check")
