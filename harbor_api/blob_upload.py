"""Uploading blobs to one registry: monolithic or chunked from disk, resumed, or mounted.

A file is sent in slices read as they go out, never whole in memory. An interrupted chunked
upload continues from the offset the registry reports, or restarts in a new session when the
registry lost or cannot state it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from harbor_api.auth import Body, RegistryAuth, pull_scope, push_scope, repository_scope
from harbor_api.blobs import READ_SIZE, check_digest_argument
from harbor_api.errors import AcceldError, DigestMismatch, NotFound, RegistryError
from harbor_api.origins import Origin, check_same_origin
from harbor_api.reference import check_repository
from harbor_api.transport import describe

log = logging.getLogger(__name__)

_RANGE = re.compile(r"^(?:bytes=)?0-(\d+)$")


def range_end(header: str | None) -> int | None:
    """The last byte offset of a `Range: 0-N` upload status, None when absent or malformed."""
    match = _RANGE.match((header or "").strip())
    return int(match.group(1)) if match else None


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
        while chunk := self.read(READ_SIZE):
            yield chunk

    def read(self, size: int = -1) -> bytes:
        # urllib3 asks for 16 KiB at a time; bigger reads cut the syscalls for a large chunk
        # 64-fold, and the sender writes whatever it gets.
        want = self._left if size < 0 else min(max(size, READ_SIZE), self._left)
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


class BlobUploader:
    """Blob uploads and mounts of `RegistryClient` (`base` is `scheme://host/v2`)."""

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
        self._origin = Origin.of(base)
        self._chunk_size = chunk_size
        self._monolithic_limit = monolithic_limit
        self._resume_attempts = max(1, resume_attempts)

    def upload(self, repository: str, source: Path | bytes, digest: str, size: int) -> None:
        check_repository(repository)
        check_digest_argument(digest)
        prepared = _prepare_source(source, digest, size)
        try:
            if size <= self._monolithic_limit:
                self._upload_whole(repository, prepared, digest)
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
        location = self._location(url, response, "POST")
        if location:
            self._cancel(repository, location)
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
        location = self._location(url, response, "POST")
        if not location:
            raise RegistryError(
                describe("POST", url), 202, message="upload started without a Location header"
            )
        return location

    def _location(self, url: str, response: Any, method: str) -> str:
        """The answer's `Location` made absolute, "" when absent; refused off the registry."""
        location = response.headers.get("Location")
        if not location:
            return ""
        return check_same_origin(
            urljoin(url, location),
            self._origin,
            f"Location of {describe(method, url)}",
            response.status_code,
        )

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

    def _upload_whole(self, repository: str, source: _UploadSource, digest: str) -> None:
        """POST, then one PUT with the whole body. A PUT cut short cannot be resumed (the
        registry drops the session), so a transient failure starts a fresh upload, as many
        times as a chunked upload may resume."""
        failures = 0
        while True:
            location = self._start_upload(repository)
            try:
                self._finish_upload(
                    repository, location, digest, lambda: source.body(0, source.size)
                )
                return
            except RegistryError as exc:
                failures += 1
                if not exc.transient or failures >= self._resume_attempts:
                    raise
                self._cancel(repository, location)
                log.warning(
                    "upload interrupted, starting it again",
                    extra={"repository": repository, "error": str(exc)},
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
        return self._location(location, response, "PATCH") or location

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
        location = self._location(location, response, "GET") or location
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
