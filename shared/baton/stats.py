"""What operators read: the newest tasks (``baton tasks list``) and, per algorithm, its
backlog, its load against its cap, and how long its tasks wait and run (``baton stats``).

Counts come from the database (the source of truth) in one grouped query each; the cost
in flight from Redis, as admission counts it against the cap; the cap from the registry
in force. Percentiles are nearest-rank over the attempts of the last hour (the latest
``STATS_SAMPLE`` of them at most): the p-th percentile is the smallest value that at
least p % of the sample does not exceed, a value that was really observed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from baton.contracts import Name, StartTime
from baton.records import ExecutionStatus, TaskStatus
from baton.repository import RecentAttempt, TaskListing
from baton.retrying import task_summary
from baton.runtime import Runtime

DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 1000

LIST_WINDOWS = (timedelta(hours=1), timedelta(days=1), timedelta(days=30))
"""``baton tasks list`` without ``--since`` looks among the tasks created in the last
hour first, then the last day, the last month, and only then all of them: a listing of
the newest reads the recent rows, however long the history."""

STATS_WINDOW = timedelta(hours=1)
"""The window of the percentiles and of the timeouts."""

STATS_SAMPLE = 10_000
"""The most attempts the percentiles are computed over (the latest of the window)."""

LIST_COLUMNS = (
    "task_id",
    "app",
    "algorithm",
    "idempotency_key",
    "status",
    "attempts",
    "error_code",
    "created_at",
    "finished_at",
)

STATS_COLUMNS = (
    "algorithm",
    "pending",
    "queued",
    "running/cap",
    "oldest pending",
    "queue wait p50/p95",
    "run time p50/p95",
    "timeouts 1h",
)

_FINISHED_BY_THE_ALGORITHM = frozenset({ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED})

ListStatus = Literal[
    "pending", "queued", "running", "succeeded", "failed", "timed_out", "cancelled"
]


class TaskFilter(BaseModel):
    """What ``baton tasks list`` selects (operator input, checked before anything runs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app: Name | None = None
    algorithm: Name | None = None
    status: ListStatus | None = None
    since: StartTime | None = None
    """Created at or after this moment."""
    limit: int = Field(default=DEFAULT_LIST_LIMIT, ge=1, le=MAX_LIST_LIMIT)


def list_tasks(runtime: Runtime, request: TaskFilter) -> list[dict[str, Any]]:
    """The newest ``limit`` tasks that match, newest first, as ``task_summary`` shows
    them. Windows of creation time are tried in turn (``LIST_WINDOWS``): once one holds
    ``limit`` tasks that match, they are the newest of all."""
    now = runtime.clock()
    status = TaskStatus(request.status) if request.status is not None else None

    def newest(since: datetime | None) -> list[dict[str, Any]]:
        selection = TaskListing(
            limit=request.limit,
            app=request.app,
            algorithm=request.algorithm,
            status=status,
            since=since,
        )
        return [task_summary(task) for task in runtime.repository.list_tasks(selection)]

    for window in LIST_WINDOWS:
        start = now - window
        if request.since is not None and request.since >= start:
            break
        found = newest(start)
        if len(found) >= request.limit:
            return found
    return newest(request.since)


@dataclass(frozen=True)
class AlgorithmStats:
    algorithm: str
    registered: bool
    pending: int
    queued: int
    running: int
    """Cost in flight, as Redis counts it against the cap."""
    max_concurrency: int | None
    """The registry's cap; None for an algorithm that left it."""
    oldest_pending_age_seconds: float | None
    """How long the longest-waiting task that may start (pending or queued, its
    ``not_before`` passed) has been due; None when none waits."""
    queue_wait_p50_seconds: float | None
    """From a task's acceptance to its first dispatch, for first dispatches in the window."""
    queue_wait_p95_seconds: float | None
    run_time_p50_seconds: float | None
    """From an attempt's dispatch to the callback that ended it, for attempts the
    algorithm ended (succeeded or failed) in the window."""
    run_time_p95_seconds: float | None
    timeouts_last_hour: int
    """Attempts that ended timed out in the window."""
    window_seconds: int
    sampled_attempts: int
    """The attempts of this algorithm the percentiles were computed over."""

    def row(self) -> dict[str, str]:
        cap = "-" if self.max_concurrency is None else str(self.max_concurrency)
        return {
            "algorithm": self.algorithm + ("" if self.registered else " (unregistered)"),
            "pending": str(self.pending),
            "queued": str(self.queued),
            "running/cap": f"{self.running}/{cap}",
            "oldest pending": duration(self.oldest_pending_age_seconds),
            "queue wait p50/p95": _pair(self.queue_wait_p50_seconds, self.queue_wait_p95_seconds),
            "run time p50/p95": _pair(self.run_time_p50_seconds, self.run_time_p95_seconds),
            "timeouts 1h": str(self.timeouts_last_hour),
        }


@dataclass(frozen=True)
class StatsReport:
    at: datetime
    window_seconds: int
    sample_limit: int
    sampled: int
    """Attempts read for the percentiles, all algorithms together."""
    algorithms: list[AlgorithmStats]

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """Keyed by algorithm, as ``baton stats --json`` prints it."""
        return {
            one.algorithm: {k: v for k, v in asdict(one).items() if k != "algorithm"}
            for one in self.algorithms
        }

    def heading(self) -> str:
        capped = f", the latest {self.sample_limit}" if self.sampled >= self.sample_limit else ""
        return (
            f"at {self.at.isoformat()}; percentiles (nearest rank) and timeouts over the "
            f"last {self.window_seconds // 60} minutes: {self.sampled} attempt(s){capped}"
        )

    def rows(self) -> list[dict[str, str]]:
        return [one.row() for one in self.algorithms]


def algorithm_stats(runtime: Runtime) -> StatsReport:
    """Per algorithm (every registered one, and any other the database still has tasks
    or recent attempts of): ``AlgorithmStats``."""
    repository, registry = runtime.repository, runtime.config.registry
    now = runtime.clock()
    start = now - STATS_WINDOW
    waiting = {row.algorithm: row for row in repository.waiting_stats(now)}
    timeouts = repository.timeouts_since(start)
    attempts = repository.recent_attempts(start, STATS_SAMPLE)
    by_algorithm: dict[str, list[RecentAttempt]] = {}
    for attempt in attempts:
        by_algorithm.setdefault(attempt.algorithm, []).append(attempt)
    names = sorted({*registry.names(), *waiting, *timeouts, *by_algorithm})
    window = int(STATS_WINDOW.total_seconds())
    report = []
    for name in names:
        mine = by_algorithm.get(name, [])
        waits = sorted(
            (a.dispatched_at - a.task_created_at).total_seconds()
            for a in mine
            if a.first_dispatch and a.dispatched_at >= start
        )
        runs = sorted(
            (a.finished_at - a.dispatched_at).total_seconds()
            for a in mine
            if a.finished_at is not None
            and a.finished_at >= start
            and a.status in _FINISHED_BY_THE_ALGORITHM
        )
        counts = waiting.get(name)
        oldest = counts.oldest_due if counts is not None else None
        registered = name in registry
        report.append(
            AlgorithmStats(
                algorithm=name,
                registered=registered,
                pending=counts.pending if counts is not None else 0,
                queued=counts.queued if counts is not None else 0,
                running=runtime.queue.inflight_cost(name),
                max_concurrency=registry[name].capacity if registered else None,
                oldest_pending_age_seconds=None
                if oldest is None
                else _seconds((now - oldest).total_seconds()),
                queue_wait_p50_seconds=percentile(waits, 50),
                queue_wait_p95_seconds=percentile(waits, 95),
                run_time_p50_seconds=percentile(runs, 50),
                run_time_p95_seconds=percentile(runs, 95),
                timeouts_last_hour=timeouts.get(name, 0),
                window_seconds=window,
                sampled_attempts=len(mine),
            )
        )
    return StatsReport(now, window, STATS_SAMPLE, len(attempts), report)


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """Nearest rank: the smallest value that at least ``p`` % of ``ordered`` (sorted)
    does not exceed; None for no values."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return _seconds(ordered[rank - 1])


def _seconds(value: float) -> float:
    return round(value, 3)


def duration(seconds: float | None) -> str:
    """A length of time for people: ``4.2s``, ``42s``, ``3m07s``, ``2h05m``, ``3d04h``."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def _pair(first: float | None, second: float | None) -> str:
    if first is None and second is None:
        return "-"
    return f"{duration(first)} / {duration(second)}"
