"""The policy model: which images get which accelerated formats, with which options."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from converters.estargz import EstargzOptions
from converters.nydus import NydusOptions
from harbor_api.oci import Platform
from policies.glob import Glob


class Format(enum.StrEnum):
    """The accelerated formats acceld knows, by the names policies and keys use."""

    ESTARGZ = "estargz"
    ZSTD_CHUNKED = "zstd-chunked"
    NYDUS = "nydus"


ESTARGZ = Format.ESTARGZ
ZSTD_CHUNKED = Format.ZSTD_CHUNKED
NYDUS = Format.NYDUS

SUPPORTED_FORMATS: tuple[Format, ...] = (ESTARGZ, NYDUS)
"""The formats acceld converts to. The others are recognised in referrers and refused in
config with a clear "not supported" error."""

DEFAULT_TAG_SUFFIX: Mapping[str, str] = {
    ESTARGZ: "-esgz",
    ZSTD_CHUNKED: "-zstdchunked",
    NYDUS: "-nydus",
}

LayerOptions = EstargzOptions | NydusOptions
"""The converter options of a format: everything that decides the converted layers' bytes."""

LAYER_OPTIONS: Mapping[str, type[EstargzOptions] | type[NydusOptions]] = {
    ESTARGZ: EstargzOptions,
    NYDUS: NydusOptions,
}
"""The converter options type of each supported format."""


RELEASE = re.compile(r"^v?(\d+(?:\.\d+)*)")
"""The numeric release at the start of a version (`0.3.1rc1`, `v1.2`)."""


class ReconvertMode(enum.StrEnum):
    NEVER = "never"
    OPTIONS_CHANGED = "options-changed"
    DRIVER_OLDER_THAN = "driver-older-than"


@dataclass(frozen=True)
class Reconvert:
    """A policy's `reconvert` rule: `never`, `options-changed` or `driver-older-than V`."""

    mode: ReconvertMode = ReconvertMode.NEVER
    version: str = ""
    """The version of `driver-older-than`: copies made by an older acceld are replaced."""

    @classmethod
    def parse(cls, text: str) -> Reconvert:
        words = text.split()
        modes = ", ".join(f'"{m}"' for m in ReconvertMode)
        if not words or words[0] not in tuple(ReconvertMode):
            raise ValueError(f'expected one of {modes} (with a version), got "{text}"')
        mode = ReconvertMode(words[0])
        if mode is ReconvertMode.DRIVER_OLDER_THAN:
            if len(words) != 2 or not RELEASE.match(words[1]):
                raise ValueError(f'expected "driver-older-than VERSION" (e.g. 0.2.0), got "{text}"')
            return cls(mode, words[1])
        if len(words) != 1:
            raise ValueError(f'"{mode}" takes no argument, got "{text}"')
        return cls(mode)

    def __str__(self) -> str:
        return f"{self.mode} {self.version}" if self.version else str(self.mode)


@dataclass(frozen=True)
class FormatOptions:
    """How one format is produced for the images a policy matches."""

    tag_suffix: str
    """Appended to each source tag to tag the converted image (untagged originals get none)."""
    layer: LayerOptions = field(default_factory=EstargzOptions)
    """The converter's options, as the converter itself defines and checks them."""


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
    reconvert: Reconvert = field(default_factory=Reconvert)
    """Which of the accelerated copies acceld made earlier to replace (default: none)."""

    def options(self, fmt: str) -> FormatOptions:
        return self.format_options[fmt]
