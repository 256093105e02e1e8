"""Writing the eStargz blob while the first pass is still reading the layer.

Without prioritized files the final order is known from the start: `.no.prefetch.landmark`,
then every entry in input order. So each batch of spilled entries can go to the blob writer
at once, and its members compress while the rest of the layer is being read. One thing can
still change that order: a name that comes again, whose later copy replaces the earlier one
at its later position. The early blob is then given up (`abandon`) and the caller writes
the blob again from the complete spill, in two passes; the bytes are the same either way.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from converters import tar_header as th
from converters.entry_order import RESERVED_NAMES
from converters.estargz_blob import BlobWriter, ConvertedLayer, SpilledEntry

_FEED_BYTES = 1 << 20
_FEED_ENTRIES = 512


class EarlyBlob:
    """A blob being written from entries as the first pass spills them."""

    def __init__(
        self,
        dest: BinaryIO,
        spill_fd: int,
        work_dir: Path,
        landmark: SpilledEntry,
        *,
        level: int,
        workers: int,
        chunk_size: int,
        min_chunk_size: int,
    ) -> None:
        self._dest = dest
        self._start = dest.tell()
        # The TOC JSON cannot go to the end of the spill, which is still growing. Closed by
        # `close`.
        self._toc = tempfile.TemporaryFile(dir=work_dir, prefix="estargz-toc-")  # noqa: SIM115
        self._writer = BlobWriter(
            dest,
            spill_fd,
            self._toc.fileno(),
            level=level,
            workers=workers,
            chunk_size=chunk_size,
            min_chunk_size=min_chunk_size,
        )
        self._pending = [landmark]
        self._pending_bytes = 0
        self.intact = True

    def entry_read(self, entry: SpilledEntry, flush_spill: Callable[[], None]) -> None:
        """Queue `entry`, whose payload has been handed to the spill file; feed the writer
        once enough is queued, after `flush_spill` has made the payloads readable."""
        if not self.intact or entry.key in RESERVED_NAMES:  # two-pass drops those too
            return
        self._pending.append(entry)
        if entry.header.typeflag in th.REGULAR_TYPES:
            self._pending_bytes += entry.header.size
        if self._pending_bytes >= _FEED_BYTES or len(self._pending) >= _FEED_ENTRIES:
            flush_spill()
            self._feed()

    def _feed(self) -> None:
        pending = self._pending
        self._pending = []
        self._pending_bytes = 0
        self._writer.add(pending)

    def finish(self, flush_spill: Callable[[], None]) -> ConvertedLayer:
        flush_spill()
        self._feed()
        return self._writer.finish()

    def abandon(self) -> None:
        """Stop, and cut `dest` back to where it started."""
        if self.intact:
            self.intact = False
            self._writer.close()
            self._pending = []
            self._dest.seek(self._start)
            self._dest.truncate()

    def close(self) -> None:
        self._writer.close()
        self._toc.close()
