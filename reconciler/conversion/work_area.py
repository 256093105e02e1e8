"""Each process converts in its own subdirectory of the work directory, so that a crashed
process's leftovers can be told apart from the files of a live one (a backfill may run beside
the daemon) and removed at the next start."""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

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
        if (
            found
            and entry.is_dir()
            and int(found[1]) != os.getpid()
            and not pid_alive(int(found[1]))
        ):
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    if removed:
        log.info("removed work areas of crashed processes", extra={"count": removed})
    return removed


def own_area(work_dir: Path) -> Path:
    """This process's area, after clearing the areas of dead ones."""
    remove_stale_areas(work_dir)
    area = work_dir / f"proc-{os.getpid()}"
    area.mkdir(mode=0o700, parents=True, exist_ok=True)
    return area
