"""The status API's answers: a task as its business app sees it (its attempts, its
result or error once final, and why it waits while it does), looked up by id or by
its app's idempotency key, for a caller allowed to see it (``callers``).

The shapes are the client SDK's (``baton.contracts.TaskView``); the result and the
error are the notification's own, built by ``outbox.build_notification``, so the two
never say different things about one outcome.
"""

from __future__ import annotations

from baton.callers import Access, access_of
from baton.contracts import ExecutionView, NotificationError, TaskView
from baton.errors import TaskNotFound
from baton.input_hygiene import field_name
from baton.models import Task, TaskExecution
from baton.outbox import build_notification
from baton.runtime import Runtime
from baton.waiting import explain_waiting

MAX_TASK_ID_CHARS = 64
"""Longer than any task id Baton makes (a UUID): such a lookup finds nothing."""


def look_up_task(runtime: Runtime, caller_arn: str | None, task_id: str) -> TaskView:
    """``GET /tasks/{task_id}``: the task, if the caller may see it."""
    access = access_of(runtime.config, caller_arn)
    return task_view(runtime, visible_task(runtime, access, task_id))


def look_up_task_by_key(
    runtime: Runtime, caller_arn: str | None, app: str, idempotency_key: str
) -> TaskView:
    """``GET /apps/{app}/tasks?idempotency_key=...``: the app's task of that key, if the
    caller may see the app's tasks (another app's is as unknown as a missing one)."""
    access = access_of(runtime.config, caller_arn)
    task = runtime.repository.find_task(app, idempotency_key) if access.sees(app) else None
    if task is None:
        raise TaskNotFound(f"app {field_name(app, 64)!r} has no task with this idempotency key")
    return task_view(runtime, task)


def visible_task(runtime: Runtime, access: Access, task_id: str) -> Task:
    """The task, or ``TaskNotFound`` alike for an unknown one and one the caller may
    not see (the cancel routes take their task from here too)."""
    task = runtime.repository.get_task(task_id) if len(task_id) <= MAX_TASK_ID_CHARS else None
    if task is None or task.id != task_id or not access.sees(task.app):
        raise TaskNotFound(f"no task {field_name(task_id, 64)}")
    return task


def task_view(runtime: Runtime, task: Task) -> TaskView:
    result = None
    error = None
    if task.status.is_terminal:
        notification = build_notification(runtime, task)
        result, error = notification.result, notification.error
    return TaskView(
        task_id=task.id,
        app=task.app,
        algorithm=task.algorithm,
        idempotency_key=task.idempotency_key,
        status=task.status.value,
        priority=task.priority,
        cost=task.cost,
        metadata=task.meta,
        created_at=task.created_at,
        not_before=task.not_before,
        first_dispatched_at=task.first_dispatched_at,
        finished_at=task.finished_at,
        attempts=task.attempts,
        executions=[_execution(e) for e in runtime.repository.executions_of(task.id)],
        result=result,
        error=error,
        waiting=explain_waiting(runtime, task),
    )


def _execution(execution: TaskExecution) -> ExecutionView:
    error = None
    if execution.error_code is not None:
        error = NotificationError(code=execution.error_code, message=execution.error_message or "")
    return ExecutionView(
        attempt=execution.attempt,
        status=execution.status.value,
        dispatched_at=execution.created_at,
        deadline=execution.deadline,
        progress=execution.progress,
        message=execution.progress_message,
        http_status=execution.http_status,
        error=error,
    )
