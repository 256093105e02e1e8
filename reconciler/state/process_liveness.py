"""Whether a process of this host still runs: how leftovers of a crashed acceld are told apart."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True while `pid` names a live process (or a zombie not yet reaped by its parent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
