"""Convert one layer blob (gzip, zstd or plain tar) into an eStargz blob.

Two passes. The first decompresses the source, checks every entry and spills payloads to a
temporary file in `work_dir` (duplicates and prioritized files reorder entries, so nothing can
be written before the whole layer is known). The second writes the entries in eStargz order as
gzip members compressed on several threads, then the TOC member and the footer. Memory stays
bounded by the entry metadata (at most `LayerLimits.max_layer_metadata`) plus a few chunks in
flight, whatever the layer size. Before anything is written, the entries in their final order
are checked against what a Go eStargz reader needs (`estargz_reader_rules.py`).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from converters import tar_header as th
from converters.batched_writes import BatchedWriter
from converters.entry_names import clean_name, display
from converters.entry_order import (
    NO_PREFETCH_LANDMARK,
    PREFETCH_LANDMARK,
    deduplicate,
    prioritize,
)
from converters.errors import LayerRejected
from converters.estargz_blob import ConvertedLayer, SpilledEntry, SpillRoom, no_limit, write_blob
from converters.estargz_reader_rules import check_final_order, check_header
from converters.layer_source import LayerSource
from converters.limits import LayerLimits
from converters.symlinks import find_symlink_loop
from converters.tar_reader import TarReader
from converters.toc import LANDMARK_CONTENTS

__all__ = ["ConvertedLayer", "EstargzOptions", "LayerLimits", "convert_layer"]


MAX_MIN_CHUNK_SIZE = 64 << 20


def check_min_chunk_size(size: int) -> int:
    """`size`, or ValueError saying why it cannot be a minimum chunk size."""
    if size < 0:
        raise ValueError(f"min_chunk_size must be 0 or more, got {size}")
    if size > MAX_MIN_CHUNK_SIZE:
        raise ValueError(
            f"{size} bytes is more than the 64MiB allowed: members that large defeat lazy pulling"
        )
    return size


@dataclass(frozen=True)
class EstargzOptions:
    """How to build the eStargz blob. `workers` changes speed only, never the output bytes."""

    chunk_size: int = 4 << 20
    """Files larger than this are split into chunks, one gzip member each."""
    min_chunk_size: int = 0
    """0: every payload chunk starts its own gzip member, which every eStargz reader expects.

    Above 0, payloads share the open member (TOC `innerOffset`) until it holds this many
    uncompressed bytes: much smaller blobs for layers of many small files, readable only by
    stargz-snapshotter v0.13.0 and later. Landmarks and the TOC still start their own members.
    """
    compression_level: int = 9
    """zlib level of every gzip member."""
    prioritized_files: tuple[str, ...] = ()
    """Files to put first, before `.prefetch.landmark`, in this order."""
    workers: int | None = None
    """Compression threads; None means one per CPU."""
    limits: LayerLimits = field(default_factory=LayerLimits)

    def __post_init__(self) -> None:
        if self.chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {self.chunk_size}")
        check_min_chunk_size(self.min_chunk_size)
        if not 0 <= self.compression_level <= 9:
            raise ValueError(f"compression_level must be 0..9, got {self.compression_level}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")

    def thread_count(self) -> int:
        return self.workers if self.workers is not None else os.cpu_count() or 1


def convert_layer(
    source: BinaryIO,
    dest: BinaryIO,
    options: EstargzOptions,
    work_dir: Path,
    spill_room: SpillRoom = no_limit,
) -> ConvertedLayer:
    """Write the eStargz form of the layer read from `source` to `dest`.

    Raises `LayerRejected` when the source is not a sound layer. Every check runs in the
    first pass, so a rejected layer leaves `dest` untouched. `spill_room` is called with the
    size of every write to the spill file in `work_dir` before it is made (a disk budget
    counts them); what it raises stops the conversion.
    """
    with tempfile.TemporaryFile(dir=work_dir, prefix="estargz-spill-") as spill:
        entries = _spill_layer(source, _ClaimingSpill(spill, spill_room), options)
        spill.flush()
        return write_blob(
            entries,  # consumed, so entries are freed as they are written
            spill.fileno(),
            dest,
            spill_room=spill_room,
            level=options.compression_level,
            workers=options.thread_count(),
            chunk_size=options.chunk_size,
            min_chunk_size=options.min_chunk_size,
        )


class _ClaimingSpill:
    """The spill file, each write claimed from `spill_room` first."""

    def __init__(self, spill: BinaryIO, spill_room: SpillRoom) -> None:
        self._spill = spill
        self._room = spill_room

    def write(self, data: bytes) -> int:
        self._room(len(data))
        return self._spill.write(data)

    def tell(self) -> int:
        return self._spill.tell()


def _spill_layer(
    source: BinaryIO, spill: _ClaimingSpill, options: EstargzOptions
) -> list[SpilledEntry]:
    layer = LayerSource(source, options.limits, threads=1 if options.thread_count() > 1 else 0)
    try:
        entries = _read_entries(TarReader(layer, options.limits), spill)
        layer.drain()
    finally:
        layer.close()
    entries = deduplicate(entries)
    _check_symlinks(entries)
    entries = _with_landmarks(entries, options.prioritized_files, spill)
    check_final_order(entries)
    return entries


def _read_entries(reader: TarReader, spill: _ClaimingSpill) -> list[SpilledEntry]:
    entries: list[SpilledEntry] = []
    seen: set[bytes] = set()
    spilled = 0
    writer = BatchedWriter(spill.write)
    while (header := reader.next_header()) is not None:
        where = f"tar entry at offset {reader.header_offset}"
        key = clean_name(header.name, where)
        check_header(header, where)
        if header.typeflag == th.LINK:
            target = clean_name(header.linkname, f"{where} ({display(header.name)!r})")
            if target not in seen:
                raise LayerRejected(
                    f"{where}: hardlink {display(header.name)!r} points to "
                    f"{display(header.linkname)!r}, which is not earlier in the layer"
                )
        seen.add(key)
        if header.typeflag not in th.REGULAR_TYPES:
            entries.append(SpilledEntry(key, header))
            continue
        for piece in reader.payload():
            writer.write(piece)
        entries.append(SpilledEntry(key, header, spilled))
        spilled += header.size
    writer.flush()
    return entries


def _check_symlinks(entries: list[SpilledEntry]) -> None:
    links = {e.key: e.header.linkname for e in entries if e.header.typeflag == th.SYMLINK}
    chain = find_symlink_loop(links)
    if chain is not None:
        path = " -> ".join(repr(display(name)) for name in chain)
        raise LayerRejected(f"symlink loop in the layer: {path}")


def _with_landmarks(
    entries: list[SpilledEntry], prioritized: tuple[str, ...], spill: _ClaimingSpill
) -> list[SpilledEntry]:
    front, rest = prioritize(entries, [name.encode("utf-8") for name in prioritized])
    landmark_offset = spill.tell()
    spill.write(LANDMARK_CONTENTS)
    name = PREFETCH_LANDMARK if front else NO_PREFETCH_LANDMARK
    landmark = SpilledEntry(
        name,
        th.TarHeader(name=name, typeflag=th.REG, size=len(LANDMARK_CONTENTS)),
        landmark_offset,
    )
    return [*front, landmark, *rest]
