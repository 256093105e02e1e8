"""Every outcome of the reconcile step, decided against in-memory originals and referrers.

The end-to-end tests prove the same step against the real registry; these pin the decision
itself, one row per outcome, in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from converters.errors import LayerRejected
from converters.limits import LayerLimits
from harbor_api.annotations import SOURCE_DIGEST
from harbor_api.errors import BlobUnknown, ServerError
from harbor_api.oci import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, Descriptor, Platform
from policies.desired import Original
from policies.load import parse_policies
from reconciler.controller.reconcile import (
    NotVisibleYet,
    Outcome,
    Reconciler,
    is_terminal,
    is_transient,
)
from reconciler.conversion.disk_budget import BudgetTooSmall, DiskBudget
from reconciler.conversion.image_conversion import ConversionResult
from reconciler.conversion.layer_conversion import ConversionOptions
from reconciler.state.keys import Key

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
REPO = "web/app"
DIGEST = "sha256:" + "a" * 64
CONVERTED = "sha256:" + "c" * 64
KEY = Key(REPO, DIGEST, "estargz")


def _original(**changes: object) -> Original:
    values: dict[str, object] = {
        "repository": REPO,
        "digest": DIGEST,
        "media_type": OCI_MANIFEST,
        "artifact_type": OCI_CONFIG,
        "tags": ("v1",),
        "push_time": NOW - timedelta(days=1),
        "layer_media_types": (OCI_LAYER_GZIP,),
    }
    values.update(changes)
    return Original(**values)  # type: ignore[arg-type]


@dataclass
class FakeRegistry:
    """Originals, referrers and conversions in memory; implements the reconciler's views."""

    originals: dict[tuple[str, str], Original] = field(default_factory=dict)
    formats: dict[tuple[str, str], set[str | None]] = field(default_factory=dict)
    referrers: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    layer_size: int = 1 << 20
    failure: Exception | None = None
    listed_after_push: bool = True
    conversions: list[tuple[Key, ConversionOptions, tuple[str, ...]]] = field(default_factory=list)
    remembered: dict[str, str] = field(default_factory=dict)

    def describe(self, repository: str, digest: str) -> Original | None:
        return self.originals.get((repository, digest))

    def observed(self, repository: str, digest: str) -> set[str | None]:
        return self.formats.get((repository, digest), set())

    def remember(self, digest: str, format: str) -> None:
        self.remembered[digest] = format

    def largest_layer(self, repository: str, digest: str, platforms: Sequence[Platform]) -> int:
        return self.layer_size

    def convert(
        self,
        repository: str,
        digest: str,
        format: str,
        options: ConversionOptions,
        source_tags: Sequence[str],
    ) -> ConversionResult:
        self.conversions.append((Key(repository, digest, format), options, tuple(source_tags)))
        if self.failure is not None:
            raise self.failure
        if self.listed_after_push:
            self.referrers.setdefault((repository, digest), []).append(CONVERTED)
        descriptor = Descriptor(OCI_MANIFEST, CONVERTED, 500)
        return ConversionResult(
            repository=repository,
            format=format,
            original=Descriptor(OCI_MANIFEST, digest, 400),
            converted=descriptor,
            tags=tuple(tag + options.tag_suffix for tag in source_tags),
            manifests=(),
            pushed=True,
            seconds=0.0,
        )

    def referrer_digests(self, repository: str, digest: str) -> Iterable[str]:
        return self.referrers.get((repository, digest), [])


POLICIES = """
- name: web
  projects: [web]
  formats: [estargz]
  options: {estargz: {compression_level: 6}}
- name: aged
  projects: [aged]
  formats: [estargz]
  min_age: 2h
"""


def _reconciler(registry: FakeRegistry, budget: int = 1 << 30) -> Reconciler:
    return Reconciler(
        registry,
        parse_policies(yaml.safe_load(POLICIES), "test"),
        registry,
        registry,
        budget=DiskBudget(budget),
        limits=LayerLimits(max_entries=77),
        now=lambda: NOW,
    )


@dataclass(frozen=True)
class Row:
    name: str
    original: Original | None
    observed: set[str | None] = field(default_factory=set)
    key: Key = KEY
    kind: str = ""
    reason: str = ""
    converts: bool = False


