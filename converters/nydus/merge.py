"""Overlay the trees of an image's layers into one, applying OCI whiteouts.

Lowest layer first. In each upper layer, `.wh..wh..opq` in a directory hides everything the
lower layers put in it, `.wh.NAME` hides the lower `NAME`; then the upper entries land: a
directory over a directory takes the upper attributes and merges the children, anything else
replaces what was there. The upper root's attributes replace the root's. A directory an
upper layer holds only implicitly (no entry of its own, just children) keeps the lower
attributes, as `tar` extraction over an existing tree does. Input trees are not
changed: merged directories are new inodes, everything else is shared (so hardlinks stay
hardlinks, and a whiteout of one name of a hardlinked file leaves the other names).
"""

from __future__ import annotations

from collections.abc import Sequence

from converters.nydus.tree import Inode

WHITEOUT_PREFIX = b".wh."
OPAQUE = b".wh..wh..opq"


def merge_trees(roots: Sequence[Inode]) -> Inode:
    """The tree of the image whose layers' trees are `roots`, lowest first."""
    if not roots:
        raise ValueError("an image needs at least one layer")
    merged = _apply(None, roots[0])
    for upper in roots[1:]:
        merged = _apply(merged, upper)
    return merged


def _apply(lower: Inode | None, upper: Inode) -> Inode:
    """`upper` over `lower` (either may be a directory)."""
    if not upper.is_dir:
        return upper
    children: dict[bytes, Inode] = {}
    upper_children = upper.children or {}
    if lower is not None and lower.is_dir and OPAQUE not in upper_children:
        children.update(lower.children or {})
    for name in upper_children:
        if name.startswith(WHITEOUT_PREFIX) and name != OPAQUE:
            children.pop(name[len(WHITEOUT_PREFIX) :], None)
    for name, child in upper_children.items():
        if name.startswith(WHITEOUT_PREFIX):
            continue
        below = children.get(name)
        children[name] = _apply(below, child) if child.is_dir else child
    if upper.implicit and lower is not None and lower.is_dir:
        return lower.with_children(children)
    return upper.with_children(children)
