from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.state.keys import InvalidKey, Key

DIGEST = "sha256:" + "ab" * 32


def test_key_text_is_repository_at_digest_hash_format() -> None:
    key = Key("library/nginx", DIGEST, "zstd:chunked")
    assert str(key) == f"library/nginx@{DIGEST}#zstd:chunked"
    assert Key.parse(str(key)) == key


def test_keys_with_equal_fields_are_one_key() -> None:
    assert len({Key("p/r", DIGEST, "estargz"), Key.parse(f"p/r@{DIGEST}#estargz")}) == 1


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("p/r", "expected REPOSITORY@sha256:<hex>#FORMAT"),
        (f"p/r@{DIGEST}", "expected REPOSITORY@sha256:<hex>#FORMAT"),
        (f"p/r#estargz@{DIGEST}", "expected REPOSITORY@sha256:<hex>#FORMAT"),
        (f"P/r@{DIGEST}#estargz", "key repository 'P/r'"),
        (f"p//r@{DIGEST}#estargz", "key repository 'p//r'"),
        (f"@{DIGEST}#estargz", "key repository ''"),
        ("p/r@sha256:abc#estargz", "key digest 'sha256:abc'"),
        (f"p/r@{DIGEST.upper()}#estargz", "key digest"),
        (f"p/r@{DIGEST}#", "key format ''"),
        (f"p/r@{DIGEST}#E stargz", "key format 'E stargz'"),
    ],
)
def test_malformed_key_text_is_rejected_naming_the_part(text: str, complaint: str) -> None:
    with pytest.raises(InvalidKey) as caught:
        Key.parse(text)
    assert complaint in str(caught.value)
    assert repr(text) in str(caught.value)


def test_key_fields_are_checked_on_construction() -> None:
    with pytest.raises(InvalidKey, match="key digest 'latest'"):
        Key("p/r", "latest", "estargz")


_component = st.from_regex(r"[a-z0-9]{1,8}([._-][a-z0-9]{1,8}){0,2}", fullmatch=True)


@given(
    repository=st.lists(_component, min_size=1, max_size=4).map("/".join),
    digest=st.text("0123456789abcdef", min_size=64, max_size=64).map("sha256:".__add__),
    format_name=st.sampled_from(["estargz", "zstd:chunked", "nydus"]),
)
def test_any_valid_key_survives_a_round_trip_through_text(
    repository: str, digest: str, format_name: str
) -> None:
    key = Key(repository, digest, format_name)
    assert Key.parse(str(key)) == key
