"""Every wait is bounded, through the real handlers: a queue timeout with a saturated
cap, a total timeout across two attempts and a backoff, heartbeats that cannot extend
an attempt past the algorithm's max_run_seconds, "busy, come back later" that uses up
no attempt, a per-algorithm backoff, and tasks of an algorithm that left the registry
failing after the grace. Each ends with its code and one notification."""

from __future__ import annotations

import json
import uuid
from typing import Any

from baton.records import TaskStatus

from tests.support.algorithm_service import AlgorithmService
from tests.support.aws import AwsResources
from tests.support.clock import ShiftableClock
from tests.support.events import schedule_event, task_body
from tests.support.handlers import Handlers
from tests.support.lifecycle import notifications_of, run_sweep, send_message, task_of
from tests.support.runtime import RuntimeFactory
from tests.support.waiting import wait_for

SILENT = {"outcome": "silent"}


def _ocr(service: AlgorithmService, cap: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "ocr": {
            "endpoint": service.endpoint("ocr"),
            "max_concurrency": cap,
            "timeout_seconds": 30,
            **extra,
        }
    }


def _send(handlers: Handlers, key: str, **fields: Any) -> None:
    assert send_message(handlers, task_body(idempotency_key=key, **fields)) == {
        "batchItemFailures": []
    }


def test_a_task_that_waits_past_its_queue_timeout_ends_timed_out(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
) -> None:
    # Given a cap of 1 taken by a task that never calls back, and a task behind it
    # that may wait at most 60 s
    runtime = make_runtime(algorithms=_ocr(algorithm_service, timeout_seconds=3600))
    _send(handlers, "holder", input={"test": SILENT})
    _send(handlers, "waiter", input={"n": 2, "test": SILENT}, queue_timeout_seconds=60)

    # When a minute and a bit passes and the sweep runs
    assert run_sweep(handlers)["queue_timeouts"] == 0
    clock.advance(61)
    assert run_sweep(handlers)["queue_timeouts"] == 1

    # Then it ended timed_out / queue_timeout, was never dispatched, and was told once
    waiter = task_of(runtime, "waiter")
    assert (waiter.status, waiter.error_code) == (TaskStatus.TIMED_OUT, "queue_timeout")
    assert waiter.attempts == 0
    assert [n["error"]["code"] for n in notifications_of(aws, waiter)] == ["queue_timeout"]
    assert task_of(runtime, "holder").status == TaskStatus.RUNNING  # it had been accepted


def test_a_task_not_final_by_its_total_deadline_ends_across_attempts_and_backoff(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
) -> None:
    # Given a task whose first dispatch fails (503) and whose second runs silently
    runtime = make_runtime(algorithms=_ocr(algorithm_service, cap=2, timeout_seconds=600))
    test = {"dispatch_status": [503, 202], **SILENT}
    _send(handlers, "slow", input={"test": test}, total_timeout_seconds=120)
    task = task_of(runtime, "slow")
    assert task.status == TaskStatus.PENDING  # in its backoff

    # When the backoff passes, the second attempt is sent, then the total deadline passes
    clock.advance(10)
    handlers.invoke("dispatch", schedule_event("dispatch"))
    assert task_of(runtime, "slow").attempts == 2
    clock.advance(115)
    assert run_sweep(handlers)["deadlines_exceeded"] == 1

    # Then it ended timed_out / deadline_exceeded, its running attempt ended with it
    # and freed its slot, and it was told once
    task = task_of(runtime, "slow")
    assert (task.status, task.error_code) == (TaskStatus.TIMED_OUT, "deadline_exceeded")
    executions = runtime.repository.executions_of(task.id)
    assert [e.status.value for e in executions] == ["dispatch_failed", "timed_out"]
    assert runtime.queue.running_count("ocr") == 0
    assert [n["error"]["code"] for n in notifications_of(aws, task)] == ["deadline_exceeded"]


def test_heartbeats_extend_an_attempt_no_further_than_max_run_seconds(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
) -> None:
    # Given an attempt of 30 s that may run at most 100 s, heartbeating as it goes
    runtime = make_runtime(algorithms=_ocr(algorithm_service, max_run_seconds=100))
    _send(handlers, "long", input={"test": SILENT}, max_attempts=1)
    [request] = algorithm_service.requests
    started = runtime.repository.executions_of(request["task_id"])[0].created_at

    deadlines = []
    for _ in range(6):
        clock.advance(25)
        answer = algorithm_service.call_back(request, {"attempt": 1}, path="heartbeat")
        assert answer.http_status == 200, answer.answer
        deadlines.append(answer.answer["deadline"])

    # Then the deadline grew with each heartbeat until it reached dispatch + 100 s
    last = runtime.repository.executions_of(request["task_id"])[0].deadline
    assert (last - started).total_seconds() <= 100 + 1
    assert len(set(deadlines)) < len(deadlines), "the deadline kept moving"

    # And past it, a heartbeat moves nothing, and the attempt times out though the
    # service still heartbeats
    clock.advance(30)
    late = algorithm_service.call_back(request, {"attempt": 1}, path="heartbeat")
    assert late.http_status == 200
    assert late.answer["deadline"] == deadlines[-1]
    assert run_sweep(handlers)["timed_out"] == 1
    task = runtime.repository.get_task(request["task_id"])
    assert task is not None
    assert (task.status, task.error_code) == (TaskStatus.TIMED_OUT, "timeout")
    assert [n["status"] for n in notifications_of(aws, task)] == ["timed_out"]


