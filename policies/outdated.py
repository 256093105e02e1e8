"""Which accelerated copies are outdated: made by an older converter, or with other options.

Every copy acceld pushes records what made it in its annotations: the driver (format) and its
version, the source digest, and the digest of the format options that decide the converted
bytes (`options_digest`). A policy's `reconvert` rule says which of those differences make a
copy worth replacing; the default, `never`, keeps every copy as it is. Pure.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from harbor_api.annotations import (
    DRIVER_NAME,
    DRIVER_OPTIONS_DIGEST,
    DRIVER_VERSION,
    SOURCE_DIGEST,
)
from harbor_api.version import ACCELD_VERSION
from policies.model import RELEASE, LayerOptions, Reconvert, ReconvertMode
from policies.observed import classify_annotations

# Options that change speed or what is refused, never a converted byte.
_SPEED_ONLY = frozenset({"workers", "limits"})


def options_settings(format: str, options: LayerOptions) -> dict[str, object]:
    """The format and every option of `options` that changes the converted image's bytes.

    An option left at 0 is left out, so that adding an option (off by default) to a converter
    does not make every copy made before it look different.
    """
    settings: dict[str, object] = {"format": format}
    for option in dataclasses.fields(options):
        if option.name not in _SPEED_ONLY:
            value = getattr(options, option.name)
            settings[option.name] = list(value) if isinstance(value, tuple) else value
    if not settings.get("min_chunk_size"):
        settings.pop("min_chunk_size", None)
    return settings


def settings_digest(settings: Mapping[str, object]) -> str:
    encoded = json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(encoded).hexdigest()


def options_digest(format: str, options: LayerOptions) -> str:
    """What `DRIVER_OPTIONS_DIGEST` records: equal options give equal digests."""
    return settings_digest(options_settings(format, options))


@dataclass(frozen=True)
class Producer:
    """What made an accelerated copy, as its annotations say."""

    format: str
    driver_version: str
    options_digest: str
    """"" when the copy does not say (made before acceld recorded it)."""


def producer_of(annotations: Mapping[str, str], subject_digest: str | None) -> Producer | None:
    """The producer of a copy whose annotations are an acceleration driver's, for `subject`.

    None for anything else: a signature, an SBOM, another tool's referrer, or a copy whose
    source annotation names another image than its subject. Only copies with a producer are
    ever pruned or replaced.
    """
    fmt = classify_annotations(annotations)
    source = annotations.get(SOURCE_DIGEST, "")
    version = annotations.get(DRIVER_VERSION, "")
    if fmt is None or not source or not version or DRIVER_NAME not in annotations:
        return None
    if subject_digest is not None and source != subject_digest:
        return None
    return Producer(fmt, version, annotations.get(DRIVER_OPTIONS_DIGEST, ""))


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version (`0.3.1rc1` → (0, 3, 1)); () when it has none."""
    found = RELEASE.match(version.strip())
    if found is None:
        return ()
    numbers = [int(n) for n in found.group(1).split(".")]
    while numbers and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)


def outdated_reason(rule: Reconvert, producer: Producer, wanted_options: str) -> str | None:
    """Why `rule` replaces a copy made by `producer` when the policy's options digest is
    `wanted_options`, or None when the copy stays."""
    if rule.mode is ReconvertMode.OPTIONS_CHANGED:
        if producer.options_digest and producer.options_digest != wanted_options:
            return "made with other format options"
        return None
    if rule.mode is ReconvertMode.DRIVER_OLDER_THAN and release(producer.driver_version) < release(
        rule.version
    ):
        return f"made by acceld {producer.driver_version}, older than {rule.version}"
    return None


def made_by_this_acceld(producer: Producer, wanted_options: str) -> bool:
    """Whether the copy is what this acceld makes with the wanted options: never outdated
    (else a rule such as `driver-older-than` a future version would replace it for ever)."""
    return producer.driver_version == ACCELD_VERSION and producer.options_digest == wanted_options


def first_outdated_reason(
    rules: Iterable[Reconvert], producer: Producer, wanted_options: str
) -> str | None:
    """The first reason any of `rules` (those of every policy wanting the format) gives."""
    for rule in rules:
        reason = outdated_reason(rule, producer, wanted_options)
        if reason is not None:
            return reason
    return None
