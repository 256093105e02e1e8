"""Blob transfer with one registry: existence, verified reads, resumable chunked uploads, mounts.

Blobs are streamed both ways: a download is hashed while it is read and an upload is sent from
the file in slices, so memory stays bounded whatever the blob size.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import urljoin

import requests
import urllib3.exceptions

from harbor_api.auth import Body, RegistryAuth, repository_scope
from harbor_api.errors import (
    AcceldError,
    DigestMismatch,
    InvalidReference,
    NotFound,
    RegistryError,
    Unreachable,
)
from harbor_api.oci import is_digest
from harbor_api.reference import check_repository
from harbor_api.transport import describe

log = logging.getLogger(__name__)

_RANGE = re.compile(r"^(?:bytes=)?0-(\d+)$")
_READ_SIZE = 1 << 20


class BlobTooLarge(AcceldError):
    """A blob read into memory is larger than the caller allowed."""


def check_digest_argument(digest: str) -> str:
    if not is_digest(digest):
        raise InvalidReference(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    return digest


def pull_scope(repository: str) -> str:
    return repository_scope(repository, ("pull",))


def push_scope(repository: str) -> str:
    return repository_scope(repository, ("pull", "push"))


def range_end(header: str | None) -> int | None:
    """The last byte offset of a `Range: 0-N` upload status, None when absent or malformed."""
    match = _RANGE.match((header or "").strip())
    return int(match.group(1)) if match else None


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


class _FileSlice:
    """`length` bytes of an open file from `offset`: a sized, streamed request body."""

    def __init__(self, fd: int, offset: int, length: int) -> None:
        self._fd = fd
        self._offset = offset
        self._left = length
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(_READ_SIZE):
            yield chunk

    def read(self, size: int = -1) -> bytes:
        # urllib3 asks for 16 KiB at a time; bigger reads cut the syscalls for a large chunk
        # 64-fold, and the sender writes whatever it gets.
        want = self._left if size < 0 else min(max(size, _READ_SIZE), self._left)
        if want <= 0:
            return b""
        data = os.pread(self._fd, want, self._offset)
        if not data:
            raise OSError("the file shrank while it was being uploaded")
        self._offset += len(data)
        self._left -= len(data)
        return data


class _UploadSource:
    """What `upload` sends: bytes in memory or a file on disk, with its declared size."""

    def __init__(self, data: bytes | None, path: Path | None, size: int) -> None:
        self.size = size
        self._data = data
        self._fd = os.open(path, os.O_RDONLY) if path is not None else -1

    def body(self, offset: int, length: int) -> Any:
        if self._data is not None:
            return self._data[offset : offset + length]
        return _FileSlice(self._fd, offset, length)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class BlobTransfer:
    """Blob operations of `RegistryClient` (`base` is `scheme://host/v2`)."""

    def __init__(
        self,
        auth: RegistryAuth,
        base: str,
        *,
        chunk_size: int,
        monolithic_limit: int,
        resume_attempts: int,
    ) -> None:
        self._auth = auth
        self._base = base
        self._chunk_size = chunk_size
        self._monolithic_limit = monolithic_limit
        self._resume_attempts = max(1, resume_attempts)

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
        with self.open(repository, digest) as stream:
            data = stream.read(max_size + 1)
            if len(data) > max_size:
                raise BlobTooLarge(f"blob {digest} in {repository} is larger than {max_size} bytes")
            # Reads the end of the stream, which is where the digest is checked.
            stream.read()
        return data

    def _get(self, repository: str, digest: str, start: int) -> requests.Response:
        return self._auth.request(
            "GET",
            self._url(repository, digest),
            scopes=(pull_scope(repository),),
            endpoint="blob_get",
            ok=(200, 206),
            idempotent=True,
            headers={"Range": f"bytes={start}-"} if start else {},
            stream=True,
        )

    @contextlib.contextmanager
    def open(self, repository: str, digest: str, start: int = 0) -> Iterator[BinaryIO]:
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        response = self._get(repository, digest, start)
        ranged = response.status_code == 206
        what = describe("GET", self._url(repository, digest))
        reader = VerifyingReader(response, digest, what, hashed=not ranged)
        stream = io.BufferedReader(reader, buffer_size=_READ_SIZE)
        try:
            if start and not ranged:
                _skip(stream, start)
            yield cast(BinaryIO, stream)
        finally:
            stream.close()

    def download(self, repository: str, digest: str, path: Path) -> int:
        """Write the blob to `path` (through a temporary file beside it); its size.

        A connection broken mid-way is picked up with a Range request from the bytes written.
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
                            while chunk := read_body(response.raw, _READ_SIZE, what):
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

    def upload(self, repository: str, source: Path | bytes, digest: str, size: int) -> None:
        check_repository(repository)
        check_digest_argument(digest)
        prepared = _prepare_source(source, digest, size)
        try:
            if size <= self._monolithic_limit:
                location = self._start_upload(repository)
                self._finish_upload(repository, location, digest, lambda: prepared.body(0, size))
            else:
                self._upload_chunked(repository, prepared, digest)
        finally:
            prepared.close()

    def mount(self, repository: str, digest: str, from_repository: str) -> bool:
        check_repository(repository)
        check_repository(from_repository)
        check_digest_argument(digest)
        url = f"{self._base}/{repository}/blobs/uploads/"
        response = self._auth.request(
            "POST",
            url,
            scopes=(push_scope(repository), pull_scope(from_repository)),
            endpoint="blob_mount",
            ok=(201, 202),
            params={"mount": digest, "from": from_repository},
            headers={"Content-Length": "0"},
        )
        response.close()
        if response.status_code == 201:
            return True
        location = response.headers.get("Location")
        if location:
            self._cancel(repository, urljoin(url, location))
        return False

    def _start_upload(self, repository: str) -> str:
        url = f"{self._base}/{repository}/blobs/uploads/"
        response = self._auth.request(
            "POST",
            url,
            scopes=(push_scope(repository),),
            endpoint="blob_upload",
            ok=(202,),
            headers={"Content-Length": "0"},
        )
        response.close()
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(
                describe("POST", url), 202, message="upload started without a Location header"
            )
        return urljoin(url, location)

    def _finish_upload(self, repository: str, location: str, digest: str, body: Body) -> None:
        response = self._auth.request(
            "PUT",
            location,
            scopes=(push_scope(repository),),
            endpoint="blob_upload",
            ok=(201,),
            params=[("digest", digest)],
            headers={"Content-Type": "application/octet-stream"},
            body=body,
        )
        response.close()
        announced = response.headers.get("Docker-Content-Digest")
        if announced and announced != digest:
            raise DigestMismatch(
                f"{describe('PUT', location)}: the registry stored {announced}, expected {digest}"
            )

    def _upload_chunked(self, repository: str, source: _UploadSource, digest: str) -> None:
        location = self._start_upload(repository)
        offset, failures = 0, 0
        while offset < source.size:
            length = min(self._chunk_size, source.size - offset)
            try:
                location = self._patch(repository, location, source, offset, length)
                offset += length
            except RegistryError as exc:
                failures += 1
                if not exc.transient or failures >= self._resume_attempts:
                    raise
                location, offset = self._resume(repository, location, exc)
        self._finish_upload(repository, location, digest, b"")

    def _patch(
        self, repository: str, location: str, source: _UploadSource, offset: int, length: int
    ) -> str:
        end = offset + length - 1
        response = self._auth.request(
            "PATCH",
            location,
            scopes=(push_scope(repository),),
            endpoint="blob_upload",
            ok=(202,),
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{end}",
                "Content-Length": str(length),
            },
            body=lambda: source.body(offset, length),
        )
        response.close()
        reported = range_end(response.headers.get("Range"))
        if reported is not None and reported != end:
            raise RegistryError(
                describe("PATCH", location),
                202,
                message=f"the registry holds bytes 0-{reported}, expected 0-{end}",
            )
        return urljoin(location, response.headers.get("Location") or location)

    def _resume(self, repository: str, location: str, cause: RegistryError) -> tuple[str, int]:
        """Where an interrupted upload stands: (location, offset), or a fresh upload at 0."""
        try:
            response = self._auth.request(
                "GET",
                location,
                scopes=(push_scope(repository),),
                endpoint="blob_upload",
                ok=(204,),
                idempotent=True,
            )
        except NotFound:
            log.warning(
                "upload session gone, restarting the upload",
                extra={"repository": repository, "error": str(cause)},
            )
            return self._start_upload(repository), 0
        response.close()
        end = range_end(response.headers.get("Range"))
        location = urljoin(location, response.headers.get("Location") or location)
        if end is None or end == 0:
            # No Range, or "0-0" (nothing or one byte): only a fresh upload is unambiguous.
            self._cancel(repository, location)
            log.warning(
                "upload offset unknown, restarting the upload",
                extra={"repository": repository, "error": str(cause)},
            )
            return self._start_upload(repository), 0
        offset = end + 1
        log.warning(
            "resuming interrupted upload",
            extra={"repository": repository, "offset": offset, "error": str(cause)},
        )
        return location, offset

    def _cancel(self, repository: str, location: str) -> None:
        try:
            self._auth.request(
                "DELETE",
                location,
                scopes=(repository_scope(repository, ("delete",)),),
                endpoint="blob_upload",
                ok=(204, 404),
            ).close()
        except RegistryError as exc:
            log.info(
                "could not cancel upload session",
                extra={"repository": repository, "error": str(exc)},
            )


def _prepare_source(source: Path | bytes, digest: str, size: int) -> _UploadSource:
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    if isinstance(source, bytes):
        if len(source) != size:
            raise ValueError(f"blob {digest}: {len(source)} bytes given, size says {size}")
        actual = "sha256:" + hashlib.sha256(source).hexdigest()
        if actual != digest:
            raise DigestMismatch(f"blob to upload hashes to {actual}, not {digest}")
        return _UploadSource(source, None, size)
    try:
        actual_size = source.stat().st_size
    except OSError as exc:
        raise AcceldError(f"cannot read blob file {source}: {exc.strerror or exc}") from None
    if actual_size != size:
        raise ValueError(f"blob file {source} holds {actual_size} bytes, size says {size}")
    return _UploadSource(None, source, size)


def _skip(stream: BinaryIO, count: int) -> None:
    while count > 0:
        chunk = stream.read(min(count, _READ_SIZE))
        if not chunk:
            return
        count -= len(chunk)
