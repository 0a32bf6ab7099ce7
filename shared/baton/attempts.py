"""Ending an attempt, shared by dispatch, sweep, callback and cancel: the database
decides who wins, the winner frees the slot and announces a terminal task."""

from __future__ import annotations

from datetime import datetime, timedelta

from baton.backoff import backoff_seconds
from baton.faults import crash_point
from baton.outbox import publish_notification
from baton.records import AttemptOutcome, ExecutionStatus, FinishedAttempt, TaskStatus
from baton.runtime import Runtime


def retry_time(runtime: Runtime, attempt: int, now: datetime) -> datetime:
    settings = runtime.settings
    delay = backoff_seconds(
        attempt, settings.backoff_base_seconds, settings.backoff_max_seconds, runtime.random
    )
    return now + timedelta(seconds=delay)


def end_attempt(
    runtime: Runtime, algorithm: str, task_id: str, attempt: int, outcome: AttemptOutcome
) -> FinishedAttempt | None:
    """Steps 13-14: record how the attempt ended; None when another actor ended it first."""
    finished = runtime.repository.finish_attempt(task_id, attempt, runtime.clock(), outcome)
    if finished is None:
        return None
    crash_point("attempt.after_finish")
    runtime.queue.release(algorithm, task_id, attempt, runtime.clock())
    if finished.terminal:
        crash_point("attempt.after_release")
        publish_notification(runtime, task_id)
    return finished


def retryable_outcome(
    runtime: Runtime,
    *,
    execution_status: ExecutionStatus,
    final_status: TaskStatus,
    attempt: int,
    error_code: str,
    error_message: str,
    http_status: int | None = None,
    not_sooner_than: float = 0.0,
) -> AttemptOutcome:
    """An outcome that retries with backoff (at least ``not_sooner_than`` seconds, e.g.
    the service's Retry-After) while attempts remain, else is final."""
    now = runtime.clock()
    retry_at = max(retry_time(runtime, attempt, now), now + timedelta(seconds=not_sooner_than))
    return AttemptOutcome(
        execution_status=execution_status,
        task_status=final_status,
        error_code=error_code,
        error_message=error_message[:1024],
        http_status=http_status,
        retry_at=retry_at,
    )
