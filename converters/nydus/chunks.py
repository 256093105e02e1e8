"""File data cut into chunks, digested and compressed on worker threads, written in order.

Chunk boundaries come from the files (every `chunk_size` bytes of each file), never from the
thread count, and results are taken back in submission order: the first chunk with a digest is
written, later ones with the same digest point at it. So the blob bytes are the same whatever
`workers` is. zstd and blake3 release the GIL on large inputs, so threads run in parallel.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import blake3
import zstandard

from converters.batched_writes import BatchedWriter
from converters.errors import LayerRejected
from converters.nydus import ondisk
from converters.nydus.options import NydusOptions
from converters.nydus.tree import LayerChunks

_Result = tuple[bytes, bytes, int]
"""(digest, stored bytes, uncompressed size)."""


class _Codec:
    """Digest and compress one chunk; one zstd context per thread (they are not shared)."""

    def __init__(self, options: NydusOptions) -> None:
        self._level = options.compression_level
        self._compress = options.compressor == "zstd"
        self._blake3 = options.digester == "blake3"
        self._local = threading.local()

    def __call__(self, data: bytes) -> _Result:
        digest = blake3.blake3(data).digest() if self._blake3 else hashlib.sha256(data).digest()
        if self._compress:
            compressor: zstandard.ZstdCompressor | None = getattr(self._local, "zstd", None)
            if compressor is None:
                compressor = zstandard.ZstdCompressor(level=self._level)
                self._local.zstd = compressor
            packed = compressor.compress(data)
            # V1 chunk infos mark a chunk compressed exactly when its sizes differ.
            if len(packed) < len(data):
                return digest, packed, len(data)
        return digest, data, len(data)


class ChunkWriter:
    """Appends deduplicated chunks to `sink` and records them in `chunks`."""

    def __init__(
        self, sink: Callable[[bytes], object], chunks: LayerChunks, options: NydusOptions
    ) -> None:
        self._writer = BatchedWriter(sink)
        self._chunks = chunks
        self._codec = _Codec(options)
        workers = options.thread_count()
        self._workers = workers
        self._executor = ThreadPoolExecutor(workers) if workers > 1 else None
        self._pending: deque[Future[_Result]] = deque()
        self._pending_bytes: deque[int] = deque()
        self._in_flight = 0
        self._budget = 4 * workers * options.chunk_size
        self._index: dict[bytes, int] = {}
        self._submitted = 0
        self.compressed_size = 0
        self._uncompressed_end = 0

    @property
    def submitted(self) -> int:
        """Sequence number the next chunk will get."""
        return self._submitted

    def add(self, data: bytes) -> None:
        self._submitted += 1
        if self._executor is None:
            self._record(self._codec(data))
            return
        self._pending.append(self._executor.submit(self._codec, data))
        self._pending_bytes.append(len(data))
        self._in_flight += len(data)
        while self._pending and (
            len(self._pending) > 2 * self._workers or self._in_flight > self._budget
        ):
            self._collect_oldest()

    def _collect_oldest(self) -> None:
        future = self._pending.popleft()
        self._in_flight -= self._pending_bytes.popleft()
        self._record(future.result())

    def _record(self, result: _Result) -> None:
        digest, stored, size = result
        chunks = self._chunks
        index = self._index.get(digest)
        if index is None:
            index = chunks.count
            if index >= ondisk.MAX_CHUNKS_PER_BLOB:
                raise LayerRejected(
                    f"more than {ondisk.MAX_CHUNKS_PER_BLOB} distinct chunks in one layer, "
                    "the most a nydus blob can index; use a larger chunk_size"
                )
            self._index[digest] = index
            chunks.digests += digest
            chunks.compressed_offsets.append(self.compressed_size)
            chunks.compressed_sizes.append(len(stored))
            chunks.uncompressed_offsets.append(self._uncompressed_end)
            chunks.uncompressed_sizes.append(size)
            self.compressed_size += len(stored)
            self._uncompressed_end = ondisk.round_up(
                self._uncompressed_end + size, ondisk.BLOCK_SIZE
            )
            self._writer.write(stored)
        chunks.seq_to_index.append(index)

    def finish(self) -> None:
        """Write every chunk still in flight."""
        while self._pending:
            self._collect_oldest()
        self._writer.flush()

    def close(self) -> None:
        if self._executor is not None:
            for future in self._pending:
                future.cancel()
            self._executor.shutdown(wait=True)
