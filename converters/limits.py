"""Bounds a source layer must stay within before any converter accepts it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerLimits:
    """Limits that turn hostile or broken layers into a terminal `LayerRejected`."""

    max_uncompressed_size: int = 64 << 30
    """Largest decompressed tar stream accepted, in bytes."""
    max_compression_ratio: float = 10_000.0
    """Largest decompressed/compressed ratio accepted (deflate itself tops out near 1032)."""
    max_pax_header_size: int = 1 << 20
    """Largest PAX extended header or GNU long name/link record, in bytes."""
    max_entries: int = 2_000_000
    """Largest number of tar entries in one layer."""

    def __post_init__(self) -> None:
        for name in ("max_uncompressed_size", "max_pax_header_size", "max_entries"):
            if getattr(self, name) <= 0:
                raise ValueError(f"LayerLimits.{name} must be positive")
        if self.max_compression_ratio < 1:
            raise ValueError("LayerLimits.max_compression_ratio must be at least 1")
