"""Exponential backoff with jitter, computed where the fault is seen.

Temporal's RetryPolicy backs off exponentially but without jitter: every
activity that failed together retries together, and a provider recovering
from an outage meets the whole herd at once. Activities that call outside
services compute their own delay here and hand it to Temporal as
`ApplicationError(next_retry_delay=...)`.

"Equal jitter": half of each exponential delay is fixed, half is random. The
delays still grow from attempt to attempt (attempt n lies in [d/2, d], attempt
n+1 in [d, 2d] until the cap), unlike full jitter, so an operator reading an
activity's attempts sees the backoff; and callers still spread out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    initial_s: float
    cap_s: float
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.cap_s:
            raise ValueError(f"need 0 < initial_s <= cap_s, got {self.initial_s}, {self.cap_s}")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")

    def ceiling(self, attempt: int) -> float:
        """The un-jittered delay after failed attempt `attempt` (1-based)."""
        exponent = max(attempt, 1) - 1
        # Bounded exponent: attempt 2000 must not overflow a float.
        return min(self.cap_s, self.initial_s * self.multiplier ** min(exponent, 64))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = self.ceiling(attempt)
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)
