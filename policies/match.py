"""Whether a policy applies to a project, a repository and its tags, or to a platform."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import combinations

from harbor_api.oci import Platform
from policies.glob import Glob, any_match, may_overlap
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
    return platform is None or platform.is_one_of(policy.platforms)


def policies_may_overlap(a: Policy, b: Policy) -> bool:
    """Whether some repository might be covered by both policies.

    A repository `r` of project `p` covered by a policy matches one of its repository globs
    and, since `p` is the first segment of `r`, one of its project globs followed by `/**`.
    A repository covered by both policies would match all four globs at once, so every pair of
    them must overlap (`policies.glob.may_overlap`); the policies count as overlapping unless
    that is disproved for each combination. This is conservative: it may report a conflict
    between policies that never meet, never the reverse. Tags do not separate policies (one
    image can carry tags matching each), nor do platforms (an index is converted as a whole).
    """
    return any(
        all(may_overlap(x, y) for x, y in combinations((*scope_a, *scope_b), 2))
        for scope_a in _scopes(a)
        for scope_b in _scopes(b)
    )


def _scopes(policy: Policy) -> list[tuple[Glob, Glob]]:
    """(project glob as a repository glob, repository glob) pairs of a policy."""
    return [
        (Glob.parse(f"{project.pattern}/**"), repository)
        for project in policy.projects
        for repository in policy.repositories
    ]
