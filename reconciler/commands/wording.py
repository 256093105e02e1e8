"""How numbers read in terminal output: counted nouns in the right number, sizes in human units."""

from __future__ import annotations

_IRREGULAR = {"repository": "repositories", "policy": "policies", "process": "processes"}


def plural(count: int, noun: str) -> str:
    """`1 project`, `2 projects`, `3 repositories`, `2 enabled policies`."""
    if count == 1:
        return f"{count} {noun}"
    head, _, last = noun.rpartition(" ")
    many = _IRREGULAR.get(last, f"{last}s")
    return f"{count} {head + ' ' if head else ''}{many}"


def human_size(count: float) -> str:
    """`512 B`, `1.5 KiB`, `20.0 GiB`: binary units, one decimal."""
    if count < 1024:
        return f"{int(count)} B"
    value = count / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
