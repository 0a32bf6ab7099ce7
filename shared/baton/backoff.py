"""Retry delays: exponential with equal jitter, so retries of many tasks that failed
together spread out instead of arriving in one wave."""

from __future__ import annotations

import random


def backoff_seconds(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Delay before the retry that follows failed ``attempt`` (1-based).

    Half of the exponential step is fixed, half random: never zero, never above ``cap``.
    """
    step = min(cap, base * 2 ** min(attempt - 1, 32))
    return float(step / 2 + rng.uniform(0, step / 2))
