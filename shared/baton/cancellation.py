"""Ending a task before its algorithm finishes it: its app or an operator cancels it
(the cancel message, the status API, ``baton task cancel``: one implementation), it
waited past its queue timeout or its total deadline, or its algorithm left the
registry. Any state that is not final ends, with its one notification; an attempt in
flight ends with it and drains (``baton.draining``) or frees its slot.

A cancel by idempotency key may arrive before its task (SQS keeps no order): it is
kept for ``BATON_CANCEL_RETENTION_SECONDS``, and the task, arriving within that time,
is stored cancelled and never dispatched.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta

from pydantic import ValidationError

from baton.contracts import CancelById, CancelMessage
from baton.draining import cancel_now, drain_for, hold_slot
from baton.errors import InvalidTaskMessage
from baton.faults import crash_point
from baton.input_hygiene import describe_validation_error, duplicate_key
from baton.models import Task
from baton.observability import logger
from baton.outbox import publish_notification
from baton.records import TaskStatus
from baton.runtime import Runtime
from baton.scheduling import run_fast_path

DEFAULT_REASON = "cancelled"


class CancelOutcome(enum.StrEnum):
    CANCELLED = "cancelled"  # the task ended cancelled now
    ALREADY_FINAL = "already_final"  # it was final: nothing changed
    KEPT = "kept"  # by key, before its task: kept for it
    NOT_FOUND = "not_found"  # no such task (of this app): nothing changed


@dataclass(frozen=True)
class CancelResult:
    outcome: CancelOutcome
    task: Task | None = None


def cancel_task(
    runtime: Runtime, task_id: str, reason: str | None = None, *, app: str | None = None
) -> CancelResult:
    """Cancel a task by id (``app`` given: only a task of that app; another's is not
    found). A final task is left as it is."""
    if app is not None:
        # Another app's task is not found, as if it did not exist: an app learns
        # nothing of, and changes nothing in, another's tasks.
        owned = runtime.repository.get_task(task_id)
        if owned is None or owned.app != app:
            return CancelResult(CancelOutcome.NOT_FOUND)
    task = _cancel(runtime, task_id, reason)
    if task is not None:
        return CancelResult(CancelOutcome.CANCELLED, task)
    found = runtime.repository.get_task(task_id)
    if found is None:
        return CancelResult(CancelOutcome.NOT_FOUND)
    return CancelResult(CancelOutcome.ALREADY_FINAL, found)


def cancel_task_by_key(
    runtime: Runtime, app: str, idempotency_key: str, reason: str | None = None
) -> CancelResult:
    """Cancel the app's task with this key, or keep the cancel for it if it has not
    arrived yet."""
    repository = runtime.repository
    task = repository.find_task(app, idempotency_key)
    if task is None:
        now = runtime.clock()
        until = now + timedelta(seconds=runtime.settings.cancel_retention_seconds)
        # The task may be stored at this very moment: the keep looks for it again, in
        # step with intake's own look for the cancel, and hands it back if it is there.
        task = repository.keep_cancel(app, idempotency_key, reason, now, until)
        crash_point("cancel.after_keep")
        if task is None:
            logger.info(
                "cancel kept for a task not yet arrived", app=app, idempotency_key=idempotency_key
            )
            return CancelResult(CancelOutcome.KEPT)
    if task.status.is_terminal:
        return CancelResult(CancelOutcome.ALREADY_FINAL, task)
    return cancel_task(runtime, task.id, reason, app=app)


def _cancel(runtime: Runtime, task_id: str, reason: str | None) -> Task | None:
    task = end_task_early(
        runtime, task_id, TaskStatus.CANCELLED, "cancelled", reason or DEFAULT_REASON, now=True
    )
    if task is not None:
        logger.info(
            "task cancelled", task_id=task.id, app=task.app, idempotency_key=task.idempotency_key
        )
        run_fast_path(runtime, [task.algorithm])
    return task


def parse_cancel_message(body: str | bytes) -> CancelMessage:
    """The validated cancel message, or ``InvalidTaskMessage`` saying what is wrong and where."""
    try:
        message = CancelMessage.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidTaskMessage(describe_validation_error(exc)) from None
    duplicate = duplicate_key(body)
    if duplicate is not None:
        raise InvalidTaskMessage(f"{duplicate}: duplicate key in one JSON object")
    return message


def accept_cancel_message(runtime: Runtime, message: CancelMessage) -> CancelResult:
    """A cancel message from the intake queue (its sender already checked): a final or
    unknown task changes nothing and is no failure."""
    target = message.cancel
    if isinstance(target, CancelById):
        result = cancel_task(runtime, target.task_id, message.reason, app=message.app)
    else:
        result = cancel_task_by_key(runtime, message.app, target.idempotency_key, message.reason)
    if result.outcome in (CancelOutcome.NOT_FOUND, CancelOutcome.ALREADY_FINAL):
        logger.info(
            "cancel message changed nothing",
            app=message.app,
            outcome=result.outcome.value,
            task_id=result.task.id if result.task else None,
        )
    return result


def end_task_early(
    runtime: Runtime,
    task_id: str,
    status: TaskStatus,
    error_code: str,
    message: str,
    *,
    waiting_only: bool = False,
    never_accepted: bool = False,
    now: bool = False,
) -> Task | None:
    """End the task as ``status`` with ``error_code``; None when it was final already
    (or no longer waiting, or accepted, where that is required). A running attempt
    drains where its endpoint has a cancel URL (its first cancel request sent at once
    with ``now``, else by the sweep); the caller acts on the room freed (the fast path)."""
    ended = runtime.repository.end_task(
        task_id,
        runtime.clock(),
        status,
        error_code,
        message,
        waiting_only=waiting_only,
        never_accepted=never_accepted,
        drain=lambda algorithm: drain_for(runtime, algorithm, error_code),
    )
    if ended is None:
        return None
    task = ended.task
    if ended.draining is not None:
        hold_slot(runtime, task.algorithm, ended.draining)
    elif ended.running_attempt:
        runtime.queue.release(task.algorithm, task.id, ended.running_attempt, runtime.clock())
    publish_notification(runtime, task.id, task)
    if ended.draining is not None and now:
        cancel_now(runtime, task.algorithm, ended.draining)
    return task
