"""Ending a task before its algorithm finishes it: an operator or its app cancels it,
it waited past its queue timeout or its total deadline, or its algorithm left the
registry. Any state that is not final ends, with its one notification; an attempt in
flight is ended with it and its slot freed."""

from __future__ import annotations

from baton.errors import OutcomeConflict, TaskNotFound
from baton.models import Task
from baton.outbox import publish_notification
from baton.records import TaskStatus
from baton.runtime import Runtime
from baton.scheduling import run_fast_path


def cancel_task(runtime: Runtime, task_id: str, reason: str = "cancelled by operator") -> Task:
    task = end_task_early(runtime, task_id, TaskStatus.CANCELLED, "cancelled", reason)
    if task is None:
        found = runtime.repository.get_task(task_id)
        if found is None:
            raise TaskNotFound(f"task {task_id} does not exist")
        raise OutcomeConflict(f"task {task_id} is already {found.status.value}")
    run_fast_path(runtime, [task.algorithm])
    return task


def end_task_early(
    runtime: Runtime,
    task_id: str,
    status: TaskStatus,
    error_code: str,
    message: str,
    *,
    waiting_only: bool = False,
    never_accepted: bool = False,
) -> Task | None:
    """End the task as ``status`` with ``error_code``; None when it was final already
    (or no longer waiting, or accepted, where that is required). The caller acts on the
    room freed (the fast path)."""
    ended = runtime.repository.end_task(
        task_id,
        runtime.clock(),
        status,
        error_code,
        message,
        waiting_only=waiting_only,
        never_accepted=never_accepted,
    )
    if ended is None:
        return None
    task, running_attempt = ended
    if running_attempt:
        runtime.queue.release(task.algorithm, task.id, running_attempt, runtime.clock())
    publish_notification(runtime, task.id)
    return task
