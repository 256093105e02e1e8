"""Turn a layer blob stream (gzip, zstd or plain tar) into its decompressed bytes, within limits.

The compression is detected from magic bytes, never from a media type: registries and images
mislabel layers often enough.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable
from typing import BinaryIO, Protocol, cast

import isal.igzip
import isal.igzip_threaded
import zstandard
from isal.igzip_lib import IsalError

from converters.errors import LayerRejected
from converters.limits import LayerLimits

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# Below this many decompressed bytes the ratio check stays quiet: a few empty files compress
# to almost nothing, which is no bomb.
RATIO_CHECK_FLOOR = 1 << 20
_READ_SIZE = 1 << 20


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _CountingReader(io.RawIOBase):
    """Counts the compressed bytes the decompressor has pulled from the source."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._source.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        self.count += size
        return size


_CODEC_ERRORS: tuple[type[BaseException], ...] = (
    EOFError,
    OSError,
    cast("type[BaseException]", IsalError),  # its stub declares an instance, not a class
    zstandard.ZstdError,
    ValueError,
)


def _codec_error(error: BaseException) -> bool:
    return isinstance(error, _CODEC_ERRORS)


class LayerSource:
    """Decompressed bytes of one layer, read front to back.

    `offset` is the count of decompressed bytes handed out so far; every error names it.
    """

    def __init__(self, source: BinaryIO, limits: LayerLimits, *, threads: int = 0) -> None:
        self._counting = _CountingReader(source)
        self._raw = io.BufferedReader(self._counting, buffer_size=_READ_SIZE)
        self._limits = limits
        self.offset = 0
        head = self._raw.peek(4)[:4]
        self.compression, self._stream = self._open(head, threads)

    def _open(self, head: bytes, threads: int) -> tuple[str, _Readable]:
        if head.startswith(GZIP_MAGIC):
            if threads > 0:
                return "gzip", isal.igzip_threaded.open(  # type: ignore[no-untyped-call]
                    self._raw, "rb", threads=1
                )
            return "gzip", isal.igzip.IGzipFile(  # type: ignore[no-untyped-call]
                fileobj=self._raw, mode="rb"
            )
        if head == ZSTD_MAGIC:
            reader = zstandard.ZstdDecompressor().stream_reader(
                self._raw, read_size=_READ_SIZE, read_across_frames=True
            )
            return "zstd", reader
        return "none", self._raw

    def read(self, size: int) -> bytes:
        """Up to `size` decompressed bytes; b"" only at the end of the stream."""
        try:
            data = self._stream.read(size)
        except Exception as error:
            if not _codec_error(error):
                raise
            raise LayerRejected(self._describe_codec_error(error)) from error
        self.offset += len(data)
        self._check_limits()
        return data

    def _describe_codec_error(self, error: BaseException) -> str:
        where = (
            f"after {self.offset} decompressed bytes ({self._counting.count} compressed bytes read)"
        )
        if isinstance(error, EOFError):
            return f"truncated {self.compression} stream {where}"
        if isinstance(error, gzip.BadGzipFile):
            return f"corrupt gzip stream {where}: {error}"
        return f"corrupt {self.compression} stream {where}: {error}"

    def _check_limits(self) -> None:
        limits = self._limits
        if self.offset > limits.max_uncompressed_size:
            raise LayerRejected(
                f"decompressed size exceeds the limit of {limits.max_uncompressed_size} bytes "
                f"(at {self.offset} bytes)"
            )
        compressed = max(self._counting.count, 1)
        if (
            self.compression != "none"
            and self.offset > RATIO_CHECK_FLOOR
            and self.offset > compressed * limits.max_compression_ratio
        ):
            raise LayerRejected(
                f"compression ratio exceeds the limit of {limits.max_compression_ratio:g} "
                f"({self.offset} decompressed bytes from {compressed} compressed bytes)"
            )

    def drain(self) -> None:
        """Read to the end so the codec checks its trailers (gzip CRC, sizes)."""
        while self.read(_READ_SIZE):
            pass

    def close(self) -> None:
        close: Callable[[], None] | None = getattr(self._stream, "close", None)
        if close is not None and self._stream is not self._raw:
            try:
                close()
            except Exception as error:
                if not _codec_error(error):
                    raise
