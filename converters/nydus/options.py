"""How a layer becomes a nydus blob and how layers merge: one validated value."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from converters.limits import LayerLimits
from converters.nydus import ondisk

COMPRESSORS = ("zstd", "none")
DIGESTERS = ("blake3", "sha256")
# zstandard accepts negative (fast) levels down to -131072; nydus itself uses 1..22.
MIN_ZSTD_LEVEL = 1
MAX_ZSTD_LEVEL = 22


@dataclass(frozen=True)
class NydusOptions:
    """Options of the nydus conversion. `workers` changes speed only, never the output bytes."""

    chunk_size: int = 1 << 20
    """Files are cut into chunks of this many bytes: a power of two, 4 KiB to 16 MiB."""
    compressor: str = "zstd"
    """Chunk compressor: "zstd" or "none"."""
    compression_level: int = 3
    """zstd level, 1..22 (nydus-image uses 3)."""
    digester: str = "blake3"
    """Chunk digest: "blake3" (nydus' default) or "sha256"."""
    prefetch: tuple[str, ...] = ()
    """Absolute paths whose inodes go into the bootstrap's prefetch table, in this order."""
    workers: int | None = None
    """Compression threads; None means one per CPU."""
    limits: LayerLimits = field(default_factory=LayerLimits)

    def __post_init__(self) -> None:
        size = self.chunk_size
        if (
            not isinstance(size, int)
            or size & (size - 1)
            or not ondisk.MIN_CHUNK_SIZE <= size <= ondisk.MAX_CHUNK_SIZE
        ):
            raise ValueError(
                f"chunk_size must be a power of two from 4096 (4KiB) to 16777216 (16MiB), "
                f"got {size!r}"
            )
        if self.compressor not in COMPRESSORS:
            raise ValueError(
                f"compressor must be one of {', '.join(COMPRESSORS)}, got {self.compressor!r}"
            )
        if not MIN_ZSTD_LEVEL <= self.compression_level <= MAX_ZSTD_LEVEL:
            raise ValueError(
                f"compression_level must be {MIN_ZSTD_LEVEL}..{MAX_ZSTD_LEVEL}, "
                f"got {self.compression_level}"
            )
        if self.digester not in DIGESTERS:
            raise ValueError(
                f"digester must be one of {', '.join(DIGESTERS)}, got {self.digester!r}"
            )
        for index, path in enumerate(self.prefetch):
            if not path.startswith("/"):
                raise ValueError(f"prefetch[{index}]: {path!r} is not an absolute path")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")

    def thread_count(self) -> int:
        return self.workers if self.workers is not None else os.cpu_count() or 1
