"""Directories only acceld's own user may change: the state directory, the work directory and
its per-process areas.

Another local user who can write in one of them can swap what acceld reads back (a symlinked
`proc-*` area, a renamed `layer-*` directory) and have acceld, perhaps as root, publish their
content as the accelerated copy of a real image. So each is refused when it is a symlink, is
owned by another user, or is writable by its group or others; created ones are 0700.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from harbor_api.errors import AcceldError


class UnsafeDirectory(AcceldError):
    """A directory another local user could change under acceld."""


def private_directory(path: Path, what: str) -> Path:
    """`path`, created 0700 when missing; `UnsafeDirectory` when another user could change it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_private_directory(path, what)
    return path


def check_private_directory(path: Path, what: str) -> None:
    """`UnsafeDirectory` unless `path` is a real directory of this user that no one else may
    write in."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeDirectory(
            f"{what} {path} is a symlink (to {os.readlink(path)}); give the directory itself"
        )
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeDirectory(f"{what} {path} is not a directory")
    if info.st_uid != os.geteuid():
        raise UnsafeDirectory(
            f"{what} {path} is owned by uid {info.st_uid}, not by the user acceld runs as "
            f"(uid {os.geteuid()}); chown it"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeDirectory(
            f"{what} {path} is writable by its group or others (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); chmod go-w it, 0700 is best"
        )
