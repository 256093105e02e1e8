"""Harbor's RFC 3339 timestamps (REST answers and CloudEvents) as aware UTC datetimes."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_rfc3339(text: str) -> datetime:
    """An aware UTC datetime; a time without an offset is taken as UTC (Harbor's convention).
    Raises ValueError for anything else, which callers turn into their own precise error."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
