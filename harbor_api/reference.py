"""Image references: `host[:port]/repo/path[:tag][@digest]`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from harbor_api.errors import InvalidReference

_HOST = re.compile(
    r"^(?:localhost|\[[0-9a-fA-F:]+\]|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(?::[0-9]{1,5})?$"
)
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


def check_repository(name: str) -> str:
    """`name` when it is a valid repository path (`project/path`), else `InvalidReference`."""
    for component in name.split("/"):
        if not _COMPONENT.match(component):
            raise InvalidReference(
                f"invalid repository path component {component!r} in {name!r} "
                "(lowercase letters, digits and separators . _ __ -)"
            )
    if len(name) > 255:
        raise InvalidReference(f"repository name {name[:40]!r}… is longer than 255 characters")
    return name


def is_valid_tag(tag: str) -> bool:
    """Whether `tag` is a valid OCI tag: up to 128 of letters, digits, `_ . -`, not starting
    with `.` or `-`."""
    return bool(_TAG.match(tag))


def check_tag(tag: str) -> str:
    """`tag` when it is a valid tag, else `InvalidReference`."""
    if not is_valid_tag(tag):
        raise InvalidReference(f"invalid tag {tag!r}: expected [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}")
    return tag


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse a fully qualified reference; the registry host is required."""
        original = text
        digest = ""
        if "@" in text:
            text, _, digest = text.partition("@")
            if not _DIGEST.match(digest):
                raise InvalidReference(
                    f"invalid reference {original!r}: digest {digest!r} is not sha256:<64 hex>"
                )
        host, slash, rest = text.partition("/")
        if not slash or not rest:
            raise InvalidReference(
                f"invalid reference {original!r}: expected HOST[:PORT]/REPOSITORY[:TAG][@DIGEST]"
            )
        if not _HOST.match(host) or ("." not in host and ":" not in host and host != "localhost"):
            raise InvalidReference(
                f"invalid reference {original!r}: {host!r} is not a registry host "
                "(name it with a dot or a port, or localhost)"
            )
        tag = ""
        last_slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > last_slash:
            rest, tag = rest[:colon], rest[colon + 1 :]
            if not _TAG.match(tag):
                raise InvalidReference(f"invalid reference {original!r}: invalid tag {tag!r}")
        try:
            check_repository(rest)
        except InvalidReference as exc:
            raise InvalidReference(f"invalid reference {original!r}: {exc}") from None
        return cls(registry=host, repository=rest, tag=tag, digest=digest)

    @property
    def reference(self) -> str:
        """What goes after `/manifests/`: the digest when there is one, else the tag."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag, "")

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out
