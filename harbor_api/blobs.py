"""Reading blobs from one registry: existence, verified streams, resumable downloads.

A download is hashed while it is read, so memory stays bounded whatever the blob size and a
corrupted blob fails at the end of its stream.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

import requests
import urllib3.exceptions

from harbor_api.auth import RegistryAuth, pull_scope
from harbor_api.errors import (
    BlobUnknown,
    DigestMismatch,
    InvalidReference,
    NotFound,
    PermanentError,
    Unreachable,
)
from harbor_api.oci import is_digest
from harbor_api.reference import check_repository
from harbor_api.transport import RetryPolicy, describe, retrying

log = logging.getLogger(__name__)

READ_SIZE = 1 << 20


class BlobTooLarge(PermanentError):
    """A blob read into memory is larger than the caller allowed: the same blob always is."""


def check_digest_argument(digest: str) -> str:
    if not is_digest(digest):
        raise InvalidReference(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    return digest


def read_body(raw: Any, size: int, what: str) -> bytes:
    """Up to `size` bytes of a streamed answer; a broken connection is `Unreachable`."""
    try:
        data: bytes = raw.read(size, decode_content=False)
    except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
        raise Unreachable(
            what, message=f"connection broken while reading ({type(exc).__name__})"
        ) from exc
    return data


class VerifyingReader(io.RawIOBase):
    """A blob response body whose sha256 and size are checked when the end is reached.

    `hashed` is False for a ranged read (the start of the blob was never seen).
    """

    def __init__(
        self, response: requests.Response, digest: str, what: str, *, hashed: bool
    ) -> None:
        super().__init__()
        self._response = response
        self._raw: Any = response.raw
        self._digest = digest
        self._what = what
        self._hash = hashlib.sha256() if hashed else None
        self._finished = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._finished:
            return 0
        view = memoryview(buffer).cast("B")
        data = read_body(self._raw, len(view), self._what)
        if not data:
            self._finish()
            return 0
        if self._hash is not None:
            self._hash.update(data)
        view[: len(data)] = data
        return len(data)

    def _finish(self) -> None:
        self._finished = True
        if self._hash is not None:
            actual = "sha256:" + self._hash.hexdigest()
            if actual != self._digest:
                raise DigestMismatch(
                    f"{self._what}: blob content hashes to {actual}, expected {self._digest}"
                )

    def close(self) -> None:
        self._response.close()
        super().close()


class BlobReader:
    """Blob reads of `RegistryClient` (`base` is `scheme://host/v2`)."""

    def __init__(self, auth: RegistryAuth, base: str, *, retry: RetryPolicy) -> None:
        self._auth = auth
        self._base = base
        self._retry = retry
        self._resume_attempts = max(1, retry.attempts)

    def _url(self, repository: str, digest: str) -> str:
        check_repository(repository)
        check_digest_argument(digest)
        return f"{self._base}/{repository}/blobs/{digest}"

    def exists(self, repository: str, digest: str) -> bool:
        response = self._auth.request(
            "HEAD",
            self._url(repository, digest),
            scopes=(pull_scope(repository),),
            endpoint="blob_head",
            ok=(200, 404),
            idempotent=True,
        )
        response.close()
        return response.status_code == 200

    def read(self, repository: str, digest: str, max_size: int) -> bytes:
        what = describe("GET", self._url(repository, digest))

        def fetch() -> bytes:
            response = self._get(repository, digest, 0, retried=False)
            reader = VerifyingReader(response, digest, what, hashed=True)
            with io.BufferedReader(reader, buffer_size=READ_SIZE) as stream:
                data = stream.read(max_size + 1)
                if len(data) > max_size:
                    raise BlobTooLarge(
                        f"blob {digest} in {repository} is larger than {max_size} bytes"
                    )
                # Reads the end of the stream, which is where the digest is checked.
                stream.read()
            return data

        # The body is read inside the retry: an answer cut short is asked for again.
        data: bytes = retrying(self._retry, what)(fetch)
        return data

    def _get(
        self, repository: str, digest: str, start: int, *, retried: bool = True
    ) -> requests.Response:
        try:
            return self._auth.request(
                "GET",
                self._url(repository, digest),
                scopes=(pull_scope(repository),),
                endpoint="blob_get",
                ok=(200, 206),
                idempotent=retried,
                headers={"Range": f"bytes={start}-"} if start else {},
                stream=True,
            )
        except NotFound as exc:
            raise BlobUnknown(exc.request, exc.status, exc.code, exc.message) from exc

    @contextlib.contextmanager
    def open(self, repository: str, digest: str, start: int = 0) -> Iterator[BinaryIO]:
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        response = self._get(repository, digest, start)
        ranged = response.status_code == 206
        what = describe("GET", self._url(repository, digest))
        reader = VerifyingReader(response, digest, what, hashed=not ranged)
        stream = io.BufferedReader(reader, buffer_size=READ_SIZE)
        try:
            if start and not ranged:
                _skip(stream, start)
            yield cast(BinaryIO, stream)
        finally:
            stream.close()

    def download(
        self,
        repository: str,
        digest: str,
        path: Path,
        claim: Callable[[int], object] | None = None,
    ) -> int:
        """Write the blob to `path` (through a temporary file beside it); its size.

        A connection broken mid-way is picked up with a Range request from the bytes written.
        `claim` is called with the size of each piece before it is written (a disk budget
        counts them); what it raises stops the download.
        """
        what = describe("GET", self._url(repository, digest))
        partial = path.with_name(f".{path.name}.partial")
        hasher, written, failures = hashlib.sha256(), 0, 0
        try:
            with partial.open("wb") as out:
                while True:
                    try:
                        with self._get(repository, digest, written) as response:
                            if written and response.status_code != 206:
                                out.seek(0)
                                out.truncate()
                                hasher, written = hashlib.sha256(), 0
                            while chunk := read_body(response.raw, READ_SIZE, what):
                                if claim is not None:
                                    claim(len(chunk))
                                out.write(chunk)
                                hasher.update(chunk)
                                written += len(chunk)
                        break
                    except Unreachable as exc:
                        failures += 1
                        if failures >= self._resume_attempts:
                            raise
                        log.warning(
                            "resuming interrupted download",
                            extra={"repository": repository, "offset": written, "error": str(exc)},
                        )
            actual = "sha256:" + hasher.hexdigest()
            if actual != digest:
                raise DigestMismatch(f"{what}: blob content hashes to {actual}, expected {digest}")
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        return written


def _skip(stream: BinaryIO, count: int) -> None:
    while count > 0:
        chunk = stream.read(min(count, READ_SIZE))
        if not chunk:
            return
        count -= len(chunk)
