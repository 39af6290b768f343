"""Exponential backoff with full jitter: for reconnects, and between a job's attempts."""

from __future__ import annotations

import random


class Backoff:
    """Delays of base * 2**n seconds, capped, each drawn uniformly below that bound.

    Full jitter spreads the reconnects of many containers after one Redis blip,
    so they do not return in lock-step.
    """

    __slots__ = ("base_s", "cap_s", "failures")

    def __init__(self, base_s: float = 0.05, cap_s: float = 2.0) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.failures = 0

    def next_delay(self) -> float:
        bound = min(self.cap_s, self.base_s * 2**self.failures)
        self.failures += 1
        return random.uniform(0, bound)

    def reset(self) -> None:
        self.failures = 0


def retry_delay_s(attempt: int, base_s: float, cap_s: float) -> float:
    """How long a job waits after its `attempt`-th failed attempt (1-based).

    Full jitter, as for reconnects: a burst of jobs failing together (a provider
    outage) comes back spread out instead of as a second burst.
    """
    # The exponent is clamped so a job with many attempts cannot overflow a float.
    return random.uniform(0, min(cap_s, base_s * 2 ** min(attempt - 1, 64)))
