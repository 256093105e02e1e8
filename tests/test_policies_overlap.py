"""Overlap is conservative: whatever two globs or two policies can both match, they overlap."""

from hypothesis import given, settings
from hypothesis import strategies as st

from policies.glob import Glob, may_overlap
from policies.match import policies_may_overlap, policy_matches
from policies.model import Policy


@st.composite
def glob_matching(draw: st.DrawFn, text: str) -> str:
    """A glob built from `text` by turning some characters into wildcards that match them."""
    out = ""
    for char in text:
        choices = ["**", char] if char == "/" else [char, "?", "*", "**", f"[{char}z]"]
        piece = draw(st.sampled_from(choices))
        if out.endswith("*") and piece.startswith("*"):
            piece = char
        out += piece
    return out


@st.composite
def policy_covering(draw: st.DrawFn, repository: str, name: str) -> Policy:
    """A policy whose project and repository globs both match `repository`, among others."""
    project = repository.split("/", 1)[0]
    others = st.lists(st.sampled_from(["x", "x/*", "b*", "*/a", "**/b"]), max_size=2)
    return Policy(
        name=name,
        projects=tuple(
            Glob.parse(g) for g in [*draw(others), draw(glob_matching(project))] if "/" not in g
        ),
        repositories=tuple(Glob.parse(g) for g in [*draw(others), draw(glob_matching(repository))]),
    )


segment = st.text(alphabet="ab", min_size=1, max_size=3)
repository = st.lists(segment, min_size=2, max_size=3).map("/".join)


@settings(max_examples=300, deadline=None)
@given(st.data(), st.text(alphabet="ab/", min_size=1, max_size=8))
def test_globs_sharing_a_match_always_overlap(data: st.DataObject, text: str) -> None:
    first = Glob.parse(data.draw(glob_matching(text)))
    second = Glob.parse(data.draw(glob_matching(text)))
    assert first.matches(text)
    assert second.matches(text)
    assert may_overlap(first, second)
    assert may_overlap(second, first)


@settings(max_examples=200, deadline=None)
@given(st.data(), repository)
def test_policies_covering_one_repository_always_overlap(data: st.DataObject, repo: str) -> None:
    a = data.draw(policy_covering(repo, "a"))
    b = data.draw(policy_covering(repo, "b"))
    assert policy_matches(a, repo, [])
    assert policy_matches(b, repo, [])
    assert policies_may_overlap(a, b)
    assert policies_may_overlap(b, a)


def test_a_project_filter_and_a_repository_filter_can_prove_policies_apart() -> None:
    only_a = Policy("a", projects=(Glob.parse("a"),))
    only_b_repos = Policy("b", repositories=(Glob.parse("b/**"),))
    everything = Policy("all")
    assert not policies_may_overlap(only_a, only_b_repos)
    assert policies_may_overlap(only_a, everything)
    assert policies_may_overlap(only_b_repos, everything)
