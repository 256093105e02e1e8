"""`prune`: find the accelerated copies acceld made that should go, and delete them.

A plain registry cascades nothing: when an original is deleted its copies, their
`<tag><suffix>` tags and their entries in the `sha256-<hex>` fallback index stay. The inventory
of a repository is read from its tags, its fallback indexes and the converted indexes' children;
`policies.prune` decides; `Pruner.execute` deletes each manifest (and with it the tags naming
it) and only then takes its entry out of the fallback index, platform copies before their
index, so a prune killed at any point is finished by the next one.

Harbor deletes accessories with their subject (its referrers API replaces fallback indexes),
so there a prune finds only what Harbor leaves: copies still listed as artifacts whose subject
is gone, and, with `--unwanted`, the copies no policy wants; deleting a converted index
through Harbor deletes its platform copies too.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from harbor_api.annotations import SOURCE_DIGEST
from harbor_api.errors import AcceldError, InvalidManifest, NotFound
from harbor_api.harbor_models import NOT_ACCELERATED_ACCESSORY_TYPES
from harbor_api.oci import INDEX_TYPES, Descriptor, Index, is_referrer_tag
from harbor_api.registry import FetchedManifest, RegistryClient
from policies.desired import Original, original_of
from policies.glob import any_match
from policies.match import policy_matches_project
from policies.model import Policy
from policies.outdated import producer_of
from policies.prune import ConvertedCopy, Removal, RepositoryInventory, Scope, prune_plan
from reconciler.controller.sources import (
    UNKNOWN_PUSH_TIME,
    HarborSource,
    Source,
    original_from_artifact,
)
from reconciler.observability.metrics import Metrics

log = logging.getLogger(__name__)

_FALLBACK_PREFIX = "sha256-"


@dataclass(frozen=True)
class PruneFailure:
    repository: str
    digest: str
    error: str


@dataclass(frozen=True)
class PruneReport:
    removals: tuple[Removal, ...]
    """What was deleted, or with `dry_run` what a real run would delete."""
    dry_run: bool
    cascading: bool
    """The source deletes copies with their subject (Harbor): only leftovers are pruned."""
    repositories: int = 0
    failures: tuple[PruneFailure, ...] = field(default=())


def policy_scope(policies: Sequence[Policy]) -> Scope:
    """The repositories and formats `policies` cover (a `--policy` prune covers only its own)."""

    def covered(repository: str, fmt: str) -> bool:
        project = repository.split("/", 1)[0]
        return any(
            fmt in p.formats
            and policy_matches_project(p, project)
            and any_match(p.repositories, repository)
            for p in policies
        )

    return covered


def _everything(repository: str, fmt: str) -> bool:
    return True


class Pruner:
    """Plans and runs prunes over `source`; `policies` decide what is wanted (all of them,
    whatever the scope)."""

    def __init__(
        self,
        source: Source,
        policies: Sequence[Policy],
        metrics: Metrics,
        *,
        busy: Callable[[], frozenset[tuple[str, str]]] = frozenset,
        now: Callable[[], datetime],
    ) -> None:
        self.source = source
        self.registry = source.registry
        self.policies = tuple(policies)
        self.metrics = metrics
        self.busy = busy
        self.now = now
        self.cascading = isinstance(source, HarborSource)

    def run(
        self,
        *,
        only: Sequence[Policy] | None = None,
        unwanted: bool = False,
        dry_run: bool = False,
    ) -> PruneReport:
        """Prune every repository, or with `only` the repositories and formats of those
        policies; with `dry_run` delete nothing and report what would go."""
        covered = policy_scope(only) if only is not None else _everything
        removals: list[Removal] = []
        failures: list[PruneFailure] = []
        repositories = 0
        for repository in self._repositories(only):
            repositories += 1
            try:
                planned = self.plan(repository, covered, unwanted=unwanted)
            except AcceldError as error:
                failures.append(PruneFailure(repository, "", str(error)))
                log.warning(
                    "prune skipped a repository",
                    extra={"repository": repository, "error": str(error)},
                )
                continue
            if dry_run:
                removals.extend(planned)
                continue
            done, failed = self.execute(planned)
            removals.extend(done)
            failures.extend(failed)
        log.info(
            "prune finished",
            extra={
                "dry_run": dry_run,
                "repositories": repositories,
                "removed": len(removals),
                "failed": len(failures),
            },
        )
        return PruneReport(tuple(removals), dry_run, self.cascading, repositories, tuple(failures))

    def _repositories(self, only: Sequence[Policy] | None) -> Iterator[str]:
        for project in self.source.projects():
            if only is not None and not any(policy_matches_project(p, project) for p in only):
                continue
            for repository in self.source.repositories(project):
                if only is None or any(any_match(p.repositories, repository) for p in only):
                    yield repository

    def plan(self, repository: str, scope: Scope, *, unwanted: bool) -> tuple[Removal, ...]:
        busy = frozenset(digest for repo, digest in self.busy() if repo == repository)
        if self.cascading:
            inventory = self._harbor_inventory(repository, unwanted=unwanted)
        else:
            inventory = RegistryInventory(self.registry, repository, busy).read()
        return prune_plan(inventory, self.policies, now=self.now(), unwanted=unwanted, scope=scope)

    def execute(self, removals: Sequence[Removal]) -> tuple[list[Removal], list[PruneFailure]]:
        """Delete in the planned order: each manifest, then its fallback-index entry."""
        done: list[Removal] = []
        failed: list[PruneFailure] = []
        for removal in removals:
            try:
                self._remove(removal)
            except AcceldError as error:
                failed.append(PruneFailure(removal.repository, removal.digest, str(error)))
                log.error(
                    "prune could not delete",
                    extra={
                        "repository": removal.repository,
                        "digest": removal.digest,
                        "error": str(error),
                    },
                )
                continue
            done.append(removal)
            self.metrics.pruned(removal.reason)
            log.info(
                "pruned",
                extra={
                    "repository": removal.repository,
                    "digest": removal.digest,
                    "subject": removal.subject,
                    "format": removal.format,
                    "reason": removal.reason,
                    "tags": ",".join(removal.tags),
                },
            )
        return done, failed

    def _remove(self, removal: Removal) -> None:
        if removal.exists:
            # NotFound: gone already (an earlier, interrupted prune).
            with contextlib.suppress(NotFound):
                self.registry.delete_manifest(removal.repository, removal.digest)
        if not self.cascading:
            self.registry.remove_from_fallback_index(
                removal.repository, removal.subject, (removal.digest,)
            )

    def _harbor_inventory(self, repository: str, *, unwanted: bool) -> RepositoryInventory:
        assert isinstance(self.source, HarborSource)
        project, _, path = repository.partition("/")
        copies: dict[str, ConvertedCopy] = {}
        subjects: dict[str, Original | None] = {}
        for artifact in self.source.harbor.artifacts(project, path):
            if SOURCE_DIGEST in artifact.annotations:
                # A copy Harbor lists as an artifact of its own: not linked to an existing
                # subject (Harbor hides accessories it links).
                copy = _read_copy(self.registry, repository, artifact.digest, artifact.tags)
                if copy is not None:
                    copies[copy.digest] = copy
                continue
            subjects[artifact.digest] = original_from_artifact(repository, artifact)
            accelerated = [
                a for a in artifact.accessories if a.type not in NOT_ACCELERATED_ACCESSORY_TYPES
            ]
            if not unwanted or not accelerated:
                continue
            for descriptor in self.registry.referrers(repository, artifact.digest):
                producer = producer_of(descriptor.annotations, artifact.digest)
                if producer is not None:
                    copies[descriptor.digest] = ConvertedCopy(
                        descriptor.digest, descriptor.media_type, artifact.digest, producer
                    )
        for copy in copies.values():
            if copy.subject not in subjects:
                subjects[copy.subject] = _subject(self.registry, repository, copy.subject, {})
        return RepositoryInventory(repository, copies, subjects)


class RegistryInventory:
    """The copies of one repository of a plain registry, read from its tags (converted tags
    and `sha256-<hex>` fallback indexes) and the children of converted indexes."""

    def __init__(self, registry: RegistryClient, repository: str, busy: frozenset[str]) -> None:
        self.registry = registry
        self.repository = repository
        self.busy = busy
        self.tagged: dict[str, tuple[FetchedManifest, list[str]]] = {}
        self.fallbacks: dict[str, Index] = {}

    def read(self) -> RepositoryInventory:
        for tag in self.registry.list_tags(self.repository):
            try:
                fetched = self.registry.get_manifest(self.repository, tag)
            except (NotFound, InvalidManifest):
                continue
            if is_referrer_tag(tag):
                if tag.startswith(_FALLBACK_PREFIX) and isinstance(fetched.content, Index):
                    self.fallbacks["sha256:" + tag[len(_FALLBACK_PREFIX) :]] = fetched.content
                continue
            self.tagged.setdefault(fetched.digest, (fetched, []))[1].append(tag)
        copies = self._copies()
        tags_of = {digest: tuple(tags) for digest, (_, tags) in self.tagged.items()}
        subjects: dict[str, Original | None] = {}
        index_children: dict[str, tuple[str, ...]] = {}
        for digest, (fetched, _) in self.tagged.items():
            content = fetched.content
            if digest not in copies and isinstance(content, Index) and content.subject is None:
                index_children[digest] = tuple(m.digest for m in content.manifests)
        for copy in copies.values():
            if copy.subject in subjects:
                continue
            original = _subject(self.registry, self.repository, copy.subject, tags_of)
            subjects[copy.subject] = original
            if original is not None and original.media_type in INDEX_TYPES:
                index_children.setdefault(copy.subject, self._children(copy.subject))
        return RepositoryInventory(self.repository, copies, subjects, index_children, self.busy)

    def _children(self, digest: str) -> tuple[str, ...]:
        content = self.registry.get_manifest(self.repository, digest).content
        return tuple(m.digest for m in content.manifests) if isinstance(content, Index) else ()

    def _copies(self) -> dict[str, ConvertedCopy]:
        copies: dict[str, ConvertedCopy] = {}
        for digest, (fetched, tags) in self.tagged.items():
            copy = _copy_of(fetched, tuple(tags))
            if copy is not None:
                copies[digest] = copy
        for subject, index in self.fallbacks.items():
            for entry in index.manifests:
                if entry.digest in copies or producer_of(entry.annotations, subject) is None:
                    continue
                copies[entry.digest] = self._listed_copy(subject, entry)
        pending = [c for copy in copies.values() for c in copy.children if c not in copies]
        while pending:
            child = pending.pop()
            if child in copies:
                continue
            found = _read_copy(self.registry, self.repository, child, ())
            if found is not None:
                copies[child] = found
                pending.extend(found.children)
        return copies

    def _listed_copy(self, subject: str, entry: Descriptor) -> ConvertedCopy:
        """The copy a fallback entry of ours names; `exists` False when it is gone."""
        producer = producer_of(entry.annotations, subject)
        assert producer is not None
        try:
            fetched = self.registry.get_manifest(self.repository, entry.digest)
        except NotFound:
            return ConvertedCopy(entry.digest, entry.media_type, subject, producer, exists=False)
        copy = _copy_of(fetched, ())
        return copy or ConvertedCopy(entry.digest, entry.media_type, subject, producer)


def _copy_of(fetched: FetchedManifest, tags: tuple[str, ...]) -> ConvertedCopy | None:
    content = fetched.content
    if content.subject is None:
        return None
    producer = producer_of(content.annotations, content.subject.digest)
    if producer is None:
        return None
    children = tuple(m.digest for m in content.manifests) if isinstance(content, Index) else ()
    return ConvertedCopy(
        fetched.digest, fetched.media_type, content.subject.digest, producer, tags, children
    )


def _read_copy(
    registry: RegistryClient, repository: str, digest: str, tags: tuple[str, ...]
) -> ConvertedCopy | None:
    try:
        fetched = registry.get_manifest(repository, digest)
    except NotFound:
        return None
    return _copy_of(fetched, tags)


def _subject(
    registry: RegistryClient,
    repository: str,
    digest: str,
    tags_of: dict[str, tuple[str, ...]],
) -> Original | None:
    """The subject `digest` as an original, None when the registry no longer has it."""
    try:
        fetched = registry.get_manifest(repository, digest)
    except NotFound:
        return None
    return original_of(
        repository,
        fetched.digest,
        fetched.content,
        tags=tags_of.get(digest, ()),
        push_time=UNKNOWN_PUSH_TIME,
    )
