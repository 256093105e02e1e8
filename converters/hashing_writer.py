"""A destination stream that hashes and counts what goes out: a blob's digest and size."""

from __future__ import annotations

import hashlib
from typing import BinaryIO


class HashingWriter:
    """Writes to `dest`; `digest` is the sha256 and `written` the count of all bytes so far."""

    def __init__(self, dest: BinaryIO) -> None:
        self._dest = dest
        self.digest = hashlib.sha256()
        self.written = 0

    def write(self, data: bytes) -> int:
        self._dest.write(data)
        self.digest.update(data)
        self.written += len(data)
        return len(data)
