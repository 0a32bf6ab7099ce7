"""Polling with a deadline: end-to-end steps finish on other threads."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T | Literal[False] | None],
    timeout: float = 20.0,
    interval: float = 0.05,
) -> T:
    """The condition's first truthy value. Conditions read ``ready and value`` or
    ``next(..., None)``: the False or None they give while waiting is never returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
