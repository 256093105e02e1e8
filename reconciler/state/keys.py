"""The identity of one unit of work: an original image and one accelerated format of it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from harbor_api.errors import AcceldError
from harbor_api.oci import is_digest

_REPOSITORY = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_FORMAT = re.compile(r"^[a-z0-9]+(?:[:._-][a-z0-9]+)*$")


class InvalidKey(AcceldError, ValueError):
    """Text or fields that do not make a `repository@digest#format` key."""


@dataclass(frozen=True)
class Key:
    """Identity only, never the event that enqueued it (the reconcile step re-reads the state).

    `repository` is the full name inside the registry (`project/path`), `digest` the original's
    manifest digest, `format` an accelerated format name (`estargz`, `zstd:chunked`, `nydus`).
    """

    repository: str
    digest: str
    format: str

    def __post_init__(self) -> None:
        if len(self.repository) > 255 or not _REPOSITORY.match(self.repository):
            raise InvalidKey(
                f"key repository {self.repository!r}: expected a lowercase repository name "
                "(path components of letters, digits and . _ __ -, joined by /)"
            )
        if not is_digest(self.digest):
            raise InvalidKey(f"key digest {self.digest!r}: expected sha256:<64 lowercase hex>")
        if not _FORMAT.match(self.format):
            raise InvalidKey(
                f"key format {self.format!r}: expected a format name such as estargz or "
                "zstd:chunked"
            )

    @classmethod
    def parse(cls, text: str) -> Key:
        """Read `repository@digest#format`, the form `str(key)` writes."""
        repository, at, rest = text.partition("@")
        digest, hash_sign, format_name = rest.partition("#")
        if not at or not hash_sign:
            raise InvalidKey(f"invalid key {text!r}: expected REPOSITORY@sha256:<hex>#FORMAT")
        try:
            return cls(repository, digest, format_name)
        except InvalidKey as exc:
            raise InvalidKey(f"invalid key {text!r}: {exc}") from None

    def __str__(self) -> str:
        return f"{self.repository}@{self.digest}#{self.format}"
