"""Bounds a source layer must stay within before any converter accepts it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerLimits:
    """Limits that turn hostile or broken layers into a terminal `LayerRejected`."""

    max_uncompressed_size: int = 64 << 30
    """Largest decompressed tar stream accepted, in bytes."""
    max_compression_ratio: float = 1_000.0
    """Largest decompressed/compressed ratio accepted, the compressed count including what the
    decompressor has read ahead. Deflate itself tops out at 1,030:1, so this is the highest
    value a gzip bomb still trips. Measured on a 4 MiB gzip of 4 GiB of zeros (1,030.4:1): the
    single-threaded reader trips it after 1,001 MiB, the threaded one (used with more than one
    worker, it reads several MiB ahead) after 3,976 MiB; at 500 they trip after 501 and
    1,988 MiB. zstd goes far beyond: a 32 KiB zstd of 1 GiB of zeros (32,500:1) trips it after
    32 MiB. Disk is bounded by the work-dir budget anyway; this bounds the time a bomb costs."""
    max_pax_header_size: int = 1 << 20
    """Largest PAX extended header or GNU long name/link record, in bytes."""
    max_entries: int = 2_000_000
    """Largest number of tar entries in one layer."""
    max_entry_metadata: int = 2 << 20
    """Largest metadata of one entry, in bytes: its 512-byte header blocks plus every PAX
    extended header and GNU long name/link record in front of it (names, link targets, PAX
    records, xattrs). Twice `max_pax_header_size` by default: one full record plus a long name."""
    max_layer_metadata: int = 512 << 20
    """Largest metadata of all entries of one layer, counted as `max_entry_metadata` counts it.

    Converters hold every entry's metadata until the layer is written (duplicates and ordering
    need the whole list), so this bounds their memory: a 512-byte header block stands for the
    few hundred bytes each entry costs in memory besides its names and records. The default
    admits about a million plain entries and keeps the eStargz converter's peak RSS under
    640 MiB with 2 workers (measured: 492 MiB for 1,040,000 empty entries, 547 MiB for 500
    entries of 1 MiB xattrs, 539 MiB refusing 1,024 such entries).
    """

    def __post_init__(self) -> None:
        for name in (
            "max_uncompressed_size",
            "max_pax_header_size",
            "max_entries",
            "max_entry_metadata",
            "max_layer_metadata",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"LayerLimits.{name} must be positive")
        if self.max_compression_ratio < 1:
            raise ValueError("LayerLimits.max_compression_ratio must be at least 1")
