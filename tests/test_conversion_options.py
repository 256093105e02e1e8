"""The layer cache key changes with every option that changes the output bytes, and only those."""

from __future__ import annotations

from converters.limits import LayerLimits
from harbor_api.oci import Platform
from reconciler.conversion.layer_conversion import ConversionOptions

BASE = ConversionOptions()


def test_options_that_change_the_bytes_change_the_key() -> None:
    keys = {
        BASE.cache_key("estargz"),
        ConversionOptions(compression_level=6).cache_key("estargz"),
        ConversionOptions(chunk_size=1 << 20).cache_key("estargz"),
        ConversionOptions(min_chunk_size=256 << 10).cache_key("estargz"),
        ConversionOptions(min_chunk_size=64 << 10).cache_key("estargz"),
        ConversionOptions(prioritized_files=("bin/sh",)).cache_key("estargz"),
        BASE.cache_key("zstd-chunked"),
    }
    assert len(keys) == 7


def test_options_that_do_not_change_the_bytes_keep_the_key() -> None:
    same = ConversionOptions(
        tag_suffix="-lazy",
        platforms=(Platform("linux", "arm64"),),
        workers=3,
        limits=LayerLimits(max_entries=10),
    )
    assert same.cache_key("estargz") == BASE.cache_key("estargz")
