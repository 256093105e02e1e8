"""What the real registry says it was asked: its access log, parsed.

distribution 2.8 writes each request twice, once as a logrus `response completed` line and once
as an Apache combined-log line; the combined line is the access log proper and is the one read here
(`127.0.0.1 - - [27/Nov/2026:23:26:28 +0000] "PUT /v2/a/b/manifests/v1 HTTP/1.1" 201 0 "" "ua"`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar
from urllib.parse import unquote

WRITE_METHODS = frozenset({"PUT", "POST", "PATCH", "DELETE"})

_ACCESS_LINE = re.compile(
    r'^\S+ \S+ \S+ \[[^\]]+\] "(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/[0-9.]+" '
    r'(?P<status>\d{3}) (?:\d+|-) "[^"]*" "(?P<agent>[^"]*)"$'
)


class Request(Protocol):
    """A logged request: a `LoggedRequest` here, or a fault proxy's `ProxyRecord`."""

    @property
    def method(self) -> str: ...

    @property
    def path(self) -> str: ...


R = TypeVar("R", bound=Request)


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    query: str
    status: int
    user_agent: str


def parse_access_log(text: str) -> tuple[LoggedRequest, ...]:
    """Every access-log line of `text`, in order; other log lines are skipped."""
    records = []
    for line in text.splitlines():
        match = _ACCESS_LINE.match(line)
        if match is None:
            continue
        path, _, query = match["uri"].partition("?")
        records.append(
            LoggedRequest(
                match["method"], unquote(path), query, int(match["status"]), match["agent"]
            )
        )
    return tuple(records)


def writes_to_manifests(
    records: Iterable[R], repository: str, references: Iterable[str]
) -> tuple[R, ...]:
    """The requests that tried to change `repository`'s manifests at any of `references`.

    A reference is a tag or a digest; whatever the registry answered, the attempt counts.
    """
    targets = {f"/v2/{repository}/manifests/{reference}" for reference in references}
    return tuple(r for r in records if r.method in WRITE_METHODS and r.path in targets)
