"""Typed errors raised by the registry and Harbor clients.

Code above `harbor_api` sees these and never a `requests.Response`. Every error names the
request that failed (`method url`) and carries the server's error code and message when the
server sent one.
"""

from __future__ import annotations


class AcceldError(Exception):
    """Base of every error acceld raises on purpose."""


class PermanentError(AcceldError):
    """Marks an error that retrying cannot fix: the same input fails the same way again.

    The controller quarantines a key that fails with one (with its reason) instead of retrying
    it with backoff; every other error is retried.
    """


class InvalidReference(AcceldError, ValueError):
    """A string that is not a valid image reference."""


class InvalidManifest(PermanentError, ValueError):
    """A manifest or index whose JSON does not have the shape the OCI spec requires."""


class DigestMismatch(AcceldError):
    """Bytes whose sha256 is not the digest they were asked for or announced with."""


class RegistryError(AcceldError):
    """A request to a registry or to Harbor failed.

    `status` is the HTTP status (0 when no answer came), `code` and `message` the first entry of
    the server's `{"errors": [...]}` body when there was one.
    """

    def __init__(
        self,
        request: str,
        status: int = 0,
        code: str = "",
        message: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.request = request
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = [self.request]
        if self.status:
            parts.append(f"HTTP {self.status}")
        if self.code:
            parts.append(self.code)
        text = ": ".join(parts)
        return f"{text}: {self.message}" if self.message else text

    @property
    def transient(self) -> bool:
        """Whether trying the same request again later may succeed."""
        return self.status in (0, 408, 429, 500, 502, 503, 504)


class Unreachable(RegistryError):
    """No HTTP answer: connection refused or reset, DNS failure, TLS failure, timeout."""


class Unauthorized(RegistryError):
    """401: no credentials, or credentials the server does not accept."""


class Denied(RegistryError):
    """403: the credentials are valid but lack a permission (or Harbor refused the write)."""


class NotFound(RegistryError):
    """404: the repository, manifest, blob, tag or API path does not exist."""


class BlobUnknown(NotFound, PermanentError):
    """404 for a blob a manifest names: that manifest stays broken whatever is retried."""


class TooManyRequests(RegistryError):
    """429: the server asks us to slow down; `retry_after` says for how long when it said so."""


class ServerError(RegistryError):
    """5xx from the server."""


class ValidationFailed(RegistryError):
    """400 or 422: the server refused the request's content."""


class ForeignUrl(RegistryError):
    """The registry pointed outside its own scheme, host and port (a next-page `Link`, an
    upload `Location`): not followed, so the credentials never go there. Retrying gets the same
    answer."""

    @property
    def transient(self) -> bool:
        return False


def error_for_status(
    request: str,
    status: int,
    code: str = "",
    message: str = "",
    retry_after: float | None = None,
) -> RegistryError:
    """The typed error for an HTTP status."""
    cls: type[RegistryError]
    if status == 401:
        cls = Unauthorized
    elif status == 403:
        cls = Denied
    elif status == 404:
        cls = NotFound
    elif status == 429:
        cls = TooManyRequests
    elif status >= 500:
        cls = ServerError
    elif status in (400, 422):
        cls = ValidationFailed
    else:
        cls = RegistryError
    return cls(request, status, code, message, retry_after)
