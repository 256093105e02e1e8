"""Where credentials may go: the configured server's origin, and URLs that carry none inside.

The registry's credentials (Basic, or the Bearer token got with them) are sent only to the
registry's own origin: scheme, host and port, as Docker and containerd attach them only to the
host whose challenge asked for them. A registry answer can name another URL (the `Link` of the
next catalog or tag page, the `Location` of a blob upload); one outside that origin, or one
that would take an https registry to plain http, is refused with `ForeignUrl` and never
requested at all. Redirects are left to `requests`, which drops `Authorization` when the host,
port or scheme changes.

The Bearer realm is the exception Docker makes too: the token service may live on another host
(Harbor's `/service/token` usually does not), and it receives the username and password. It
must be http(s), and plain http only when the registry itself is.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from harbor_api.errors import ForeignUrl

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Origin:
    """scheme://host:port with the default port filled in and the host in lower case."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        """The origin of an absolute http(s) URL; ValueError naming what is wrong otherwise."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise ValueError(f"expected an http:// or https:// URL, got scheme {scheme!r}")
        if not parts.hostname:
            raise ValueError("expected a URL with a host, got none")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"URL with an invalid port: {_without_userinfo(parts)!r}") from None
        return cls(scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme])

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def check_same_origin(url: str, origin: Origin, request: str, status: int = 0) -> str:
    """`url` when it is on `origin`; else `ForeignUrl` saying where it pointed.

    `request` and `status` name the answer that pointed there (`GET …/tags/list`, 200).
    """
    try:
        found = Origin.of(url)
    except ValueError as exc:
        raise ForeignUrl(
            request, status, message=f"the registry pointed to a bad URL: {exc}"
        ) from None
    if found == origin:
        return url
    what = (
        "downgrade from https to http"
        if found.scheme == "http" and origin.scheme == "https"
        else "another origin"
    )
    raise ForeignUrl(
        request,
        status,
        message=f"the registry pointed to {found}, {what} than its own {origin}; "
        "refusing to follow it (credentials go only to the configured registry)",
    )


def refuse_userinfo(url: str) -> None:
    """ValueError when `url` (`http(s)://…` or a bare `HOST[:PORT]`) has credentials inside.

    `http://robot:secret@harbor` would put the password in every log line and error that
    shows the URL; credentials come from their own settings. The message never repeats them.
    """
    if "://" in url:
        parts = urlsplit(url)
        has_userinfo = "@" in parts.netloc
        shown = _without_userinfo(parts)
    else:
        netloc = url.split("/", 1)[0]
        has_userinfo = "@" in netloc
        shown = netloc.rpartition("@")[2]
    if has_userinfo:
        raise ValueError(
            f"the URL of {shown!r} has a username or password inside (user:password@); "
            "give credentials through the username and password settings instead"
        )


def _without_userinfo(parts: SplitResult) -> str:
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}" if parts.scheme else host
