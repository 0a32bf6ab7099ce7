"""Ending an attempt, shared by dispatch, sweep, callback and cancel: the database
decides who wins, the winner frees the slot and announces a terminal task."""

from __future__ import annotations

from datetime import datetime, timedelta

from baton.backoff import backoff_seconds
from baton.draining import hold_slot
from baton.faults import crash_point
from baton.observability import ATTEMPTS_TIMED_OUT, emit
from baton.outbox import publish_notification
from baton.records import AttemptOutcome, ExecutionStatus, FinishedAttempt, TaskStatus
from baton.registry import DEFAULT_MAX_RUN_SECONDS
from baton.runtime import Runtime


def backoff_bounds(runtime: Runtime, algorithm: str) -> tuple[float, float]:
    """The algorithm's backoff base and maximum, or the settings' where it sets none."""
    settings = runtime.settings
    registry = runtime.config.registry
    config = registry.algorithms.get(algorithm)
    base = settings.backoff_base_seconds
    most = settings.backoff_max_seconds
    if config is not None and config.backoff_base_seconds is not None:
        base = config.backoff_base_seconds
    if config is not None and config.backoff_max_seconds is not None:
        most = config.backoff_max_seconds
    return base, most


def run_limit_seconds(runtime: Runtime, algorithm: str) -> int:
    """How long after its dispatch an attempt of ``algorithm`` may run, heartbeats
    included (the default where the algorithm left the registry)."""
    registry = runtime.config.registry
    if algorithm in registry:
        return registry[algorithm].run_limit_seconds
    return DEFAULT_MAX_RUN_SECONDS


def retry_time(runtime: Runtime, algorithm: str, attempt: int, now: datetime) -> datetime:
    base, most = backoff_bounds(runtime, algorithm)
    return now + timedelta(seconds=backoff_seconds(attempt, base, most, runtime.random))


def end_attempt(
    runtime: Runtime, algorithm: str, task_id: str, attempt: int, outcome: AttemptOutcome
) -> FinishedAttempt | None:
    """Steps 13-14: record how the attempt ended; None when another actor ended it first.
    The slot is freed, or, for an attempt that drains, held until its service stops."""
    finished = runtime.repository.finish_attempt(task_id, attempt, runtime.clock(), outcome)
    if finished is None:
        return None
    crash_point("attempt.after_finish")
    if outcome.execution_status == ExecutionStatus.TIMED_OUT:
        emit(ATTEMPTS_TIMED_OUT, 1, algorithm=algorithm, app=finished.task.app)
    if finished.draining is not None:
        hold_slot(runtime, algorithm, finished.draining)  # freed once the service stops
    else:
        runtime.queue.release(algorithm, task_id, attempt, runtime.clock())
    if finished.terminal:
        crash_point("attempt.after_release")
        publish_notification(runtime, task_id, finished.task)
    return finished


def retryable_outcome(
    runtime: Runtime,
    *,
    algorithm: str,
    execution_status: ExecutionStatus,
    final_status: TaskStatus,
    attempt: int,
    error_code: str,
    error_message: str,
    http_status: int | None = None,
    not_sooner_than: float = 0.0,
    counts_attempt: bool = True,
) -> AttemptOutcome:
    """An outcome that retries with the algorithm's backoff (at least ``not_sooner_than``
    seconds, e.g. the service's Retry-After) while attempts remain, else is final; one
    that does not count an attempt retries regardless."""
    now = runtime.clock()
    retry_at = max(
        retry_time(runtime, algorithm, attempt, now), now + timedelta(seconds=not_sooner_than)
    )
    return AttemptOutcome(
        execution_status=execution_status,
        task_status=final_status,
        error_code=error_code,
        error_message=error_message[:1024],
        http_status=http_status,
        retry_at=retry_at,
        counts_attempt=counts_attempt,
    )