def test_busy_answers_retry_without_using_up_attempts(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
) -> None:
    # Given one attempt allowed and a service that answers 429, then 503 with
    # Retry-After, then accepts
    runtime = make_runtime(algorithms=_ocr(algorithm_service, cap=2))
    test = {"dispatch_status": [429, 503, 202], "retry_after": 2}
    _send(handlers, "busy", input={"test": test}, max_attempts=1)

    # When the schedule comes back after each Retry-After
    for _ in range(2):
        clock.advance(3)
        handlers.invoke("dispatch", schedule_event("dispatch"))

    # Then it ran on the third dispatch and succeeded: the busy answers used up nothing
    wait_for(lambda: task_of(runtime, "busy").status == TaskStatus.SUCCEEDED, timeout=30)
    task = task_of(runtime, "busy")
    assert task.attempts == 3
    assert len(algorithm_service.requests_for(task.id)) == 3


def test_a_failed_dispatch_waits_the_algorithms_own_backoff(
    make_runtime: RuntimeFactory, handlers: Handlers, algorithm_service: AlgorithmService
) -> None:
    runtime = make_runtime(
        algorithms=_ocr(algorithm_service, backoff_base_seconds=300, backoff_max_seconds=600)
    )
    _send(handlers, "flaky", input={"test": {"dispatch_status": [500, 202]}})

    task = task_of(runtime, "flaky")

    # equal jitter: between half the base and the base, for the first retry
    assert task.status == TaskStatus.PENDING
    wait = (task.not_before - task.updated_at).total_seconds()
    assert 150 <= wait <= 300, wait


def test_tasks_of_an_algorithm_that_left_the_registry_fail_after_the_grace(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
) -> None:
    # Given tasks waiting for "ocr", which then leaves the registry (in SSM)
    ssm = aws.session.client("ssm")
    name = f"/baton/test-{uuid.uuid4().hex[:8]}/algorithms"
    # (an hour's timeout: the holder keeps running, only the waiting task is affected)
    ocr = _ocr(algorithm_service, timeout_seconds=3600)
    both = {**ocr, "nlp": {**ocr["ocr"]}}
    ssm.put_parameter(Name=name, Value=json.dumps(both), Type="String")
    runtime = make_runtime(
        algorithms_parameter=name, policy_refresh_seconds="1", policy_grace_seconds="600"
    )
    _send(handlers, "holder", input={"test": SILENT})
    _send(handlers, "orphan", input={"n": 2, "test": SILENT})
    nlp_only = {"nlp": both["nlp"]}
    ssm.put_parameter(Name=name, Value=json.dumps(nlp_only), Type="String", Overwrite=True)
    wait_for(lambda: "ocr" not in runtime.config.registry, timeout=10)

    # When the sweep runs within the grace, and after it
    assert run_sweep(handlers)["unregistered"] == 0
    clock.advance(601)
    assert run_sweep(handlers)["unregistered"] == 1

    # Then the waiting task failed with algorithm_unregistered, told once
    orphan = task_of(runtime, "orphan")
    assert (orphan.status, orphan.error_code) == (TaskStatus.FAILED, "algorithm_unregistered")
    assert [n["error"]["code"] for n in notifications_of(aws, orphan)] == ["algorithm_unregistered"]
    assert task_of(runtime, "holder").status == TaskStatus.RUNNING


def test_tasks_that_no_endpoint_fits_any_more_fail_cost_too_large_after_the_grace(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
) -> None:
    # Given a big task waiting behind a holder on a cap of 3, and then the registry
    # shrinks the endpoint to 2
    ssm = aws.session.client("ssm")
    name = f"/baton/test-{uuid.uuid4().hex[:8]}/algorithms"
    ocr = _ocr(algorithm_service, cap=3, timeout_seconds=3600)
    ssm.put_parameter(Name=name, Value=json.dumps(ocr), Type="String")
    runtime = make_runtime(
        algorithms_parameter=name, policy_refresh_seconds="1", policy_grace_seconds="600"
    )
    _send(handlers, "holder", input={"test": SILENT}, cost=2)
    _send(handlers, "big", input={"n": 2, "test": SILENT}, cost=3)
    _send(handlers, "small", input={"n": 3, "test": SILENT}, cost=1)
    smaller = {"ocr": {**ocr["ocr"], "max_concurrency": 2}}
    ssm.put_parameter(Name=name, Value=json.dumps(smaller), Type="String", Overwrite=True)
    wait_for(lambda: runtime.config.registry["ocr"].largest_cost == 2, timeout=10)

    # When the sweep runs within the grace, and after it
    assert run_sweep(handlers)["cost_too_large"] == 0
    clock.advance(601)
    assert run_sweep(handlers)["cost_too_large"] == 1

    # Then the big task failed with cost_too_large, told once; the others are untouched
    big = task_of(runtime, "big")
    assert (big.status, big.error_code) == (TaskStatus.FAILED, "cost_too_large")
    assert [n["error"]["code"] for n in notifications_of(aws, big)] == ["cost_too_large"]
    assert task_of(runtime, "holder").status == TaskStatus.RUNNING
    assert not task_of(runtime, "small").status.is_terminal
