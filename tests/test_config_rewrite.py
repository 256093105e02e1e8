from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.conversion.config_rewrite import config_diff_ids, config_platform, rewrite_config
from reconciler.conversion.errors import InvalidImageConfig
from tests.support.images import image_config, sha256

OLD = [sha256(b"layer-a"), sha256(b"layer-b")]
NEW = [sha256(b"esgz-a"), sha256(b"esgz-b")]


def _config(**extra: Any) -> dict[str, Any]:
    data = image_config(OLD)
    data["created"] = "2026-01-02T03:04:05.123456789Z"
    data["config"]["Labels"] = {"org.example/ünïcode": "välue", "html": "<a&b>"}
    data.update(extra)
    return data


def test_diff_ids_are_replaced_and_legacy_parent_ids_dropped() -> None:
    original = _config()
    rewritten = json.loads(rewrite_config(json.dumps(original).encode(), NEW))
    assert rewritten["rootfs"] == {"type": "layers", "diff_ids": NEW}
    assert "Image" not in rewritten["config"]
    assert "Image" not in rewritten["container_config"]


def test_everything_else_is_kept_in_order() -> None:
    original = _config(unknown_field={"nested": [1, 2.5, None, True]})
    rewritten = json.loads(rewrite_config(json.dumps(original).encode(), NEW))
    del original["config"]["Image"], original["container_config"]["Image"]
    original["rootfs"]["diff_ids"] = NEW
    assert rewritten == original
    assert list(rewritten) == list(original)
    assert list(rewritten["config"]) == list(original["config"])
    assert rewritten["history"] == [{"created_by": "layer 0"}, {"created_by": "layer 1"}]


def test_unchanged_diff_ids_return_the_original_bytes() -> None:
    raw = json.dumps(_config(), indent=3).encode()
    assert rewrite_config(raw, OLD) is raw


def test_rewrite_is_deterministic_and_reads_back() -> None:
    raw = json.dumps(_config()).encode()
    assert rewrite_config(raw, NEW) == rewrite_config(raw, NEW)
    assert config_diff_ids(rewrite_config(raw, NEW)) == tuple(NEW)


def test_layer_count_mismatch_is_refused() -> None:
    with pytest.raises(InvalidImageConfig, match="2 entries, the manifest has 1 layers"):
        rewrite_config(json.dumps(_config()).encode(), NEW[:1])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "not JSON"),
        (b"[]", "expected a JSON object"),
        (b"{}", "rootfs: expected an object"),
        (b'{"rootfs": {"type": "other", "diff_ids": []}}', "rootfs.type: expected 'layers'"),
        (b'{"rootfs": {"type": "layers", "diff_ids": [1]}}', "expected a list of strings"),
    ],
)
def test_malformed_configs_are_refused_precisely(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidImageConfig, match=message):
        rewrite_config(raw, [])


_json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)


@given(extra=st.dictionaries(st.text(min_size=1, max_size=6), _json_values, max_size=5))
def test_unknown_fields_survive_any_rewrite(extra: dict[str, Any]) -> None:
    extra = {k: v for k, v in extra.items() if k not in ("rootfs", "config", "container_config")}
    original = {**_config(), **extra}
    rewritten = json.loads(rewrite_config(json.dumps(original).encode(), NEW))
    for key, value in extra.items():
        assert rewritten[key] == value


def test_platform_is_read_from_the_config() -> None:
    raw = json.dumps(image_config(OLD, "arm64", variant="v8")).encode()
    assert str(config_platform(raw)) == "linux/arm64/v8"
    assert config_platform(b'{"rootfs": {"type": "layers", "diff_ids": []}}') is None
