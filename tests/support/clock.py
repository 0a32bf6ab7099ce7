"""A clock that tests can move forward, for deadlines and backoff."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class ShiftableClock:
    """Real time plus an offset that a test can move forward (deadlines, backoff)."""

    def __init__(self) -> None:
        self.offset = timedelta()
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.offset += timedelta(seconds=seconds)


class FrozenClock(ShiftableClock):
    """A fixed moment plus the offset: ages and windows come out exact."""

    def __init__(self, now: datetime) -> None:
        super().__init__()
        self.now = now

    def __call__(self) -> datetime:
        with self._lock:
            return self.now + self.offset
