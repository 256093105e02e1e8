"""Entry names inside a layer: validation and the cleaned form the TOC and ordering use."""

from __future__ import annotations

import posixpath

from converters.errors import LayerRejected


def clean_name(name: bytes, where: str) -> bytes:
    """`name` without "./", duplicate or trailing slashes; rejects absolute paths and "..".

    The root directory ("./") cleans to b"".
    """
    if not name:
        raise LayerRejected(f"{where}: empty name")
    if name.startswith(b"/"):
        raise LayerRejected(f"{where}: absolute path {_show(name)}")
    if b".." in name.split(b"/"):
        raise LayerRejected(f"{where}: path {_show(name)} has a '..' component")
    if b"\x00" in name:
        raise LayerRejected(f"{where}: path {_show(name)} contains a NUL byte")
    return posixpath.normpath(b"/" + name).lstrip(b"/")


def _show(name: bytes) -> str:
    return repr(name.decode("utf-8", "replace"))


def display(name: bytes) -> str:
    """A name as TOC JSON and messages show it: UTF-8, invalid bytes as U+FFFD (as Go does)."""
    return name.decode("utf-8", "replace")
