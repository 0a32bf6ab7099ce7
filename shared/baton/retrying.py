"""Operators retry final tasks (``baton task retry``, ``baton tasks retry``).

A retried task goes back to PENDING with a fresh attempt budget and keeps its history
(its attempt rows stay, attempt numbers go on); its next final state is a new outcome
with a new ``notification_id``. Every retry is a compare-and-set on the final state the
task was read in, so two operators retrying at once retry it once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from baton.contracts import IdempotencyKey, Name, StartTime
from baton.errors import RetryRefused, TaskNotFound
from baton.faults import crash_point
from baton.models import Task
from baton.observability import logger
from baton.records import TaskStatus
from baton.repository import RetrySelection
from baton.runtime import Runtime
from baton.scheduling import run_fast_path

RETRY_BATCH = 100
"""Tasks per compare-and-set in a bulk retry: one short transaction each."""

SAMPLE_SIZE = 20
"""Tasks shown before a bulk retry."""


class TaskRef(BaseModel):
    """One task, by id or by its app and idempotency key (operator input)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_id: Annotated[str, StringConstraints(min_length=1, max_length=36)] | None = None
    app: Name | None = None
    idempotency_key: IdempotencyKey | None = None

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        by_key = self.app is not None or self.idempotency_key is not None
        if (self.task_id is None) == (not by_key) or (
            by_key and (self.app is None or self.idempotency_key is None)
        ):
            raise ValueError("give a task id, or both an app and an idempotency key")
        return self


class BulkRetry(BaseModel):
    """What ``baton tasks retry`` selects (operator input, checked before anything runs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal["failed", "timed_out", "cancelled"]
    app: Name | None = None
    algorithm: Name | None = None
    error_code: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    since: StartTime | None = None
    limit: int | None = Field(default=None, ge=1)

    def selection(self, ended_by: datetime) -> RetrySelection:
        return RetrySelection(
            status=TaskStatus(self.status),
            app=self.app,
            algorithm=self.algorithm,
            error_code=self.error_code,
            since=self.since,
            ended_by=ended_by,
        )


def task_summary(task: Task) -> dict[str, Any]:
    """A task as ``baton tasks list`` shows it, with what a retry changes."""
    return {
        "task_id": task.id,
        "app": task.app,
        "algorithm": task.algorithm,
        "idempotency_key": task.idempotency_key,
        "status": task.status.value,
        "created_at": task.created_at.isoformat(),
        "attempts": task.attempts,
        "max_attempts": task.max_attempts,
        "error_code": task.error_code,
        "finished_at": task.finished_at.isoformat() if task.finished_at else None,
    }


def find_task(runtime: Runtime, ref: TaskRef) -> Task:
    if ref.task_id is not None:
        task = runtime.repository.get_task(ref.task_id)
        missing = f"task {ref.task_id} does not exist"
    else:
        assert ref.app is not None
        assert ref.idempotency_key is not None
        task = runtime.repository.find_task(ref.app, ref.idempotency_key)
        missing = f"app {ref.app!r} has no task with that idempotency key"
    if task is None:
        raise TaskNotFound(missing)
    return task


def _budgets(runtime: Runtime) -> dict[str, int]:
    """Each registered algorithm's attempt budget: a task whose message gave none gets
    its algorithm's as it is now (the registry may have changed since it arrived)."""
    registry = runtime.config.registry
    return {name: registry[name].max_attempts for name in registry.names()}


def retry_task(runtime: Runtime, ref: TaskRef) -> tuple[Task, TaskStatus]:
    """Retry one final task; returns it (PENDING now) and the state it left.

    Refused (``RetryRefused``) unless it is final, its notification is out and its
    algorithm registered; ``TaskNotFound`` if there is no such task.
    """
    task = find_task(runtime, ref)
    status = task.status
    if not status.is_terminal:
        raise RetryRefused(
            f"task {task.id} is {status.value}: only a final task (succeeded, failed, "
            "timed_out, cancelled) can be retried"
        )
    if task.notified_at is None:
        raise RetryRefused(
            f"task {task.id} ended {status.value} but its notification is not published "
            "yet; retry it once it is (the sweep publishes it within a minute)"
        )
    budgets = _budgets(runtime)
    if task.algorithm not in budgets:
        raise RetryRefused(
            f"task {task.id}: algorithm {task.algorithm!r} is not registered; "
            "a retry would fail at once"
        )
    retried = runtime.repository.retry_tasks([task.id], status, runtime.clock(), budgets)
    if not retried:
        now = runtime.repository.get_task(task.id)
        raise RetryRefused(
            f"task {task.id} changed while it was being retried "
            f"(now {now.status.value if now else 'gone'}): nothing done"
        )
    _retried(runtime, retried, status)
    return retried[0], status


