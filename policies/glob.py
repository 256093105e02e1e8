"""Glob patterns for project, repository and tag names.

`*` matches any run of characters within one path segment, `**` any run across `/`, and `**/`
(at the start or after a `/`) zero or more whole segments, so `library/**/nginx` matches
`library/nginx` and `library/a/b/nginx`. `?` is one character other than `/`. `[abc]`, `[a-z]`
and `[!a-z]` (or `[^a-z]`) are classes of one character other than `/`. `\\` makes the next
character literal. A pattern matches the whole name, never a part of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class GlobError(ValueError):
    """A pattern that is not a valid glob; the message says what is wrong."""


@dataclass(frozen=True)
class _Literal:
    text: str


@dataclass(frozen=True)
class _Wildcard:
    regex: str


_Token = _Literal | _Wildcard


def _class_regex(pattern: str, start: int) -> tuple[str, int]:
    """The regex of the class opening at `pattern[start]` and the index just past its `]`."""
    i = start + 1
    negate = i < len(pattern) and pattern[i] in "!^"
    if negate:
        i += 1
    members: list[str] = []
    first = True
    while i < len(pattern) and (pattern[i] != "]" or first):
        first = False
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            i += 1
            char = pattern[i]
        if char == "/":
            raise GlobError(f'invalid glob "{pattern}": "/" cannot be in a [...] class')
        if i + 2 < len(pattern) and pattern[i + 1] == "-" and pattern[i + 2] != "]":
            high = pattern[i + 2]
            if high < char:
                raise GlobError(f'invalid glob "{pattern}": empty range "{char}-{high}"')
            members.append(f"{re.escape(char)}-{re.escape(high)}")
            i += 3
            continue
        members.append(re.escape(char))
        i += 1
    if i >= len(pattern):
        raise GlobError(f'invalid glob "{pattern}": missing "]"')
    body = "".join(members)
    return (f"[^/{body}]" if negate else f"[{body}]"), i + 1


def _tokens(pattern: str) -> tuple[_Token, ...]:
    if not pattern:
        raise GlobError('invalid glob "": empty pattern')
    tokens: list[_Token] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            if pattern.startswith("**", i):
                at_segment_start = i == 0 or pattern[i - 1] == "/"
                if pattern.startswith("***", i):
                    raise GlobError(f'invalid glob "{pattern}": "***" is not a pattern')
                if at_segment_start and pattern.startswith("**/", i):
                    tokens.append(_Wildcard("(?:.*/)?"))
                    i += 3
                else:
                    tokens.append(_Wildcard(".*"))
                    i += 2
            else:
                tokens.append(_Wildcard("[^/]*"))
                i += 1
        elif char == "?":
            tokens.append(_Wildcard("[^/]"))
            i += 1
        elif char == "[":
            regex, i = _class_regex(pattern, i)
            tokens.append(_Wildcard(regex))
        elif char == "\\":
            if i + 1 >= len(pattern):
                raise GlobError(f'invalid glob "{pattern}": trailing "\\"')
            tokens.append(_Literal(pattern[i + 1]))
            i += 2
        else:
            tokens.append(_Literal(char))
            i += 1
    return tuple(tokens)


def _literal_run(tokens: tuple[_Token, ...]) -> str:
    run: list[str] = []
    for token in tokens:
        if not isinstance(token, _Literal):
            break
        run.append(token.text)
    return "".join(run)


@dataclass(frozen=True)
class Glob:
    """A compiled glob; `Glob.parse` raises `GlobError` for an invalid pattern."""

    pattern: str
    _regex: re.Pattern[str] = field(repr=False, compare=False)
    prefix: str = field(repr=False, compare=False)
    """Text every matching name starts with."""
    suffix: str = field(repr=False, compare=False)
    """Text every matching name ends with."""
    is_literal: bool = field(repr=False, compare=False)

    @classmethod
    def parse(cls, pattern: str) -> Glob:
        tokens = _tokens(pattern)
        regex = "".join(re.escape(t.text) if isinstance(t, _Literal) else t.regex for t in tokens)
        return cls(
            pattern=pattern,
            _regex=re.compile(regex, re.DOTALL),
            prefix=_literal_run(tokens),
            suffix=_literal_run(tokens[::-1])[::-1],
            is_literal=all(isinstance(t, _Literal) for t in tokens),
        )

    def matches(self, name: str) -> bool:
        return self._regex.fullmatch(name) is not None

    def __str__(self) -> str:
        return self.pattern


def may_overlap(a: Glob, b: Glob) -> bool:
    """Whether some name might match both globs; False only when that is proven impossible.

    Every name `a` matches starts with `a.prefix` and ends with `a.suffix` (the literal text
    before the first and after the last wildcard). Two globs are disjoint when one prefix is not
    a prefix of the other, or one suffix not a suffix of the other; two literal globs are
    disjoint when they differ. Anything else counts as overlapping: it errs towards reporting a
    conflict, never towards missing one.
    """
    if a.is_literal and b.is_literal:
        return a.pattern == b.pattern
    if a.is_literal:
        return b.matches(a.pattern)
    if b.is_literal:
        return a.matches(b.pattern)
    prefixes_agree = a.prefix.startswith(b.prefix) or b.prefix.startswith(a.prefix)
    suffixes_agree = a.suffix.endswith(b.suffix) or b.suffix.endswith(a.suffix)
    return prefixes_agree and suffixes_agree


def any_match(globs: tuple[Glob, ...], name: str) -> bool:
    return any(glob.matches(name) for glob in globs)
