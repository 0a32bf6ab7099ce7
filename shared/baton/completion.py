"""The algorithm's side of an attempt (steps 12-16): the completion callback and the
heartbeat. Tokens are checked first, so an unauthenticated caller learns nothing."""

from __future__ import annotations

from datetime import timedelta

from baton.attempts import end_attempt, run_limit_seconds
from baton.contracts import (
    CallbackAnswer,
    CallbackBody,
    HeartbeatAnswer,
    HeartbeatBody,
    ResultTarget,
)
from baton.errors import OutcomeConflict, ResultMissing, StaleAttempt, TaskNotFound
from baton.faults import crash_point
from baton.models import Task, TaskExecution
from baton.observability import CALLBACKS, emit, logger
from baton.records import AttemptOutcome, ExecutionStatus, TaskStatus
from baton.runtime import Runtime
from baton.scheduling import run_fast_path
from baton.tokens import verify_token

UPLOAD_URL_SLACK_SECONDS = 300
"""How long an upload URL outlives its attempt's deadline (``BATON_UPLOAD_URL_TTL_SECONDS``
is at most the timeout and this)."""

_OUTCOMES = {
    "succeeded": (ExecutionStatus.SUCCEEDED, TaskStatus.SUCCEEDED),
    "failed": (ExecutionStatus.FAILED, TaskStatus.FAILED),
}


def _load(runtime: Runtime, task_id: str, attempt: int) -> tuple[Task, TaskExecution | None]:
    task, execution = runtime.repository.get_task_with_execution(task_id, attempt)
    if task is None:
        raise TaskNotFound(f"task {task_id} does not exist")
    return task, execution


def complete_attempt(
    runtime: Runtime, task_id: str, token: str, body: CallbackBody
) -> CallbackAnswer:
    """Step 12: apply a completion callback; repeating it is answered, never applied twice."""
    verify_token(runtime.config.token_keys, token, task_id, body.attempt, runtime.clock())
    task, execution = _load(runtime, task_id, body.attempt)
    execution_status, task_status = _OUTCOMES[body.status]
    if execution is None or not execution.status.is_active:
        return _answer_ended(task, execution, body, execution_status)
    if body.status == "succeeded" and not runtime.results.exists(execution.result_key):
        raise ResultMissing(
            f"no result object at s3://{runtime.results.bucket}/{execution.result_key}; "
            "upload it, then call back again"
        )
    error = body.error
    outcome = AttemptOutcome(
        execution_status=execution_status,
        task_status=task_status,
        error_code=error.code
        if error
        else (None if body.status == "succeeded" else "algorithm_failed"),
        error_message=error.message if error else None,
        result_key=execution.result_key,
    )
    finished = end_attempt(runtime, task.algorithm, task_id, body.attempt, outcome)
    if finished is None:  # lost a race (timeout, cancel, a twin callback): answer as if late
        task, execution = _load(runtime, task_id, body.attempt)
        return _answer_ended(task, execution, body, execution_status)
    emit(CALLBACKS, 1, algorithm=task.algorithm, app=task.app)
    logger.debug("callback applied", task_id=task_id, attempt=body.attempt, status=body.status)
    run_fast_path(runtime, [task.algorithm])
    return CallbackAnswer(task_id=task_id, attempt=body.attempt, status=body.status, applied=True)


def _answer_ended(
    task: Task,
    execution: TaskExecution | None,
    body: CallbackBody,
    wanted: ExecutionStatus,
) -> CallbackAnswer:
    if execution is not None and execution.status == wanted:
        return CallbackAnswer(
            task_id=task.id, attempt=body.attempt, status=body.status, applied=False
        )
    ended = _refuse_if_moved_on(task, execution, body.attempt)
    raise OutcomeConflict(
        f"attempt {body.attempt} already ended as {ended.status.value}; "
        f"the task is {task.status.value}"
    )


def _refuse_if_moved_on(task: Task, execution: TaskExecution | None, attempt: int) -> TaskExecution:
    """``StaleAttempt`` when the task has moved on from this attempt: it runs a newer
    one, or waits for its next (a retry pending after a timeout or a failed dispatch,
    or an operator's retry). The same answer whether or not the next attempt has been
    sent yet, so that a caller is not told one thing or the other by a race."""
    if execution is None or task.attempts != attempt:
        raise StaleAttempt(
            f"attempt {attempt} is not current; the task is on attempt {task.attempts} "
            f"({task.status.value})"
        )
    if task.status in (TaskStatus.PENDING, TaskStatus.QUEUED):
        raise StaleAttempt(
            f"attempt {attempt} is over ({execution.status.value}); the task waits for "
            f"attempt {attempt + 1}"
        )
    return execution


def record_heartbeat(
    runtime: Runtime, task_id: str, token: str, body: HeartbeatBody
) -> HeartbeatAnswer:
    """Extend a running attempt's deadline by its timeout (never past the algorithm's
    max_run_seconds from its dispatch), record progress, and hand out a fresh upload
    URL when the current one is close to expiry."""
    verify_token(runtime.config.token_keys, token, task_id, body.attempt, runtime.clock())
    task, execution = _load(runtime, task_id, body.attempt)
    if execution is None or not execution.status.is_active:
        ended = _refuse_if_moved_on(task, execution, body.attempt)
        raise OutcomeConflict(f"attempt {body.attempt} already ended as {ended.status.value}")
    settings = runtime.settings
    now = runtime.clock()
    # Never past the algorithm's max_run_seconds from the attempt's dispatch: a
    # heartbeat cannot keep an attempt alive without bound.
    longest = execution.created_at + timedelta(seconds=run_limit_seconds(runtime, task.algorithm))
    deadline = max(execution.deadline, min(now + timedelta(seconds=task.timeout_seconds), longest))
    fresh: ResultTarget | None = None
    upload_expires = None
    if execution.upload_expires_at - now <= timedelta(seconds=settings.upload_url_refresh_seconds):
        # The lifetime a dispatch gets, at most its timeout and five minutes: counted
        # from now, never past the new deadline and those five minutes.
        left = int((deadline - now).total_seconds())
        url, upload_expires = runtime.results.upload_url(
            execution.result_key,
            now,
            max(1, min(settings.upload_url_ttl_seconds, left + UPLOAD_URL_SLACK_SECONDS)),
        )
        fresh = ResultTarget(
            bucket=runtime.results.bucket,
            key=execution.result_key,
            upload_url=url,
            expires_at=upload_expires,
        )
    if not runtime.repository.record_heartbeat(
        task_id,
        body.attempt,
        now,
        deadline=deadline,
        progress=body.progress,
        message=body.message,
        upload_expires_at=upload_expires,
    ):
        raise OutcomeConflict(f"attempt {body.attempt} ended before this heartbeat")
    crash_point("heartbeat.after_record")
    runtime.queue.extend_slot(task.algorithm, task_id, body.attempt, deadline)
    return HeartbeatAnswer(task_id=task_id, attempt=body.attempt, deadline=deadline, result=fresh)