@dataclass
class BulkRetryReport:
    dry_run: bool
    matched: int
    retried: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    """Why selected tasks were left alone: ``notification_pending`` (their
    notification is not out yet), ``algorithm_unregistered``, ``changed`` (retried or
    otherwise changed by someone else meanwhile)."""
    tasks: list[dict[str, Any]] = field(default_factory=list)
    """A dry run: a sample of the selected tasks; otherwise the tasks retried."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "matched": self.matched,
            "retried": self.retried,
            "skipped": dict(sorted(self.skipped.items())),
            "tasks": self.tasks,
        }


def preview_bulk_retry(runtime: Runtime, request: BulkRetry) -> BulkRetryReport:
    """How many tasks ``request`` selects, and the first of them; changes nothing."""
    selection = request.selection(runtime.clock())
    matched = runtime.repository.count_retry_candidates(selection)
    if request.limit is not None:
        matched = min(matched, request.limit)
    sample = runtime.repository.retry_candidates(selection, None, min(SAMPLE_SIZE, matched))
    return BulkRetryReport(
        dry_run=True, matched=matched, tasks=[task_summary(task) for task in sample]
    )


def bulk_retry(
    runtime: Runtime, request: BulkRetry, *, batch_size: int = RETRY_BATCH
) -> BulkRetryReport:
    """Retry what ``request`` selects, oldest ended first, ``batch_size`` tasks per
    compare-and-set; what ended after the run began is not taken (a task this run
    retried may end again before the run is over). Safe to run again after a failure:
    what was retried is no longer in the selected state."""
    selection = request.selection(runtime.clock())
    matched = runtime.repository.count_retry_candidates(selection)
    if request.limit is not None:
        matched = min(matched, request.limit)
    report = BulkRetryReport(dry_run=False, matched=matched)
    budgets = _budgets(runtime)
    expected = selection.status
    cursor: tuple[datetime, str] | None = None
    remaining = matched
    while remaining > 0:
        batch = runtime.repository.retry_candidates(selection, cursor, min(batch_size, remaining))
        if not batch:
            break
        remaining -= len(batch)
        cursor = (batch[-1].updated_at, batch[-1].id)
        eligible = []
        for task in batch:
            reason = _skip_reason(task, budgets)
            if reason is None:
                eligible.append(task.id)
            else:
                report.skipped[reason] = report.skipped.get(reason, 0) + 1
        retried = runtime.repository.retry_tasks(eligible, expected, runtime.clock(), budgets)
        changed = len(eligible) - len(retried)
        if changed:
            report.skipped["changed"] = report.skipped.get("changed", 0) + changed
        report.retried += len(retried)
        report.tasks += [task_summary(task) for task in retried]
        _retried(runtime, retried, expected)
    return report


def _skip_reason(task: Task, budgets: dict[str, int]) -> str | None:
    if task.notified_at is None:
        return "notification_pending"
    if task.algorithm not in budgets:
        return "algorithm_unregistered"
    return None


def _retried(runtime: Runtime, tasks: Iterable[Task], previous: TaskStatus) -> None:
    """Log each retried task, then promote and dispatch them at once where there is room
    (the promote timer takes them otherwise, as any pending task)."""
    algorithms: set[str] = set()
    count = 0
    for task in tasks:
        count += 1
        algorithms.add(task.algorithm)
        logger.info(
            "task retried by an operator",
            task_id=task.id,
            app=task.app,
            algorithm=task.algorithm,
            idempotency_key=task.idempotency_key,
            previous_status=previous.value,
            attempts=task.attempts,
            max_attempts=task.max_attempts,
        )
    if not count:
        return
    crash_point("retry.after_reset")
    run_fast_path(runtime, algorithms)
