from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.state.backoff import Backoff


def test_default_delay_doubles_from_one_second_to_one_hour() -> None:
    backoff = Backoff()
    assert [backoff.nominal(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert backoff.nominal(12) == 2048.0
    assert backoff.nominal(13) == 3600.0
    assert backoff.nominal(10_000) == 3600.0


@given(
    attempts=st.integers(min_value=1, max_value=200),
    seed=st.integers(min_value=0, max_value=2**32),
    base=st.floats(min_value=0.01, max_value=60),
    jitter=st.floats(min_value=0, max_value=1),
)
def test_jittered_delay_stays_between_nominal_and_nominal_plus_jitter_capped(
    attempts: int, seed: int, base: float, jitter: float
) -> None:
    backoff = Backoff(base=base, cap=3600.0, jitter=jitter)
    nominal = backoff.nominal(attempts)
    delay = backoff.delay(attempts, random.Random(seed))
    assert nominal <= delay <= min(3600.0, nominal * (1 + jitter))


def test_jitter_spreads_keys_that_failed_together() -> None:
    backoff = Backoff()
    rng = random.Random(1)
    delays = {backoff.delay(4, rng) for _ in range(50)}
    assert len(delays) == 50
    assert max(delays) - min(delays) > 0.8


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"base": 0.0}, "expected 0 < base <= cap"),
        ({"base": 10.0, "cap": 5.0}, "expected 0 < base <= cap"),
        ({"jitter": 1.5}, "jitter must be within [0, 1]"),
    ],
)
def test_nonsense_backoff_settings_are_rejected(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Backoff(**options)
