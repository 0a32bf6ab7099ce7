"""The gauges the sweep publishes once a minute, per algorithm: how many tasks are
pending and queued, the cost in flight against the capacity, whether the algorithm is
paused, and how long the oldest task that could start has waited.

Read cheaply: one grouped query for every algorithm's waiting tasks, one for the
operators' pauses, and one Redis read of the in-flight cost per algorithm.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import redis
from sqlalchemy.exc import OperationalError

from baton.observability import (
    BACKLOG,
    CAPACITY,
    OLDEST_PENDING_AGE_SECONDS,
    PAUSED,
    PENDING,
    QUEUED,
    RUNNING,
    SATURATED,
    emit,
    logger,
)
from baton.repository import AlgorithmBacklog
from baton.runtime import Runtime


@dataclass(frozen=True)
class AlgorithmGauges:
    algorithm: str
    pending: int
    queued: int
    running: int
    """Cost in flight."""
    capacity: int
    """0 for an algorithm that left the registry while tasks wait for it."""
    paused: bool
    oldest_pending_age_seconds: float
    due: int
    """Waiting tasks that may start now (queued, or pending past their not_before)."""

    @property
    def backlog(self) -> int:
        return self.pending + self.queued

    @property
    def saturated(self) -> bool:
        """Full while tasks that could start wait: the capacity, not a pause, holds them."""
        return (
            not self.paused and self.capacity > 0 and self.running >= self.capacity and self.due > 0
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "backlog": self.backlog, "saturated": self.saturated}


def read_gauges(runtime: Runtime) -> list[AlgorithmGauges]:
    """Every registered algorithm, and any other that tasks still wait for."""
    now = runtime.clock()
    registry = runtime.config.registry
    backlog = runtime.repository.backlog(now)
    held = runtime.repository.held_algorithms()
    gauges = []
    for algorithm in sorted(set(registry.names()) | set(backlog)):
        config = registry.algorithms.get(algorithm)
        waiting = backlog.get(algorithm, AlgorithmBacklog())
        gauges.append(
            AlgorithmGauges(
                algorithm=algorithm,
                pending=waiting.pending,
                queued=waiting.queued,
                running=runtime.queue.inflight_cost(algorithm),
                capacity=config.capacity if config is not None else 0,
                paused=algorithm in held or (config is not None and config.paused),
                oldest_pending_age_seconds=_age(now, waiting.oldest_due_created_at),
                due=waiting.due,
            )
        )
    return gauges


def _age(now: datetime, since: datetime | None) -> float:
    return 0.0 if since is None else max(0.0, (now - since).total_seconds())


def publish_gauges(runtime: Runtime) -> list[AlgorithmGauges]:
    """The sweep's last step: emit each algorithm's gauges. Skipped, with a warning, when
    Redis or the database is out of reach: the sweep's own work is done by then, and a
    missing minute is what the dashboard shows."""
    try:
        gauges = read_gauges(runtime)
    except (redis.RedisError, OperationalError) as exc:
        logger.warning("gauges not published this minute", error=type(exc).__name__)
        return []
    for gauge in gauges:
        for spec, value in (
            (PENDING, gauge.pending),
            (QUEUED, gauge.queued),
            (BACKLOG, gauge.backlog),
            (RUNNING, gauge.running),
            (CAPACITY, gauge.capacity),
            (PAUSED, int(gauge.paused)),
            (OLDEST_PENDING_AGE_SECONDS, gauge.oldest_pending_age_seconds),
            (SATURATED, int(gauge.saturated)),
        ):
            emit(spec, value, algorithm=gauge.algorithm)
    return gauges
