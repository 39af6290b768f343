"""Exponential backoff with full jitter, as a tiny object a loop owns and resets."""

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
