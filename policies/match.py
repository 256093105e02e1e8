"""Whether a policy applies to a project, a repository and its tags, or to a platform."""

from __future__ import annotations

from collections.abc import Iterable

from harbor_api.oci import Platform
from policies.glob import any_match, may_overlap
from policies.model import Policy


def policy_matches_project(policy: Policy, project: str) -> bool:
    return any_match(policy.projects, project)


def matching_tags(policy: Policy, tags: Iterable[str]) -> tuple[str, ...]:
    """The tags that qualify an image for `policy`, in their given order."""
    return tuple(
        tag
        for tag in tags
        if (not policy.tags or any_match(policy.tags, tag))
        and not any_match(policy.exclude_tags, tag)
    )


def policy_matches(policy: Policy, repository: str, tags: Iterable[str]) -> bool:
    """Whether `policy` covers an image of `repository` (full name `project/path`) with `tags`."""
    project = repository.split("/", 1)[0]
    if not (policy_matches_project(policy, project) and any_match(policy.repositories, repository)):
        return False
    tags = tuple(tags)
    if not policy.tags and not tags:
        return True
    return bool(matching_tags(policy, tags))


def policy_matches_platform(policy: Policy, platform: Platform | None) -> bool:
    """Whether `policy` accepts a platform manifest; None (an index or a single image) passes."""
    if platform is None or not policy.platforms:
        return True
    return any(platform.matches(wanted) for wanted in policy.platforms)


def policies_may_overlap(a: Policy, b: Policy) -> bool:
    """Whether some repository might be covered by both policies.

    Conservative: only project and repository patterns are compared, pairwise with
    `policies.glob.may_overlap`, and the policies count as overlapping unless every project
    pair or every repository pair is proven disjoint. Tags never separate two policies (one
    image can carry tags matching each), and neither do platforms (an index is converted as a
    whole under one tag suffix).
    """
    projects = any(may_overlap(x, y) for x in a.projects for y in b.projects)
    repositories = any(may_overlap(x, y) for x in a.repositories for y in b.repositories)
    return projects and repositories
