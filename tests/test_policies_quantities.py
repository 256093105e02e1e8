from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.quantities import parse_duration, parse_size


@settings(deadline=None)
@given(st.integers(0, 99), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99))
def test_duration_parts_add_up(days: int, hours: int, minutes: int, seconds: int) -> None:
    text = f"{days}d{hours}h{minutes}m{seconds}s"
    expected = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("20GiB", 20 * 1024**3),
        ("512MiB", 512 * 1024**2),
        ("1GB", 10**9),
        ("1.5KiB", 1536),
        ("100B", 100),
        ("0", 0),
        (0, 0),
    ],
)
def test_sizes_use_binary_and_decimal_units(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("value", ["20", 20, "20G", "-1GiB", "GiB", True, "1 gib"])
def test_sizes_without_a_unit_or_with_a_wrong_one_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="expected a size like 512MiB or 20GiB, got"):
        parse_size(value)


@pytest.mark.parametrize("value", ["6", 6, "6 h", "h", "1.5h", "-5m", False, "5min"])
def test_durations_without_a_unit_or_with_a_wrong_one_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="expected a duration like 90s, 5m, 6h or 1h30m, got"):
        parse_duration(value)
