"""The order eStargz entries are written in: duplicates resolved, prioritized files first.

Follows stargz-snapshotter's `sortEntries`: a later entry with the same name replaces the
earlier one and takes its later position; input landmarks and TOC are dropped; prioritized
files move to the front in the given order, each preceded by its parent directories and, for a
hardlink, by its target. Prioritized names absent from the layer are skipped.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Protocol, TypeVar

from converters import tar_header as th

PREFETCH_LANDMARK = b".prefetch.landmark"
NO_PREFETCH_LANDMARK = b".no.prefetch.landmark"
TOC_NAME = b"stargz.index.json"
RESERVED_NAMES = frozenset({PREFETCH_LANDMARK, NO_PREFETCH_LANDMARK, TOC_NAME})


class Ordered(Protocol):
    @property
    def key(self) -> bytes: ...

    @property
    def header(self) -> th.TarHeader: ...


E = TypeVar("E", bound=Ordered)


def deduplicate(entries: Sequence[E]) -> list[E]:
    """Entries without input landmarks/TOC; of duplicate names only the last, at its place."""
    last = {entry.key: index for index, entry in enumerate(entries)}
    return [
        entry
        for index, entry in enumerate(entries)
        if last[entry.key] == index and entry.key not in RESERVED_NAMES
    ]


def prioritize(entries: Sequence[E], prioritized: Sequence[bytes]) -> tuple[list[E], list[E]]:
    """(moved to the front, the rest in original order)."""
    by_key = {entry.key: entry for entry in entries}
    moved: dict[bytes, E] = {}

    visiting: set[bytes] = set()

    def move(key: bytes) -> None:
        if key in moved or key in visiting:
            return
        visiting.add(key)
        parts = key.split(b"/") if key else []
        for ancestor in [b"", *(b"/".join(parts[:end]) for end in range(1, len(parts)))]:
            if ancestor in by_key:
                moved.setdefault(ancestor, by_key[ancestor])
        entry = by_key.get(key)
        if entry is None:
            return
        if entry.header.typeflag == th.LINK:
            move(posixpath.normpath(b"/" + entry.header.linkname).lstrip(b"/"))
        moved.setdefault(key, entry)

    for name in prioritized:
        key = posixpath.normpath(b"/" + name).lstrip(b"/")
        if key in by_key:
            move(key)
    front = list(moved.values())
    return front, [entry for entry in entries if entry.key not in moved]
