"""The layer cache key changes with every option that changes the output bytes, and only those."""

from __future__ import annotations

import hashlib
import json

from converters.estargz import EstargzOptions
from converters.limits import LayerLimits
from harbor_api.version import ACCELD_VERSION
from reconciler.conversion.layer_conversion import layer_cache_key

BASE = EstargzOptions()


def test_options_that_change_the_bytes_change_the_key() -> None:
    keys = {
        layer_cache_key("estargz", BASE),
        layer_cache_key("estargz", EstargzOptions(compression_level=6)),
        layer_cache_key("estargz", EstargzOptions(chunk_size=1 << 20)),
        layer_cache_key("estargz", EstargzOptions(min_chunk_size=256 << 10)),
        layer_cache_key("estargz", EstargzOptions(min_chunk_size=64 << 10)),
        layer_cache_key("estargz", EstargzOptions(prioritized_files=("bin/sh",))),
        layer_cache_key("zstd-chunked", BASE),
    }
    assert len(keys) == 7


def test_options_that_do_not_change_the_bytes_keep_the_key() -> None:
    same = EstargzOptions(workers=3, limits=LayerLimits(max_entries=10))
    assert layer_cache_key("estargz", same) == layer_cache_key("estargz", BASE)


def test_layers_cached_by_earlier_versions_keep_their_keys() -> None:
    # The settings as acceld wrote them before the options were derived from EstargzOptions.
    settings = {
        "acceld": ACCELD_VERSION,
        "format": "estargz",
        "chunk_size": 4 << 20,
        "compression_level": 6,
        "prioritized_files": ["bin/sh"],
    }
    encoded = json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()
    options = EstargzOptions(compression_level=6, prioritized_files=("bin/sh",))
    assert layer_cache_key("estargz", options) == "sha256:" + hashlib.sha256(encoded).hexdigest()
