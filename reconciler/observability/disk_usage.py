"""How much disk a directory tree takes, for the work_dir usage gauge."""

from __future__ import annotations

import os
from pathlib import Path


def disk_usage_bytes(root: Path) -> int:
    """Bytes allocated to the files under `root` (sparse files count what they hold); files
    that vanish while walked, as spooled layers do, are skipped. 0 when `root` is missing."""
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
            except OSError:
                continue
    return total
