"""Cancelling a task: any non-terminal state -> CANCELLED, with its notification."""

from __future__ import annotations

from baton.errors import OutcomeConflict, TaskNotFound
from baton.models import Task
from baton.outbox import publish_notification
from baton.runtime import Runtime
from baton.scheduling import run_fast_path


def cancel_task(runtime: Runtime, task_id: str, reason: str = "cancelled by operator") -> Task:
    cancelled = runtime.repository.cancel_task(task_id, runtime.clock(), reason)
    if cancelled is None:
        task = runtime.repository.get_task(task_id)
        if task is None:
            raise TaskNotFound(f"task {task_id} does not exist")
        raise OutcomeConflict(f"task {task_id} is already {task.status.value}")
    task, running_attempt = cancelled
    if running_attempt:
        runtime.queue.release(task.algorithm, task.id, running_attempt, runtime.clock())
    publish_notification(runtime, task.id)
    run_fast_path(runtime, [task.algorithm])
    return task
