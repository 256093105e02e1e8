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
from converters.estargz import EstargzOptions
from converters.limits import LayerLimits
from harbor_api.annotations import SOURCE_DIGEST
from harbor_api.errors import BlobUnknown, ServerError
from harbor_api.oci import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, Descriptor, Platform
from harbor_api.version import ACCELD_VERSION
from policies.desired import Original
from policies.load import parse_policies
from policies.outdated import Producer, options_digest
from reconciler.controller.observed_formats import ReferrerCopy
from reconciler.controller.reconcile import (
    NotVisibleYet,
    Outcome,
    Reconciler,
    is_terminal,
    is_transient,
)
from reconciler.conversion.disk_budget import BudgetTooSmall, DiskBudget, Reservation
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
    copy_list: dict[tuple[str, str], list[ReferrerCopy]] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)

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
        room: Reservation,
    ) -> ConversionResult:
        self.conversions.append((Key(repository, digest, format), options, tuple(source_tags)))
        self.events.append("convert")
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

    def copies(self, repository: str, digest: str, fmt: str) -> Sequence[ReferrerCopy]:
        return self.copy_list.get((repository, digest), [])

    def retire(self, repository: str, subject_digest: str, digest: str) -> None:
        self.events.append(f"retire {digest}")


POLICIES = """
- name: web
  projects: [web]
  formats: [estargz]
  options: {estargz: {compression_level: 6}}
- name: aged
  projects: [aged]
  formats: [estargz]
  min_age: 2h
- name: renewed
  projects: [renewed]
  formats: [estargz]
  reconvert: options-changed
- name: upgraded
  projects: [upgraded]
  formats: [estargz]
  reconvert: driver-older-than 0.5.0
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


OLD = "sha256:" + "0" * 64
WANTED_OPTIONS = options_digest("estargz", EstargzOptions())


def _copy(version: str = ACCELD_VERSION, options: str = WANTED_OPTIONS) -> ReferrerCopy:
    return ReferrerCopy(OLD, Producer("estargz", version, options))


@dataclass(frozen=True)
class ReplaceRow:
    name: str
    project: str
    copies: tuple[ReferrerCopy, ...]
    replaced: bool
    reason: str = ""


REPLACE_ROWS = [
    ReplaceRow("reconvert never keeps old options", "web", (_copy(options="sha256:x"),), False),
    ReplaceRow(
        "options changed",
        "renewed",
        (_copy(options="sha256:x"),),
        True,
        "made with other format options",
    ),
    ReplaceRow("same options", "renewed", (_copy(version="0.0.1"),), False),
    ReplaceRow("options unknown (older acceld)", "renewed", (_copy(options=""),), False),
    ReplaceRow("made by another tool", "renewed", (ReferrerCopy(OLD, None),), False),
    ReplaceRow("driver older", "upgraded", (_copy(version="0.4.9"),), True, "older than 0.5.0"),
    ReplaceRow("driver as new", "upgraded", (_copy(version="0.5.0"),), False),
    ReplaceRow("what this acceld makes is never outdated", "upgraded", (_copy(),), False),
]


@pytest.mark.parametrize("row", REPLACE_ROWS, ids=[row.name for row in REPLACE_ROWS])
def test_outdated_copy_is_replaced_only_as_the_policy_says(row: ReplaceRow) -> None:
    registry = FakeRegistry()
    repository = f"{row.project}/app"
    key = Key(repository, DIGEST, "estargz")
    registry.originals[(repository, DIGEST)] = _original(repository=repository)
    registry.formats[(repository, DIGEST)] = {"estargz"}
    registry.copy_list[(repository, DIGEST)] = list(row.copies)

    outcome = _reconciler(registry).reconcile(key)

    if row.replaced:
        assert outcome.kind == "replaced"
        assert row.reason in outcome.reason
        assert outcome.retired == (OLD,)
        assert registry.events == ["convert", f"retire {OLD}"]
    else:
        assert outcome.kind == "present"
        assert registry.events == []


def test_the_old_copy_stays_while_the_new_one_is_not_listed() -> None:
    registry = FakeRegistry(listed_after_push=False)
    key = Key("renewed/app", DIGEST, "estargz")
    registry.originals[("renewed/app", DIGEST)] = _original(repository="renewed/app")
    registry.formats[("renewed/app", DIGEST)] = {"estargz"}
    registry.copy_list[("renewed/app", DIGEST)] = [_copy(options="sha256:x")]

    with pytest.raises(NotVisibleYet):
        _reconciler(registry).reconcile(key)

    assert registry.events == ["convert"]


def test_a_replacement_cut_short_is_finished_without_retiring_the_new_copy() -> None:
    registry = FakeRegistry()
    key = Key("renewed/app", DIGEST, "estargz")
    registry.originals[("renewed/app", DIGEST)] = _original(repository="renewed/app")
    registry.formats[("renewed/app", DIGEST)] = {"estargz"}
    registry.referrers[("renewed/app", DIGEST)] = [OLD, CONVERTED]
    registry.copy_list[("renewed/app", DIGEST)] = [
        _copy(options="sha256:x"),
        ReferrerCopy(CONVERTED, Producer("estargz", ACCELD_VERSION, WANTED_OPTIONS)),
    ]

    outcome = _reconciler(registry).reconcile(key)

    assert outcome.kind == "replaced"
    assert outcome.retired == (OLD,)
    assert registry.events == ["convert", f"retire {OLD}"]
