"""Per-key retry delays: exponential growth with jitter, capped."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """How long a key waits after its n-th consecutive failure.

    The nominal delay is `base * 2 ** (attempts - 1)`, capped at `cap`; jitter stretches it by a
    random factor in `[1, 1 + jitter)` (never beyond `cap`) so keys that failed together do not
    retry together.
    """

    base: float = 1.0
    """Seconds to wait after the first failure."""
    cap: float = 3600.0
    """The longest wait, whatever the number of failures."""
    jitter: float = 0.2
    """The largest fraction added to the nominal delay."""

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap:
            raise ValueError(f"backoff: expected 0 < base <= cap, got {self.base} and {self.cap}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff: jitter must be within [0, 1], got {self.jitter}")

    def nominal(self, attempts: int) -> float:
        """The delay before jitter after `attempts` consecutive failures (at least one)."""
        exponent = max(attempts, 1) - 1
        # Past this exponent the product exceeds any sane cap; stop before floats overflow.
        if exponent >= 64:
            return self.cap
        return min(self.cap, self.base * 2.0**exponent)

    def delay(self, attempts: int, rng: random.Random) -> float:
        """The jittered delay after `attempts` consecutive failures."""
        return min(self.cap, self.nominal(attempts) * (1.0 + self.jitter * rng.random()))
