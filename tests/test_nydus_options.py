"""NydusOptions refuses what nydus cannot read, saying what was expected and what was found."""

from __future__ import annotations

import re

import pytest

from converters.nydus import NydusOptions


def test_defaults_are_nydus_image_defaults() -> None:
    options = NydusOptions()
    assert (options.chunk_size, options.compressor, options.digester) == (
        1 << 20,
        "zstd",
        "blake3",
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunk_size": 3 << 20}, "chunk_size must be a power of two from 4096"),
        ({"chunk_size": 2048}, "got 2048"),
        ({"chunk_size": 32 << 20}, "to 16777216 (16MiB)"),
        ({"compressor": "lz4"}, "compressor must be one of zstd, none, got 'lz4'"),
        ({"compression_level": 0}, "compression_level must be 1..22, got 0"),
        ({"digester": "md5"}, "digester must be one of blake3, sha256, got 'md5'"),
        ({"prefetch": ("/usr", "etc")}, "prefetch[1]: 'etc' is not an absolute path"),
        ({"workers": 0}, "workers must be at least 1, got 0"),
    ],
)
def test_invalid_options_are_refused_with_the_reason(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        NydusOptions(**kwargs)  # type: ignore[arg-type]


def test_extreme_valid_chunk_sizes_are_accepted() -> None:
    assert NydusOptions(chunk_size=4096).chunk_size == 4096
    assert NydusOptions(chunk_size=16 << 20).chunk_size == 16 << 20
