import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.glob import Glob, GlobError, may_overlap

segment = st.text(alphabet="abc.-_", min_size=1, max_size=5)
name = st.lists(segment, min_size=1, max_size=4).map("/".join)
pattern_char = st.sampled_from(["a", "b", "c", "/", "*", "**", "?", "[ab]", "[!a]", "**/"])
pattern = (
    st.lists(pattern_char, min_size=1, max_size=6).map("".join).filter(lambda p: "***" not in p)
)


@settings(deadline=None)
@given(segment)
def test_star_matches_any_single_segment(text: str) -> None:
    assert Glob.parse("*").matches(text)


@settings(deadline=None)
@given(st.lists(segment, min_size=2, max_size=4).map("/".join))
def test_star_never_crosses_a_slash_but_double_star_does(text: str) -> None:
    assert not Glob.parse("*").matches(text)
    assert Glob.parse("**").matches(text)


@settings(deadline=None)
@given(st.lists(segment, min_size=0, max_size=3), segment)
def test_double_star_slash_matches_zero_or_more_whole_segments(
    middle: list[str], last: str
) -> None:
    text = "/".join(["library", *middle, last])
    assert Glob.parse(f"library/**/{last}").matches(text)
    assert Glob.parse(f"**/{last}").matches("/".join([*middle, last]))


@settings(deadline=None)
@given(name)
def test_a_name_without_wildcards_matches_exactly_itself(text: str) -> None:
    glob = Glob.parse(text)
    assert glob.matches(text)
    assert not glob.matches(text + "x")
    assert not glob.matches("x" + text)


@settings(deadline=None)
@given(pattern, name)
def test_glob_agrees_with_an_independent_segment_aware_regex(p: str, text: str) -> None:
    expected = _reference_regex(p)
    assert Glob.parse(p).matches(text) == bool(re.fullmatch(expected, text))


def _reference_regex(p: str) -> str:
    """A second, independent reading of the rules, for the tokens `pattern` generates."""
    out, i = "", 0
    while i < len(p):
        if p.startswith("**/", i) and (i == 0 or p[i - 1] == "/"):
            out, i = out + "(.*/)?", i + 3
        elif p.startswith("**", i):
            out, i = out + ".*", i + 2
        elif p[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif p[i] == "?":
            out, i = out + "[^/]", i + 1
        elif p.startswith("[ab]", i):
            out, i = out + "[ab]", i + 4
        elif p.startswith("[!a]", i):
            out, i = out + "[^a/]", i + 4
        else:
            out, i = out + re.escape(p[i]), i + 1
    return out


@pytest.mark.parametrize(
    ("glob", "text", "expected"),
    [
        ("library/*", "library/nginx", True),
        ("library/*", "library/team/nginx", False),
        ("library/**", "library/team/nginx", True),
        ("library/**/nginx", "library/nginx", True),
        ("v?.*", "v1.2", True),
        ("v?.*", "v10.2", False),
        ("[!d]*", "dev", False),
        ("[^d]*", "prod", True),
        ("[a-c]x", "bx", True),
        ("[]]", "]", True),
        ("a\\*", "a*", True),
        ("a\\*", "ab", False),
        ("[ab]", "/", False),
    ],
)
def test_documented_examples(glob: str, text: str, expected: bool) -> None:
    assert Glob.parse(glob).matches(text) is expected


@pytest.mark.parametrize(
    ("glob", "message"),
    [
        ("[v*", 'invalid glob "[v*": missing "]"'),
        ("", 'invalid glob "": empty pattern'),
        ("a***", 'invalid glob "a***": "***" is not a pattern'),
        ("x\\", 'invalid glob "x\\": trailing "\\"'),
        ("[z-a]", 'invalid glob "[z-a]": empty range "z-a"'),
        ("[a/]", 'invalid glob "[a/]": "/" cannot be in a [...] class'),
    ],
)
def test_invalid_globs_are_rejected_with_the_reason(glob: str, message: str) -> None:
    with pytest.raises(GlobError) as caught:
        Glob.parse(glob)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("library/**", "web/**", False),
        ("library/**", "library/nginx", True),
        ("library/nginx", "library/redis", False),
        ("*/nginx", "*/redis", False),
        ("lib*", "library/*", True),
        ("**", "web/x", True),
        ("[ab]/x", "c/x", False),
    ],
)
def test_overlap_is_disproved_only_by_literal_prefix_or_suffix(
    a: str, b: str, overlap: bool
) -> None:
    assert may_overlap(Glob.parse(a), Glob.parse(b)) is overlap
