"""A retried task gets its queue and total timeouts again, counted from the retry: its
deadlines count from its acceptance, and a retry is a new outcome that must have the
time its message asked for, or a task retried after its total timeout (yesterday's
failures, one that ran past its deadline) would end timed out again at the next sweep,
without a chance to run. Through the real handlers and the service on loopback."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from baton.records import TaskStatus
from baton.retrying import TaskRef, retry_task
from baton.runtime import Runtime

from tests.support.algorithm_service import AlgorithmService
from tests.support.clock import ShiftableClock
from tests.support.events import schedule_event, sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.runtime import RuntimeFactory, registry_for


def _submit(runtime: Runtime, handlers: Handlers, key: str, **fields: Any) -> str:
    body = task_body(idempotency_key=key, **fields)
    assert handlers.invoke("intake", sqs_event(sqs_record(body))) == {"batchItemFailures": []}
    task = runtime.repository.find_task("contracts", key)
    assert task is not None
    return task.id


def _tick(handlers: Handlers) -> None:
    for name in ("sweep", "promote", "dispatch"):
        handlers.invoke(name, schedule_event(name))


def test_a_task_retried_after_its_total_timeout_runs_again(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    clock: ShiftableClock,
) -> None:
    # Given a task with a total timeout of 10 minutes that its algorithm failed
    runtime = make_runtime(fast_path="false", algorithms=registry_for(algorithm_service, ocr=1))
    test = {"outcomes": ["failed", "succeeded"]}
    task_id = _submit(
        runtime,
        handlers,
        "failed-yesterday",
        input={"test": test},
        max_attempts=1,
        total_timeout_seconds=600,
    )
    _tick(handlers)
    algorithm_service.wait_idle()
    _tick(handlers)
    failed = runtime.repository.get_task(task_id)
    assert failed is not None
    assert (failed.status, failed.notified_at is not None) == (TaskStatus.FAILED, True)

    # When an operator retries it an hour later, and the timers run
    clock.advance(3600)
    before = clock()
    retry_task(runtime, TaskRef(task_id=task_id))
    after = clock()
    _tick(handlers)
    algorithm_service.wait_idle()
    _tick(handlers)

    # Then it ran again and succeeded, within the 10 minutes it has again
    task = runtime.repository.get_task(task_id)
    assert task is not None
    assert (task.status, task.error_code, task.attempts) == (TaskStatus.SUCCEEDED, None, 2)
    assert task.total_deadline is not None
    ten_minutes = timedelta(seconds=600)
    assert before + ten_minutes <= task.total_deadline <= after + ten_minutes


def test_a_task_retried_after_its_queue_timeout_waits_its_queue_timeout_again(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    clock: ShiftableClock,
) -> None:
    # Given a task that timed out in the queue (its algorithm paused), never dispatched
    registry = registry_for(algorithm_service, ocr=1)
    registry["ocr"]["paused"] = True
    runtime = make_runtime(fast_path="false", algorithms=registry)
    task_id = _submit(runtime, handlers, "waited-too-long", queue_timeout_seconds=60)
    clock.advance(61)
    _tick(handlers)
    timed_out = runtime.repository.get_task(task_id)
    assert timed_out is not None
    assert (timed_out.status, timed_out.error_code) == (TaskStatus.TIMED_OUT, "queue_timeout")
    assert timed_out.notified_at is not None

    # When an operator retries it, and the timers run within its queue timeout
    retry_task(runtime, TaskRef(task_id=task_id))
    clock.advance(30)
    _tick(handlers)

    # Then it waits, pending, for the 60 s it has again, and times out only after them
    waiting = runtime.repository.get_task(task_id)
    assert waiting is not None
    assert waiting.status in (TaskStatus.PENDING, TaskStatus.QUEUED)
    clock.advance(31)
    _tick(handlers)
    again = runtime.repository.get_task(task_id)
    assert again is not None
    assert (again.status, again.error_code) == (TaskStatus.TIMED_OUT, "queue_timeout")
    assert algorithm_service.requests == []
