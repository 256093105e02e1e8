"""Each process converts in its own subdirectory of the work directory, so that a crashed
process's leftovers can be told apart from the files of a live one (a backfill may run beside
the daemon) and removed at the next start.

The work directory and each area must be this user's alone (`private_dirs`): a world-writable
work directory let another local user plant a symlinked `proc-*` area or swap a `layer-*`
directory, and have their content published as an image's accelerated copy."""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

from reconciler.state.private_dirs import check_private_directory, private_directory
from reconciler.state.process_liveness import pid_alive

log = logging.getLogger(__name__)

_AREA = re.compile(r"^proc-(\d+)$")


def remove_stale_areas(work_dir: Path) -> int:
    """Delete the areas of processes that no longer run; the number removed."""
    removed = 0
    if not work_dir.is_dir():
        return 0
    for entry in work_dir.iterdir():
        found = _AREA.match(entry.name)
        if not found or int(found[1]) == os.getpid() or pid_alive(int(found[1])):
            continue
        if entry.is_symlink() or entry.lstat().st_uid != os.geteuid():
            log.warning("not removing a work area acceld did not make", extra={"path": entry})
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed += 1
    if removed:
        log.info("removed work areas of crashed processes", extra={"count": removed})
    return removed


def own_area(work_dir: Path) -> Path:
    """This process's area (0700), after clearing the areas of dead ones; `UnsafeDirectory`
    when the work directory or an area already there is not this user's alone."""
    private_directory(work_dir, "work_dir")
    remove_stale_areas(work_dir)
    area = work_dir / f"proc-{os.getpid()}"
    try:
        area.mkdir(mode=0o700)
    except FileExistsError:
        check_private_directory(area, "work area")  # a crashed process of the same pid's
    return area
