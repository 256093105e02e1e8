"""Rewrite an image config for converted layers: new diff_ids, everything else kept.

eStargz changes each layer's uncompressed tar (landmarks, TOC, reordering), so
`rootfs.diff_ids` must name the new uncompressed digests. containerd's converter also drops the
legacy `config.Image` and `container_config.Image` (the ID of a parent image whose layers no
longer match); acceld does the same. History, layer count and every other field stay as they
were, in the order they were.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from harbor_api.oci import Platform, check_digest
from reconciler.conversion.errors import InvalidImageConfig

_LEGACY_PARENT_FIELDS = ("config", "container_config")
_TOO_DEEP = "image config: JSON nested too deep to parse"


def config_diff_ids(raw: bytes) -> tuple[str, ...]:
    """The `rootfs.diff_ids` of an image config."""
    return tuple(_diff_ids(_load(raw)))


def config_platform(raw: bytes) -> Platform | None:
    """The platform an image config declares, or None when it names no OS and architecture."""
    data = _load(raw)
    platform = Platform.from_json(data)
    return platform if platform.os and platform.architecture else None


def rewrite_config(
    raw: bytes,
    diff_ids: Sequence[str],
    *,
    added_history: Sequence[Mapping[str, Any]] = (),
    keep_parent_image: bool = False,
) -> bytes:
    """The config bytes to push with layers whose uncompressed digests are `diff_ids`.

    Layers beyond the original's (nydus' bootstrap) come with their `added_history` entries,
    one each. `keep_parent_image` keeps the legacy `Image` fields, because `nydusify check`
    wants `config.config` exactly as in the original. When the diff_ids are unchanged the
    original bytes come back untouched, so the config blob is shared with the original image.
    """
    data = _load(raw)
    old = _diff_ids(data)
    if len(old) + len(added_history) != len(diff_ids):
        raise InvalidImageConfig(
            f"image config: rootfs.diff_ids has {len(old)} entries, "
            f"the manifest has {len(diff_ids) - len(added_history)} layers"
        )
    for i, digest in enumerate(diff_ids):
        check_digest(digest, f"new diff_ids[{i}]")
    if list(old) == list(diff_ids):
        return raw
    data["rootfs"]["diff_ids"] = list(diff_ids)
    if added_history:
        history = data.get("history")
        data["history"] = [
            *(history if isinstance(history, list) else []),
            *(dict(entry) for entry in added_history),
        ]
    for name in () if keep_parent_image else _LEGACY_PARENT_FIELDS:
        section = data.get(name)
        if isinstance(section, dict):
            section.pop("Image", None)
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise InvalidImageConfig(_TOO_DEEP) from None


def _load(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidImageConfig(f"image config is not JSON: {exc}") from exc
    except RecursionError:
        raise InvalidImageConfig(_TOO_DEEP) from None
    if not isinstance(data, dict):
        raise InvalidImageConfig("image config: expected a JSON object")
    return data


def _diff_ids(data: dict[str, Any]) -> list[str]:
    rootfs = data.get("rootfs")
    if not isinstance(rootfs, dict):
        raise InvalidImageConfig("image config: rootfs: expected an object")
    if rootfs.get("type") != "layers":
        raise InvalidImageConfig(
            f"image config: rootfs.type: expected 'layers', got {rootfs.get('type')!r}"
        )
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise InvalidImageConfig("image config: rootfs.diff_ids: expected a list of strings")
    return diff_ids
