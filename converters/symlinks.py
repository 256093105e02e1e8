"""Detect symlink chains inside a layer that never resolve (a cycle, like the kernel's ELOOP)."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

# The Linux kernel gives up after 40 symlinks in one lookup; a longer chain is a loop to it.
MAX_HOPS = 40


def _components(path: bytes) -> list[bytes]:
    return [part for part in path.split(b"/") if part and part != b"."]


def _resolve_chain(start: bytes, links: Mapping[bytes, bytes]) -> list[bytes] | None:
    """The symlinks visited resolving `start`'s target, if they loop; None when it resolves."""
    chain = [start]
    directory = posixpath.dirname(start)
    pending = _target_path(directory, links[start])
    seen = {pending}
    while True:
        parts = _components(pending)
        for index in range(len(parts)):
            prefix = b"/".join(parts[: index + 1])
            target = links.get(prefix)
            if target is None:
                continue
            chain.append(prefix)
            rest = b"/".join(parts[index + 1 :])
            pending = _target_path(posixpath.dirname(prefix), target)
            if rest:
                pending = posixpath.join(pending, rest)
            pending = _normalize(pending)
            if pending in seen or len(chain) > MAX_HOPS:
                return chain
            seen.add(pending)
            break
        else:
            return None


def _target_path(directory: bytes, target: bytes) -> bytes:
    if target.startswith(b"/"):
        return _normalize(target)
    return _normalize(posixpath.join(directory, target))


def _normalize(path: bytes) -> bytes:
    return posixpath.normpath(b"/" + path).lstrip(b"/")


def find_symlink_loop(links: Mapping[bytes, bytes]) -> list[bytes] | None:
    """The first symlink (in mapping order) whose resolution loops, with the chain it took.

    `links` maps each symlink's cleaned path to its raw target.
    """
    for name in links:
        chain = _resolve_chain(name, links)
        if chain is not None:
            return chain
    return None
