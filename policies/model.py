"""The policy model: which images get which accelerated formats, with which options."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from harbor_api.oci import Platform
from policies.glob import Glob

ESTARGZ = "estargz"
ZSTD_CHUNKED = "zstd-chunked"
NYDUS = "nydus"

SUPPORTED_FORMATS = (ESTARGZ,)
# Recognised in referrers and in config (with a clear "not supported" error), not produced.
KNOWN_FORMATS = (ESTARGZ, ZSTD_CHUNKED, NYDUS)

DEFAULT_TAG_SUFFIX = {ESTARGZ: "-esgz", ZSTD_CHUNKED: "-zstdchunked", NYDUS: "-nydus"}
DEFAULT_COMPRESSION_LEVEL = 9


@dataclass(frozen=True)
class FormatOptions:
    """How one format is produced for the images a policy matches."""

    tag_suffix: str
    """Appended to each source tag to tag the converted image (untagged originals get none)."""
    prioritized_files: tuple[str, ...] = ()
    """Paths placed first in each layer so lazy pulls fetch them early."""
    compression_level: int = DEFAULT_COMPRESSION_LEVEL
    """gzip level 1–9 of the converted layers."""
    min_chunk_size: int = 0
    """0: one gzip member per file payload, readable by every eStargz reader. Above 0, small
    payloads share members of at least this many uncompressed bytes (`innerOffset`): smaller
    layers, but only stargz-snapshotter v0.13.0 or later can lazy-pull them."""


@dataclass(frozen=True)
class Policy:
    """One rule: images matching all of its filters should have all of its formats.

    `projects` match the Harbor project name, `repositories` the full repository name
    (`project/path`). Empty `tags` matches every image, untagged ones included; otherwise an
    image matches when one of its tags matches `tags` and no `exclude_tags`. Empty `platforms`
    accepts every platform manifest. Images pushed less than `min_age` ago are left alone.
    """

    name: str
    enabled: bool = True
    projects: tuple[Glob, ...] = (Glob.parse("*"),)
    repositories: tuple[Glob, ...] = (Glob.parse("**"),)
    tags: tuple[Glob, ...] = ()
    exclude_tags: tuple[Glob, ...] = ()
    platforms: tuple[Platform, ...] = ()
    formats: tuple[str, ...] = (ESTARGZ,)
    format_options: Mapping[str, FormatOptions] = field(
        default_factory=lambda: {ESTARGZ: FormatOptions(DEFAULT_TAG_SUFFIX[ESTARGZ])}
    )
    min_age: timedelta = timedelta(0)

    def options(self, fmt: str) -> FormatOptions:
        return self.format_options[fmt]