ROWS = [
    Row("gone", None, kind="gone", reason="no longer exists"),
    Row(
        "a referrer is never an original",
        _original(has_subject=True),
        kind="unwanted",
        reason="has a subject",
    ),
    Row(
        "an accelerated copy is never an original",
        _original(annotations={SOURCE_DIGEST: DIGEST}),
        kind="unwanted",
        reason=SOURCE_DIGEST,
    ),
    Row(
        "no policy wants the format",
        _original(),
        key=Key(REPO, DIGEST, "nydus"),
        kind="unwanted",
        reason="no enabled policy wants nydus",
    ),
    Row(
        "no policy covers the project",
        _original(repository="other/app"),
        key=Key("other/app", DIGEST, "estargz"),
        kind="unwanted",
        reason="no enabled policy wants estargz",
    ),
    Row("present", _original(), observed={"estargz"}, kind="present"),
    Row("another format present", _original(), observed={"nydus", None}, converts=True),
    Row("converted", _original(), kind="converted", converts=True),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_reconcile_outcome(row: Row) -> None:
    registry = FakeRegistry()
    if row.original is not None:
        registry.originals[(row.key.repository, row.key.digest)] = row.original
    registry.formats[(row.key.repository, row.key.digest)] = row.observed

    outcome = _reconciler(registry).reconcile(row.key)

    assert outcome.kind == (row.kind or "converted")
    assert row.reason in outcome.reason
    assert bool(registry.conversions) == row.converts
    assert (outcome.conversion is not None) == row.converts


def test_young_image_waits_until_min_age_has_passed() -> None:
    registry = FakeRegistry()
    key = Key("aged/app", DIGEST, "estargz")
    registry.originals[("aged/app", DIGEST)] = _original(
        repository="aged/app", push_time=NOW - timedelta(minutes=30)
    )

    outcome = _reconciler(registry).reconcile(key)

    assert outcome == Outcome("wait", "younger than min_age", 90 * 60.0)
    assert registry.conversions == []


def test_conversion_gets_the_policy_options_the_limits_and_the_tags() -> None:
    registry = FakeRegistry()
    registry.originals[(REPO, DIGEST)] = _original(tags=("v1", "latest"))

    outcome = _reconciler(registry).reconcile(KEY)

    [(key, options, tags)] = registry.conversions
    assert (key, tags) == (KEY, ("v1", "latest"))
    assert options.tag_suffix == "-esgz"
    assert options.layer.compression_level == 6
    assert options.layer.limits.max_entries == 77
    assert outcome.conversion is not None
    assert outcome.conversion.tags == ("v1-esgz", "latest-esgz")
    assert registry.remembered == {CONVERTED: "estargz"}


def test_pushed_but_not_listed_is_a_transient_error() -> None:
    registry = FakeRegistry(listed_after_push=False)
    registry.originals[(REPO, DIGEST)] = _original()

    with pytest.raises(NotVisibleYet) as raised:
        _reconciler(registry).reconcile(KEY)

    assert is_transient(raised.value)
    assert not is_terminal(raised.value)


@pytest.mark.parametrize(
    ("failure", "terminal"),
    [
        (LayerRejected("hardlink cycle"), True),
        (BlobUnknown("GET /v2/web/app/blobs/x", 404), True),
        (ServerError("PUT /v2/web/app/manifests/x", 503), False),
        (OSError("disk full"), False),
    ],
    ids=["bad-layer", "missing-blob", "registry-down", "os-error"],
)
def test_conversion_failure_is_terminal_or_transient(failure: Exception, terminal: bool) -> None:
    registry = FakeRegistry(failure=failure)
    registry.originals[(REPO, DIGEST)] = _original()

    with pytest.raises(type(failure)) as raised:
        _reconciler(registry).reconcile(KEY)

    assert is_terminal(raised.value) == terminal
    assert is_transient(raised.value) != terminal


def test_a_layer_larger_than_the_whole_budget_is_terminal() -> None:
    registry = FakeRegistry(layer_size=10 << 20)
    registry.originals[(REPO, DIGEST)] = _original()

    with pytest.raises(BudgetTooSmall) as raised:
        _reconciler(registry, budget=1 << 20).reconcile(KEY)

    assert is_terminal(raised.value)
    assert registry.conversions == []
