"""Policies from parsed YAML: validation with errors naming the file, the policy and the field.

    config.yaml: policies[2] "web": tags[0]: invalid glob "[v*": missing "]"

Enabled policies that may cover the same repository (see `policies_may_overlap`) and want the
same format must want it with the same options, else the converted image would depend on which
policy the reconciler looked at first.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from datetime import timedelta
from itertools import combinations

from converters.estargz import EstargzOptions, check_min_chunk_size
from converters.nydus import NydusOptions
from converters.nydus import options as nydus_options
from harbor_api.errors import AcceldError
from harbor_api.oci import Platform
from policies.fields import FieldError, Fields, describe, suggestion
from policies.glob import Glob
from policies.match import policies_may_overlap
from policies.model import (
    DEFAULT_TAG_SUFFIX,
    ESTARGZ,
    NYDUS,
    SUPPORTED_FORMATS,
    Format,
    FormatOptions,
    LayerOptions,
    Policy,
    Reconvert,
    ReconvertMode,
)

# Policy names become metric label values and log fields.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# The suffix plus the longest source tag must stay within the 128 characters of an OCI tag.
_TAG_SUFFIX = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


class PolicyError(AcceldError, ValueError):
    """A policy that cannot be loaded; the message names the file, the policy and the field."""


def parse_policies(data: object, source_name: str) -> tuple[Policy, ...]:
    """The policies in `data` (the parsed YAML list); `source_name` prefixes every error."""
    if not isinstance(data, list):
        raise PolicyError(
            f"{source_name}: policies: expected a list of policies, got {describe(data)}"
        )
    policies: list[Policy] = []
    where: dict[str, str] = {}
    for i, item in enumerate(data):
        label = f"policies[{i}]"
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str) and name:
            label += f' "{name}"'
        try:
            policy = _parse_policy(item)
        except FieldError as exc:
            raise PolicyError(f"{source_name}: {label}: {exc}") from None
        if policy.name in where:
            raise PolicyError(
                f'{source_name}: {label}: name: "{policy.name}" is already the name of '
                f"{where[policy.name]}"
            )
        where[policy.name] = label
        policies.append(policy)
    _check_conflicts(policies, [where[p.name] for p in policies], source_name)
    return tuple(policies)


def _parse_policy(item: object) -> Policy:
    fields = Fields(item)
    name = fields.string("name")
    if not _NAME.match(name):
        raise FieldError(
            "name",
            f'invalid name "{name}": expected letters, digits, "_", "." or "-" '
            "(at most 63, starting with a letter or digit)",
        )
    formats = _formats(fields)
    policy = Policy(
        name=name,
        enabled=fields.boolean("enabled", True),
        projects=_non_empty(fields, "projects", (Glob.parse("*"),)),
        repositories=_non_empty(fields, "repositories", (Glob.parse("**"),)),
        tags=fields.each("tags", Glob.parse),
        exclude_tags=fields.each("exclude_tags", Glob.parse),
        platforms=fields.each("platforms", Platform.parse),
        formats=formats,
        format_options=_format_options(fields, formats),
        min_age=fields.duration("min_age", timedelta(0)),
        reconvert=_reconvert(fields),
    )
    fields.done()
    return policy


def _reconvert(fields: Fields) -> Reconvert:
    text = fields.string("reconvert", str(ReconvertMode.NEVER))
    try:
        return Reconvert.parse(text)
    except ValueError as exc:
        raise FieldError(fields.where("reconvert"), str(exc)) from None


def _non_empty(fields: Fields, key: str, default: tuple[Glob, ...]) -> tuple[Glob, ...]:
    globs = fields.each(key, Glob.parse)
    if fields.has(key) and not globs:
        raise FieldError(key, f"must not be empty (leave {key} out to match every name)")
    return globs or default


def _formats(fields: Fields) -> tuple[str, ...]:
    names = fields.strings("formats")
    if not names:
        raise FieldError("formats", "must list at least one format")
    for i, name in enumerate(names):
        where = f"formats[{i}]"
        if name not in tuple(Format):
            raise FieldError(where, f'unknown format "{name}"' + suggestion(name, tuple(Format)))
        if name not in SUPPORTED_FORMATS:
            raise FieldError(where, f'format "{name}" is not supported by this version')
        if name in names[:i]:
            raise FieldError(where, f'format "{name}" is listed twice')
    return tuple(names)


def _format_options(fields: Fields, formats: Sequence[str]) -> dict[str, FormatOptions]:
    section = fields.child("options", optional=True)
    out: dict[str, FormatOptions] = {}
    for fmt in formats:
        options = section.child(fmt, optional=True)
        suffix = options.string("tag_suffix", DEFAULT_TAG_SUFFIX[fmt])
        if not _TAG_SUFFIX.match(suffix):
            raise FieldError(
                options.where("tag_suffix"),
                f'invalid tag suffix "{suffix}": expected 1 to 32 letters, digits, "_", "." or "-"',
            )
        out[fmt] = FormatOptions(tag_suffix=suffix, layer=_LAYER_OPTIONS[fmt](options))
        options.done()
    for key in section.keys():  # noqa: SIM118 (Fields is not a dict)
        if key not in formats:
            raise FieldError(
                section.where(key), f'options for format "{key}", which formats does not list'
            )
    return out


def _estargz_options(options: Fields) -> EstargzOptions:
    size = options.size("min_chunk_size", 0)
    try:
        min_chunk_size = check_min_chunk_size(size)
    except ValueError as exc:
        raise FieldError(options.where("min_chunk_size"), str(exc)) from None
    return EstargzOptions(
        prioritized_files=options.strings("prioritized_files", ()),
        compression_level=options.integer("compression_level", 9, low=1, high=9),
        min_chunk_size=min_chunk_size,
    )


def _nydus_options(options: Fields) -> NydusOptions:
    defaults = NydusOptions()
    compressor = options.string("compressor", defaults.compressor)
    if compressor not in nydus_options.COMPRESSORS:
        raise FieldError(
            options.where("compressor"),
            f'unknown compressor "{compressor}"'
            + suggestion(compressor, nydus_options.COMPRESSORS),
        )
    digester = options.string("digester", defaults.digester)
    if digester not in nydus_options.DIGESTERS:
        raise FieldError(
            options.where("digester"),
            f'unknown digester "{digester}"' + suggestion(digester, nydus_options.DIGESTERS),
        )
    values = {
        "chunk_size": options.size("chunk_size", defaults.chunk_size),
        "compressor": compressor,
        "compression_level": options.integer(
            "compression_level",
            defaults.compression_level,
            low=nydus_options.MIN_ZSTD_LEVEL,
            high=nydus_options.MAX_ZSTD_LEVEL,
        ),
        "digester": digester,
        "prefetch": options.strings("prefetch", ()),
    }
    for key in ("chunk_size", "prefetch"):
        try:
            NydusOptions(**{key: values[key]})
        except ValueError as exc:
            raise FieldError(options.where(key), str(exc)) from None
    return NydusOptions(**values)


_LAYER_OPTIONS: dict[str, Callable[[Fields], LayerOptions]] = {
    ESTARGZ: _estargz_options,
    NYDUS: _nydus_options,
}


def _check_conflicts(policies: Sequence[Policy], labels: Sequence[str], source_name: str) -> None:
    enabled = [(p, label) for p, label in zip(policies, labels, strict=True) if p.enabled]
    for (a, label_a), (b, label_b) in combinations(enabled, 2):
        common = [fmt for fmt in a.formats if fmt in b.formats]
        if not common or not policies_may_overlap(a, b):
            continue
        for fmt in common:
            difference = _first_difference(a.options(fmt), b.options(fmt))
            if difference:
                raise PolicyError(
                    f"{source_name}: {label_a} and {label_b} may match the same repositories "
                    f'but want format "{fmt}" with different {difference}; make their projects '
                    "or repositories disjoint, or their options equal"
                )


def _first_difference(a: FormatOptions, b: FormatOptions) -> str:
    if a.tag_suffix != b.tag_suffix:
        return f'tag_suffix ("{a.tag_suffix}" and "{b.tag_suffix}")'
    for option in dataclasses.fields(a.layer):
        mine, theirs = getattr(a.layer, option.name), getattr(b.layer, option.name)
        if mine != theirs:
            if isinstance(mine, tuple):
                return option.name
            return f"{option.name} ({mine} and {theirs})"
    return ""
