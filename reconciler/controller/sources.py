"""Where originals come from: Harbor's REST API, or a plain registry's catalog and tags.

A source walks projects, repositories and candidate originals for a scan, and describes one
original afresh for the reconcile step. Harbor's artifact list brings each original's
accessories on the same page, so a scan costs one call per 100 artifacts; a plain registry has no
such list, so its scan reads each tag's manifest and the referrers of each digest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from harbor_api.errors import AcceldError, NotFound, PermanentError
from harbor_api.harbor import HarborClient
from harbor_api.harbor_models import Accessory, Artifact
from harbor_api.oci import INDEX_TYPES, is_referrer_tag
from harbor_api.registry import FetchedManifest, RegistryClient
from policies.desired import Original, original_of

# A plain registry gives no push time; for it `min_age` counts from the epoch.
UNKNOWN_PUSH_TIME = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Candidate:
    """An original as a source sees it, with its accessories when the source lists them.

    `accessories` is None when the source cannot list them (a plain registry): the referrers
    of the digest are then read instead.
    """

    original: Original
    accessories: tuple[Accessory, ...] | None = None


@dataclass(frozen=True)
class UnreadableImage:
    """An image a source found but could not read (a manifest it cannot parse): the scan
    reports and skips it, and goes on with the next one."""

    repository: str
    reference: str
    error: AcceldError


class Source(Protocol):
    registry: RegistryClient

    def verify(self) -> None:
        """Check the source answers and accepts the credentials (a wrong Harbor secret is
        otherwise silent: Harbor answers as for an anonymous caller)."""

    def projects(self) -> Iterator[str]: ...

    def repositories(self, project: str) -> Iterator[str]:
        """Full repository names (`project/path`) of `project`."""

    def candidates(
        self, repository: str, pushed_since: datetime | None
    ) -> Iterator[Candidate | UnreadableImage]:
        """Possible originals of `repository`, only those pushed since a time when given."""

    def describe(self, repository: str, digest: str) -> Original | None:
        """The original `repository@digest` as it is now; None when it is gone."""


def original_from_artifact(repository: str, artifact: Artifact) -> Original:
    # Harbor's `media_type` is the config media type of a manifest but the index's own media
    # type for an index, whose artifact type is "" unless the index sets one.
    if artifact.manifest_media_type in INDEX_TYPES:
        artifact_type = artifact.artifact_type
    else:
        artifact_type = artifact.artifact_type or artifact.media_type
    return Original(
        repository=repository,
        digest=artifact.digest,
        media_type=artifact.manifest_media_type,
        artifact_type=artifact_type,
        tags=artifact.tags,
        push_time=artifact.push_time or UNKNOWN_PUSH_TIME,
        annotations=dict(artifact.annotations),
        harbor_type=artifact.type,
    )


class HarborSource:
    """Originals as Harbor lists them (accessories and untagged index children hidden)."""

    def __init__(self, harbor: HarborClient, registry: RegistryClient) -> None:
        self.harbor = harbor
        self.registry = registry

    def verify(self) -> None:
        self.harbor.systeminfo()

    def projects(self) -> Iterator[str]:
        return (project.name for project in self.harbor.projects())

    def repositories(self, project: str) -> Iterator[str]:
        return (repository.name for repository in self.harbor.repositories(project))

    def candidates(
        self, repository: str, pushed_since: datetime | None
    ) -> Iterator[Candidate | UnreadableImage]:
        project, _, path = repository.partition("/")
        for artifact in self.harbor.artifacts(
            project, path, with_accessory=True, with_tag=True, pushed_since=pushed_since
        ):
            # A legacy cosign signature looks like an image to Harbor's list; only its tag tells.
            if artifact.tags and all(is_referrer_tag(tag) for tag in artifact.tags):
                continue
            yield Candidate(original_from_artifact(repository, artifact), artifact.accessories)

    def describe(self, repository: str, digest: str) -> Original | None:
        # The manifest says what Harbor's artifact model does not (its subject); Harbor says
        # what a registry does not (tags of a digest, push time).
        try:
            fetched = self.registry.get_manifest(repository, digest)
        except NotFound:
            return None
        project, _, path = repository.partition("/")
        try:
            artifact = self.harbor.artifact(project, path, digest)
        except NotFound:
            return None
        return original_of(
            repository,
            fetched.digest,
            fetched.content,
            tags=artifact.tags,
            push_time=artifact.push_time or UNKNOWN_PUSH_TIME,
            harbor_type=artifact.type,
        )


class RegistrySource:
    """Originals of a plain OCI registry: catalog, tag lists and each tag's manifest."""

    def __init__(self, registry: RegistryClient) -> None:
        self.registry = registry

    def verify(self) -> None:
        self.registry.ping()

    def projects(self) -> Iterator[str]:
        seen: set[str] = set()
        for repository in self.registry.catalog():
            project = repository.split("/", 1)[0]
            if project not in seen:
                seen.add(project)
                yield project

    def repositories(self, project: str) -> Iterator[str]:
        return (
            repository
            for repository in self.registry.catalog()
            if repository.split("/", 1)[0] == project
        )

    def candidates(
        self, repository: str, pushed_since: datetime | None
    ) -> Iterator[Candidate | UnreadableImage]:
        # A registry keeps no push time: every scan of it is a full one.
        by_digest: dict[str, tuple[FetchedManifest, list[str]]] = {}
        for tag in self.registry.list_tags(repository):
            if is_referrer_tag(tag):
                continue
            try:
                fetched = self.registry.get_manifest(repository, tag)
            except NotFound:
                continue  # deleted between the tag list and now
            except PermanentError as error:
                yield UnreadableImage(repository, tag, error)
                continue
            by_digest.setdefault(fetched.digest, (fetched, []))[1].append(tag)
        for fetched, tags in by_digest.values():
            yield Candidate(
                original_of(
                    repository,
                    fetched.digest,
                    fetched.content,
                    tags=tuple(tags),
                    push_time=UNKNOWN_PUSH_TIME,
                )
            )

    def describe(self, repository: str, digest: str) -> Original | None:
        try:
            fetched = self.registry.get_manifest(repository, digest)
        except NotFound:
            return None
        tags = tuple(
            tag
            for tag in self.registry.list_tags(repository)
            if not is_referrer_tag(tag) and self._tag_digest(repository, tag) == digest
        )
        return original_of(
            repository, fetched.digest, fetched.content, tags=tags, push_time=UNKNOWN_PUSH_TIME
        )

    def _tag_digest(self, repository: str, tag: str) -> str | None:
        descriptor = self.registry.head_manifest(repository, tag)
        return descriptor.digest if descriptor is not None else None
