"""Peak resident memory of the current process image."""

from __future__ import annotations

from pathlib import Path


def peak_rss_kib() -> int:
    """VmHWM from /proc: unlike ru_maxrss it restarts at exec, so a child spawned from a big
    parent reports its own peak only."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")
