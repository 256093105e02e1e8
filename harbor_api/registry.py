"""The OCI distribution client: manifests, blobs, tags, catalog and referrers of one registry.

Everything above `harbor_api` talks to a registry through `RegistryClient`. It authenticates
itself (see `auth.py`), checks every digest it is given or sent, and raises typed errors that name
the request; it never hands out a `requests.Response`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO
from urllib.parse import urljoin

import requests

from harbor_api.auth import CATALOG_SCOPE, RegistryAuth, pull_scope, push_scope
from harbor_api.blob_upload import BlobUploader
from harbor_api.blobs import BlobReader, check_digest_argument
from harbor_api.credentials import Credentials
from harbor_api.errors import (
    DigestMismatch,
    InvalidManifest,
    NotFound,
    RegistryError,
    Unreachable,
)
from harbor_api.oci import (
    MANIFEST_ACCEPT,
    OCI_INDEX,
    Descriptor,
    Index,
    Manifest,
    fallback_tag,
    is_digest,
    parse_manifest_or_index,
    sha256_digest,
)
from harbor_api.origins import Origin, check_same_origin
from harbor_api.reference import check_repository, check_tag
from harbor_api.referrers import (
    fallback_index_with,
    fallback_index_without,
    filter_by_artifact_type,
    referrer_descriptor,
    subject_of,
)
from harbor_api.transport import (
    HttpSession,
    RequestObserver,
    RetryPolicy,
    TlsOptions,
    describe,
    json_body,
    retrying,
)

MIB = 1 << 20
# distribution refuses manifests above 4 MiB; more than that is not a manifest.
MAX_MANIFEST_BYTES = 4 * MIB
PAGE_SIZE = 1000
MAX_PAGES = 10_000
FALLBACK_UPDATE_ROUNDS = 3


@dataclass(frozen=True)
class FetchedManifest:
    """A manifest or index as the registry stored it: its exact bytes and their parse."""

    digest: str
    media_type: str
    raw: bytes
    content: Manifest | Index

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.raw))


@dataclass(frozen=True)
class PushedManifest:
    """A stored manifest; `oci_subject` is set when the registry has the referrers API."""

    digest: str
    oci_subject: str | None


class RegistryClient:
    """A client for one registry host (`harbor.example.com`, `127.0.0.1:5000`)."""

    def __init__(
        self,
        host: str,
        *,
        credentials: Credentials | None = None,
        tls: TlsOptions = TlsOptions(),  # noqa: B008 (frozen value)
        timeout: float = 60.0,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 (frozen value)
        observer: RequestObserver | None = None,
        chunk_size: int = 16 * MIB,
        monolithic_limit: int = 16 * MIB,
    ) -> None:
        if not host or "/" in host:
            raise ValueError(f"registry host {host!r}: expected HOST[:PORT]")
        if chunk_size <= 0 or monolithic_limit < 0:
            raise ValueError("chunk_size must be > 0 and monolithic_limit >= 0")
        self.host = host
        self._base = f"{tls.scheme}://{host}/v2"
        self._http = HttpSession(tls, timeout=timeout, retry=retry, observer=observer)
        self._auth = RegistryAuth(self._http, credentials, Origin.of(self._base))
        self._reader = BlobReader(self._auth, self._base, retry=retry)
        self._uploader = BlobUploader(
            self._auth,
            self._base,
            chunk_size=chunk_size,
            monolithic_limit=monolithic_limit,
            resume_attempts=retry.attempts,
        )
        self._fallback_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RegistryClient({self.host!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def ping(self) -> None:
        """Check the registry answers the distribution API and accepts the credentials."""
        self._auth.request(
            "GET", f"{self._base}/", scopes=(), endpoint="ping", idempotent=True
        ).close()

    # Manifests

    def _manifest_url(self, repository: str, reference: str) -> str:
        check_repository(repository)
        if not is_digest(reference):
            check_tag(reference)
        return f"{self._base}/{repository}/manifests/{reference}"

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        """A manifest or index by tag or digest, its digest checked."""
        url = self._manifest_url(repository, reference)
        what = describe("GET", url)

        def fetch() -> tuple[requests.Response, bytes]:
            response = self._auth.request(
                "GET",
                url,
                scopes=(pull_scope(repository),),
                endpoint="manifest_get",
                headers={"Accept": MANIFEST_ACCEPT},
                stream=True,
            )
            with response:
                return response, _read_bounded(response, MAX_MANIFEST_BYTES, what)

        # The body is read inside the retry: an answer cut short is asked for again.
        response, raw = retrying(self._http.retry, what)(fetch)
        digest = sha256_digest(raw)
        announced = response.headers.get("Docker-Content-Digest")
        if announced and announced != digest:
            raise DigestMismatch(
                f"{what}: the manifest hashes to {digest}, the registry announced {announced}"
            )
        if is_digest(reference) and reference != digest:
            raise DigestMismatch(f"{what}: the manifest hashes to {digest}, asked for {reference}")
        content_type = response.headers.get("Content-Type", "")
        try:
            content = parse_manifest_or_index(raw, content_type)
        except InvalidManifest as exc:
            raise InvalidManifest(f"{what}: {exc}") from None
        return FetchedManifest(digest, content.media_type, raw, content)

    def head_manifest(self, repository: str, reference: str) -> Descriptor | None:
        """The descriptor of a manifest by tag or digest; None when it does not exist."""
        url = self._manifest_url(repository, reference)
        response = self._auth.request(
            "HEAD",
            url,
            scopes=(pull_scope(repository),),
            endpoint="manifest_head",
            ok=(200, 404),
            idempotent=True,
            headers={"Accept": MANIFEST_ACCEPT},
        )
        response.close()
        if response.status_code == 404:
            return None
        digest = response.headers.get("Docker-Content-Digest", "")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        length = response.headers.get("Content-Length", "")
        if not is_digest(digest) or not media_type or not length.isdigit():
            return self.get_manifest(repository, reference).descriptor
        if is_digest(reference) and digest != reference:
            raise DigestMismatch(
                f"{describe('HEAD', url)}: the registry announced {digest}, asked for {reference}"
            )
        return Descriptor(media_type, digest, int(length))

    def put_manifest(
        self, repository: str, reference: str, content: Manifest | Index | bytes
    ) -> PushedManifest:
        """Store a manifest under a tag or its digest: a model (canonical bytes) or exact bytes."""
        raw, parsed = _encoded(content)
        digest = sha256_digest(raw)
        if is_digest(reference) and reference != digest:
            raise DigestMismatch(f"manifest to push hashes to {digest}, not {reference}")
        url = self._manifest_url(repository, reference)
        response = self._auth.request(
            "PUT",
            url,
            scopes=(push_scope(repository),),
            endpoint="manifest_put",
            ok=(201,),
            # Storing the same bytes under the same name twice is harmless.
            idempotent=True,
            headers={"Content-Type": parsed.media_type},
            body=raw,
        )
        response.close()
        announced = response.headers.get("Docker-Content-Digest")
        if announced and announced != digest:
            raise DigestMismatch(
                f"{describe('PUT', url)}: the registry stored {announced}, expected {digest}"
            )
        return PushedManifest(digest, response.headers.get("OCI-Subject") or None)

    def delete_manifest(self, repository: str, digest: str) -> None:
        check_digest_argument(digest)
        url = self._manifest_url(repository, digest)
        self._auth.request(
            "DELETE",
            url,
            scopes=(f"repository:{repository}:delete",),
            endpoint="manifest_delete",
            ok=(202, 200),
            idempotent=True,
        ).close()

    # Blobs

    def blob_exists(self, repository: str, digest: str) -> bool:
        return self._reader.exists(repository, digest)

    def read_blob(self, repository: str, digest: str, max_size: int) -> bytes:
        """A small blob (a config) in memory, its digest checked; `BlobTooLarge` above max."""
        return self._reader.read(repository, digest, max_size)

    def open_blob(
        self, repository: str, digest: str, start: int = 0
    ) -> AbstractContextManager[BinaryIO]:
        """A stream of the blob from `start`; read from 0, its digest is checked at the end."""
        return self._reader.open(repository, digest, start)

    def download_blob(
        self,
        repository: str,
        digest: str,
        path: Path,
        claim: Callable[[int], object] | None = None,
    ) -> int:
        """Write the blob to `path`, its digest checked; `claim` sees each piece's size first."""
        return self._reader.download(repository, digest, path, claim)

    def upload_blob(self, repository: str, source: Path | bytes, digest: str, size: int) -> None:
        """Upload a blob: monolithic up to `monolithic_limit`, else resumable chunks."""
        self._uploader.upload(repository, source, digest, size)

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Link a blob from another repository; False when the registry would not."""
        return self._uploader.mount(repository, digest, from_repository)

    # Listings

    def list_tags(self, repository: str) -> Iterator[str]:
        check_repository(repository)
        url = f"{self._base}/{repository}/tags/list"
        for page in self._pages(url, (pull_scope(repository),), "tags_list"):
            yield from _string_list(page, "tags", url)

    def catalog(self) -> Iterator[str]:
        url = f"{self._base}/_catalog"
        for page in self._pages(url, (CATALOG_SCOPE,), "catalog"):
            yield from _string_list(page, "repositories", url)

    def _pages(self, url: str, scopes: tuple[str, ...], endpoint: str) -> Iterator[Any]:
        params: dict[str, str] | None = {"n": str(PAGE_SIZE)}
        for _ in range(MAX_PAGES):
            response = self._auth.request(
                "GET", url, scopes=scopes, endpoint=endpoint, idempotent=True, params=params
            )
            with response:
                body = json_body(response, describe("GET", url))
                next_url = self._next_page(url, response)
            yield body
            if not next_url:
                return
            url, params = next_url, None
        raise RegistryError(describe("GET", url), message=f"more than {MAX_PAGES} pages")

    # Referrers

    def referrers(self, repository: str, digest: str, artifact_type: str = "") -> list[Descriptor]:
        """The manifests whose subject is `digest`: the referrers API, else the fallback tag."""
        check_repository(repository)
        check_digest_argument(digest)
        url = f"{self._base}/{repository}/referrers/{digest}"
        params: dict[str, str] | None = {"artifactType": artifact_type} if artifact_type else None
        found: list[Descriptor] = []
        for _ in range(MAX_PAGES):
            response = self._auth.request(
                "GET",
                url,
                scopes=(pull_scope(repository),),
                endpoint="referrers",
                ok=(200, 404),
                idempotent=True,
                params=params,
                headers={"Accept": OCI_INDEX},
            )
            with response:
                if response.status_code == 404:
                    return self._fallback_referrers(repository, digest, artifact_type)
                page = _referrers_page(response, describe("GET", url))
                filtered = "artifacttype" in response.headers.get(
                    "OCI-Filters-Applied", ""
                ).lower().replace(" ", "").split(",")
                next_url = self._next_page(url, response)
            found.extend(page if filtered else filter_by_artifact_type(page, artifact_type))
            if not next_url:
                return found
            url, params = next_url, None
        raise RegistryError(describe("GET", url), message=f"more than {MAX_PAGES} pages")

    def _next_page(self, url: str, response: requests.Response) -> str:
        """The absolute URL of the `Link: <…>; rel="next"` page, "" when there is none."""
        link = response.links.get("next", {}).get("url")
        if not link:
            return ""
        return check_same_origin(
            urljoin(url, link),
            Origin.of(self._base),
            f"next-page Link of {describe('GET', url)}",
            response.status_code,
        )

    def _fallback_referrers(
        self, repository: str, digest: str, artifact_type: str
    ) -> list[Descriptor]:
        try:
            fetched = self.get_manifest(repository, fallback_tag(digest))
        except (NotFound, InvalidManifest):
            return []
        if not isinstance(fetched.content, Index):
            return []
        return filter_by_artifact_type(fetched.content.manifests, artifact_type)

    def push_referrer(
        self, repository: str, content: Manifest | Index | bytes, tag: str = ""
    ) -> PushedManifest:
        """Push a manifest with a subject; keep the fallback tag index when there is no API."""
        raw, parsed = _encoded(content)
        subject = subject_of(parsed)
        if tag:
            check_tag(tag)
        digest = sha256_digest(raw)
        pushed = self.put_manifest(repository, digest, raw)
        if tag:
            by_tag = self.put_manifest(repository, tag, raw)
            pushed = PushedManifest(digest, pushed.oci_subject or by_tag.oci_subject)
        if pushed.oci_subject is None:
            descriptor = referrer_descriptor(parsed, digest, len(raw))
            self._add_to_fallback_index(repository, subject.digest, descriptor)
        return pushed

    def link_referrer(self, repository: str, content: Manifest | Index | bytes) -> bool:
        """List a referrer the registry already holds in its subject's fallback tag index,
        without pushing it again (a process died between its push and the index update).

        False, and nothing written, on a registry with the referrers API: there only a push
        makes the registry index a manifest it does not list.
        """
        raw, parsed = _encoded(content)
        subject = subject_of(parsed)
        if self._has_referrers_api(repository, subject.digest):
            return False
        descriptor = referrer_descriptor(parsed, sha256_digest(raw), len(raw))
        self._add_to_fallback_index(repository, subject.digest, descriptor)
        return True

    def _has_referrers_api(self, repository: str, digest: str) -> bool:
        response = self._auth.request(
            "GET",
            f"{self._base}/{repository}/referrers/{digest}",
            scopes=(pull_scope(repository),),
            endpoint="referrers",
            ok=(200, 404),
            idempotent=True,
            headers={"Accept": OCI_INDEX},
        )
        response.close()
        return response.status_code != 404

    def _add_to_fallback_index(
        self, repository: str, subject_digest: str, descriptor: Descriptor
    ) -> None:
        """Add `descriptor` to the fallback index, reading it back to confirm it stayed.

        The registry offers no conditional PUT, so another process updating the same tag can
        overwrite our entry; reading back catches most of those races, the reconcile loop the
        rest.
        """
        tag = fallback_tag(subject_digest)
        with self._fallback_lock:
            for _ in range(FALLBACK_UPDATE_ROUNDS):
                try:
                    current: Manifest | Index | None = self.get_manifest(repository, tag).content
                except NotFound:
                    current = None
                updated = fallback_index_with(current, descriptor)
                if updated is None:
                    return
                self.put_manifest(repository, tag, updated)
        raise RegistryError(
            describe("PUT", self._manifest_url(repository, tag)),
            message=f"the referrers fallback index kept losing {descriptor.digest} "
            f"after {FALLBACK_UPDATE_ROUNDS} updates (concurrent writers)",
        )

    def remove_from_fallback_index(
        self, repository: str, subject_digest: str, digests: Collection[str]
    ) -> bool:
        """Take `digests` out of the fallback index of `subject_digest`; delete the tag when
        nothing is left. False when there was nothing to take out (or no fallback tag).

        Every other entry stays as it was written. Like `push_referrer`, it reads back what it
        wrote, since a concurrent writer may have put the entries back or dropped others.
        """
        tag = fallback_tag(subject_digest)
        changed = False
        with self._fallback_lock:
            for _ in range(FALLBACK_UPDATE_ROUNDS):
                try:
                    current = self.get_manifest(repository, tag)
                except NotFound:
                    return changed
                updated = fallback_index_without(current.raw, digests)
                if updated is None:
                    return changed
                if updated:
                    self.put_manifest(repository, tag, updated)
                else:
                    self.delete_manifest(repository, current.digest)
                changed = True
        raise RegistryError(
            describe("PUT", self._manifest_url(repository, tag)),
            message=f"the referrers fallback index kept listing {', '.join(sorted(digests))} "
            f"after {FALLBACK_UPDATE_ROUNDS} updates (concurrent writers)",
        )


def _encoded(content: Manifest | Index | bytes) -> tuple[bytes, Manifest | Index]:
    if isinstance(content, bytes):
        return content, parse_manifest_or_index(content)
    return content.encode(), content


def _read_bounded(response: requests.Response, limit: int, what: str) -> bytes:
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > limit:
        raise RegistryError(
            what, response.status_code, message=f"manifest of {length} bytes exceeds {limit}"
        )
    data = bytearray()
    try:
        for chunk in response.iter_content(64 * 1024):
            data.extend(chunk)
            if len(data) > limit:
                raise RegistryError(
                    what, response.status_code, message=f"manifest exceeds {limit} bytes"
                )
    except requests.RequestException as exc:
        raise Unreachable(
            what, message=f"connection broken while reading ({type(exc).__name__})"
        ) from exc
    return bytes(data)


def _string_list(page: Any, key: str, url: str) -> list[str]:
    values = page.get(key) if isinstance(page, dict) else None
    if values is None and isinstance(page, dict):
        return []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise RegistryError(describe("GET", url), 200, message=f"{key}: expected a list of names")
    return values


def _referrers_page(response: requests.Response, what: str) -> list[Descriptor]:
    body = json_body(response, what)
    manifests = body.get("manifests") if isinstance(body, dict) else None
    if not isinstance(manifests, list):
        raise RegistryError(what, 200, message="referrers answer has no manifests list")
    try:
        return [Descriptor.from_json(m, f"manifests[{i}]") for i, m in enumerate(manifests)]
    except InvalidManifest as exc:
        raise RegistryError(what, 200, message=f"referrers answer: {exc}") from None
