"""Durations (`90s`, `5m`, `6h`, `1h30m`, `7d`) and sizes (`512MiB`, `20GiB`, `1GB`) in config.

Both reject bare numbers other than 0: a bare `20` could mean bytes or gigabytes, seconds or
minutes, and a silent wrong guess is worse than an error.
"""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^(?:\d+[smhd])+$")
_DURATION_PART = re.compile(r"(\d+)([smhd])")

_SIZE_UNITS = {
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)$")


def parse_duration(value: object) -> timedelta:
    """A duration from config; raises ValueError saying what was expected."""
    if value in (0, "0") and not isinstance(value, bool):
        return timedelta(0)
    text = value.strip() if isinstance(value, str) else None
    if text is None or not _DURATION.match(text):
        raise ValueError(f"expected a duration like 90s, 5m, 6h or 1h30m, got {value!r}")
    seconds = sum(int(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text))
    return timedelta(seconds=seconds)


def parse_size(value: object) -> int:
    """A size in bytes from config; raises ValueError saying what was expected."""
    if value in (0, "0") and not isinstance(value, bool):
        return 0
    match = _SIZE.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"expected a size like 512MiB or 20GiB, got {value!r}")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
