"""Lifecycle scenarios through the real handlers, with events in the real AWS shapes,
an algorithm service on loopback, real Redis and MariaDB, and moto for AWS."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from baton.records import ExecutionStatus, TaskStatus
from baton.runtime import Runtime

from tests.support.algorithm_service import AlgorithmService
from tests.support.aws import AwsResources
from tests.support.clock import ShiftableClock
from tests.support.database import stored_execution, stored_task
from tests.support.events import schedule_event, sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.runtime import RuntimeFactory, registry_for
from tests.support.services import flush_prefix
from tests.support.waiting import wait_for


def submit(handlers: Handlers, *bodies: str) -> dict[str, Any]:
    answer: dict[str, Any] = handlers.invoke(
        "intake", sqs_event(*(sqs_record(body) for body in bodies))
    )
    return answer


def task_ids(runtime: Runtime, app: str, *keys: str) -> list[str]:
    found = [runtime.repository.find_task(app, key) for key in keys]
    assert all(found), "a submitted task was not stored"
    return [task.id for task in found if task is not None]


def notified(aws: AwsResources, count: int, timeout: float = 20) -> list[dict[str, Any]]:
    return wait_for(lambda: len(aws.notifications()) >= count and aws.seen, timeout)


def test_fast_path_dispatches_without_any_scheduled_invocation(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
) -> None:
    # Given a cap of 2 and five tasks, and no schedule ever firing
    make_runtime()
    bodies = [task_body(idempotency_key=f"fast-{n}") for n in range(5)]

    # When the messages arrive
    submit(handlers, *bodies)

    # Then the first two went out inside the intake invocation, and each callback
    # dispatched the next: all five finish with no promote/dispatch/sweep invocation.
    assert len(algorithm_service.requests) >= 2
    notifications = notified(aws, 5)
    assert Counter(n["status"] for n in notifications) == {"succeeded": 5}
    assert algorithm_service.max_in_flight["ocr"] <= 2


def test_fast_path_can_be_switched_off(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
) -> None:
    runtime = make_runtime(fast_path="false")
    submit(handlers, task_body(idempotency_key="slow-1"))
    assert algorithm_service.requests == []
    (task_id,) = task_ids(runtime, "contracts", "slow-1")
    assert stored_task(runtime.repository, task_id).status == TaskStatus.PENDING

    handlers.invoke("promote", schedule_event("promote"))
    handlers.invoke("dispatch", schedule_event("dispatch"))
    wait_for(lambda: algorithm_service.requests)
    wait_for(lambda: stored_task(runtime.repository, task_id).status == TaskStatus.SUCCEEDED)
    handlers.invoke("sweep", schedule_event("sweep"))  # publishes what the outbox holds
    assert [n["status"] for n in notified(aws, 1)] == ["succeeded"]


def test_same_message_three_times_is_one_task_and_one_notification(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
) -> None:
    runtime = make_runtime()
    body = task_body(input={"document": "contract-9"})  # no idempotency key: derived
    record = sqs_record(body)

    # The same SQS message delivered three times, once in a batch with itself
    assert submit(handlers, body) == {"batchItemFailures": []}
    assert handlers.invoke("intake", sqs_event(record, record)) == {"batchItemFailures": []}

    notifications = notified(aws, 1)
    algorithm_service.wait_idle()
    handlers.invoke("sweep", schedule_event("sweep"))
    # A duplicate that comes once the task is final publishes its notification again,
    # under the same id (how an app gets a lost one back): one notification, however
    # many copies the timing of the deliveries makes.
    everything = notifications + aws.notifications(wait_seconds=1)
    assert {n["notification_id"] for n in everything} == {notifications[0]["notification_id"]}
    assert len(algorithm_service.requests) == 1
    task = runtime.repository.get_task(notifications[0]["task_id"])
    assert task is not None
    assert task.idempotency_key.startswith("sha256:")


def test_malformed_messages_fail_alone_and_good_ones_finish(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    aws: AwsResources,
) -> None:
    runtime = make_runtime()
    good = [sqs_record(task_body(idempotency_key=f"good-{n}")) for n in range(3)]
    bad = [
        sqs_record("not json at all"),
        sqs_record(json.dumps({"app": "contracts", "input": {}})),  # no algorithm
        sqs_record(task_body(algorithm="unknown-algo")),
        sqs_record(task_body(priority="high")),
        sqs_record(task_body(surprise=True)),
        sqs_record(task_body(timeout_seconds=10**9)),
    ]
    batch = [good[0], *bad[:3], good[1], *bad[3:], good[2]]

    answer = handlers.invoke("intake", sqs_event(*batch))

    failed = {item["itemIdentifier"] for item in answer["batchItemFailures"]}
    assert failed == {record["messageId"] for record in bad}
    assert len(task_ids(runtime, "contracts", "good-0", "good-1", "good-2")) == 3
    # (the app is told of each of its bad messages; "not json at all" names no app)
    notifications = notified(aws, 3 + 5)
    assert Counter(n["status"] for n in notifications) == {"succeeded": 3, "rejected": 5}


def test_timeout_then_late_callback_gets_409_and_no_second_notification(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
) -> None:
    runtime = make_runtime()
    submit(
        handlers,
        task_body(
            idempotency_key="silent-1",
            max_attempts=1,
            timeout_seconds=5,
            input={"test": {"outcome": "silent"}},
        ),
    )
    (request,) = wait_for(lambda: algorithm_service.requests)
    algorithm_service.wait_idle()

    # When the deadline passes and the sweep runs
    clock.advance(6)
    report = handlers.invoke("sweep", schedule_event("sweep"))
    assert report["timed_out"] == 1

    # Then the app hears of the timeout, the slot is free...
    (notification,) = notified(aws, 1)
    assert notification["status"] == "timed_out"
    assert notification["error"]["code"] == "timeout"
    assert runtime.queue.running_count("ocr") == 0

    # ...and the late callback is refused with 409 and changes nothing
    late = algorithm_service.call_back(request, {"attempt": 1, "status": "succeeded"})
    assert late.http_status == 409
    assert late.answer["error"]["code"] in {"outcome_conflict", "stale_attempt"}
    assert len(aws.notifications(wait_seconds=1)) == 1
    task = runtime.repository.get_task(request["task_id"])
    assert task is not None
    assert task.status == TaskStatus.TIMED_OUT


def test_timeout_with_attempts_left_retries_with_a_new_attempt(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
) -> None:
    runtime = make_runtime()
    submit(
        handlers,
        task_body(
            idempotency_key="retry-1",
            max_attempts=2,
            timeout_seconds=5,
            input={"test": {"outcome": "silent"}},
        ),
    )
    (first,) = wait_for(lambda: algorithm_service.requests)
    clock.advance(6)
    handlers.invoke("sweep", schedule_event("sweep"))
    task = runtime.repository.get_task(first["task_id"])
    assert task is not None
    assert task.status == TaskStatus.PENDING
    assert task.not_before > clock()  # backoff

    clock.advance(10)
    handlers.invoke("dispatch", schedule_event("dispatch"))
    second = wait_for(lambda: algorithm_service.requests_for(first["task_id"])[1:])[0]
    assert second["attempt"] == 2
    assert second["callback"]["token"] != first["callback"]["token"]

    # The first attempt's token cannot speak for the second attempt
    forged = algorithm_service.call_back(
        {**first, "attempt": 2}, {"attempt": 2, "status": "succeeded"}
    )
    assert forged.http_status == 401
    clock.advance(6)
    handlers.invoke("sweep", schedule_event("sweep"))
    (notification,) = notified(aws, 1)
    assert notification["status"] == "timed_out"
    assert notification["attempts"] == 2
    statuses = [e.status for e in runtime.repository.executions_of(first["task_id"])]
    assert statuses == [ExecutionStatus.TIMED_OUT, ExecutionStatus.TIMED_OUT]


def test_failure_callback_fails_the_task_with_the_algorithms_error(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    aws: AwsResources,
) -> None:
    make_runtime()
    submit(handlers, task_body(idempotency_key="fail-1", input={"test": {"outcome": "failed"}}))
    (notification,) = notified(aws, 1)
    assert notification["status"] == "failed"
    assert notification["error"] == {
        "code": "unreadable",
        "message": "the document is not readable",
    }
    assert notification["result"] is None


def test_dispatch_answered_400_fails_the_task_for_good(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
) -> None:
    runtime = make_runtime()
    submit(handlers, task_body(idempotency_key="bad-1", input={"test": {"dispatch_status": [400]}}))
    (notification,) = notified(aws, 1)
    assert notification["status"] == "failed"
    assert notification["error"]["code"] == "dispatch_rejected"
    assert len(algorithm_service.requests) == 1
    assert runtime.queue.running_count("ocr") == 0
    (execution,) = runtime.repository.executions_of(notification["task_id"])
    assert execution.status == ExecutionStatus.REJECTED
    assert execution.http_status == 400


@pytest.mark.parametrize("first_answer", [503, 429, 408])
def test_dispatch_retried_with_backoff_then_accepted(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
    first_answer: int,
) -> None:
    runtime = make_runtime()
    submit(
        handlers,
        task_body(
            idempotency_key="flaky-1", input={"test": {"dispatch_status": [first_answer, 202]}}
        ),
    )
    (first,) = wait_for(lambda: algorithm_service.requests)
    task = runtime.repository.get_task(first["task_id"])
    assert task is not None
    assert task.status == TaskStatus.PENDING
    assert task.not_before > clock()
    assert runtime.queue.running_count("ocr") == 0

    # Not before the backoff has passed
    handlers.invoke("dispatch", schedule_event("dispatch"))
    assert len(algorithm_service.requests) == 1
    clock.advance(5)
    handlers.invoke("dispatch", schedule_event("dispatch"))

    (notification,) = notified(aws, 1)
    assert notification["status"] == "succeeded"
    assert notification["attempts"] == 2
    statuses = [e.status for e in runtime.repository.executions_of(first["task_id"])]
    assert statuses == [ExecutionStatus.DISPATCH_FAILED, ExecutionStatus.SUCCEEDED]


def test_connection_refused_is_retried_until_attempts_run_out(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
) -> None:
    registry = {
        "ocr": {"endpoint": "http://127.0.0.1:9/ocr", "max_concurrency": 1, "max_attempts": 2}
    }
    make_runtime(algorithms=registry)
    submit(handlers, task_body(idempotency_key="down-1"))
    clock.advance(10)
    handlers.invoke("dispatch", schedule_event("dispatch"))
    (notification,) = notified(aws, 1)
    assert notification["status"] == "failed"
    assert notification["error"]["code"] == "dispatch_failed"
    assert notification["attempts"] == 2


def test_redis_flushed_mid_run_then_reconcile_every_task_finishes_once(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    redis_client: Any,
    key_prefix: str,
) -> None:
    make_runtime()
    bodies = [
        task_body(idempotency_key=f"flush-{n}", input={"test": {"run_seconds": 0.3}})
        for n in range(10)
    ]
    submit(handlers, *bodies[:5])
    wait_for(lambda: algorithm_service.requests)

    # Redis loses everything while two attempts run and three tasks wait
    assert flush_prefix(redis_client, key_prefix) > 0
    submit(handlers, *bodies[5:])
    handlers.invoke("reconcile", schedule_event("reconcile"))

    def all_done() -> bool:
        handlers.invoke("dispatch", schedule_event("dispatch"))
        return len(aws.notifications()) >= 10

    wait_for(all_done, timeout=30)
    algorithm_service.wait_idle()
    handlers.invoke("sweep", schedule_event("sweep"))
    notifications = aws.notifications(wait_seconds=1)
    assert Counter(n["status"] for n in notifications) == {"succeeded": 10}
    assert len({n["task_id"] for n in notifications}) == 10
    assert algorithm_service.max_in_flight["ocr"] <= 2
    assert algorithm_service.overlaps == []
    assert all(count == 1 for count in algorithm_service.dispatch_count.values())


def test_heartbeat_extends_the_deadline_and_refreshes_the_upload_url(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
) -> None:
    runtime = make_runtime(upload_url_ttl_seconds="600", upload_url_refresh_seconds="300")
    submit(
        handlers,
        task_body(
            idempotency_key="long-1", timeout_seconds=30, input={"test": {"outcome": "silent"}}
        ),
    )
    (request,) = wait_for(lambda: algorithm_service.requests)
    first_deadline = stored_execution(runtime.repository, request["task_id"], 1).deadline

    clock.advance(20)
    beat = algorithm_service.call_back(
        request, {"attempt": 1, "progress": 40, "message": "page 4 of 10"}, path="heartbeat"
    )
    assert beat.http_status == 200, beat.answer
    execution = runtime.repository.get_execution(request["task_id"], 1)
    assert execution is not None
    assert execution.deadline > first_deadline + timedelta(seconds=15)
    assert execution.progress == 40
    assert beat.answer["result"] is None  # 600 s URL, 20 s old: not close to expiry

    clock.advance(25)  # past the first deadline, but the heartbeat moved it
    handlers.invoke("sweep", schedule_event("sweep"))
    assert stored_task(runtime.repository, request["task_id"]).status == TaskStatus.RUNNING

    clock.advance(300)
    handlers.invoke("sweep", schedule_event("sweep"))  # now it is overdue
    late_beat = algorithm_service.call_back(request, {"attempt": 1}, path="heartbeat")
    assert late_beat.http_status == 409


def test_heartbeat_hands_out_a_fresh_upload_url_near_expiry(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    clock: ShiftableClock,
) -> None:
    runtime = make_runtime(upload_url_ttl_seconds="600", upload_url_refresh_seconds="300")
    submit(
        handlers,
        task_body(
            idempotency_key="long-2", timeout_seconds=3600, input={"test": {"outcome": "silent"}}
        ),
    )
    (request,) = wait_for(lambda: algorithm_service.requests)
    clock.advance(400)
    beat = algorithm_service.call_back(request, {"attempt": 1}, path="heartbeat")
    assert beat.http_status == 200
    fresh = beat.answer["result"]
    assert fresh["key"] == request["result"]["key"]
    # (botocore signs with the real clock, so the URL text itself may not change here)
    assert datetime.fromisoformat(fresh["expires_at"]) > datetime.fromisoformat(
        request["result"]["expires_at"]
    ) + timedelta(seconds=300)
    execution = runtime.repository.get_execution(request["task_id"], 1)
    assert execution is not None
    assert execution.upload_expires_at > clock() + timedelta(seconds=500)


def test_succeeded_callback_without_result_is_refused_and_the_attempt_keeps_running(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
) -> None:
    runtime = make_runtime()
    submit(handlers, task_body(idempotency_key="noup-1", input={"test": {"outcome": "no_upload"}}))
    wait_for(lambda: algorithm_service.callbacks)
    (refused,) = algorithm_service.callbacks
    assert refused.http_status == 409
    assert refused.answer["error"]["code"] == "result_missing"
    task = runtime.repository.get_task(refused.task_id)
    assert task is not None
    assert task.status == TaskStatus.RUNNING
    assert aws.notifications() == []

    # Once the object is there, the same callback succeeds
    aws.session.client("s3").put_object(
        Bucket=aws.bucket, Key=algorithm_service.requests[0]["result"]["key"], Body=b"{}"
    )
    accepted = algorithm_service.call_back(
        algorithm_service.requests[0], {"attempt": 1, "status": "succeeded"}
    )
    assert accepted.http_status == 200
    assert accepted.answer["applied"] is True
    again = algorithm_service.call_back(
        algorithm_service.requests[0], {"attempt": 1, "status": "succeeded"}
    )
    assert again.http_status == 200
    assert again.answer["applied"] is False
    conflicting = algorithm_service.call_back(
        algorithm_service.requests[0],
        {"attempt": 1, "status": "failed", "error": {"code": "x", "message": "y"}},
    )
    assert conflicting.http_status == 409
    assert [n["status"] for n in notified(aws, 1)] == ["succeeded"]


def test_sns_outage_delays_the_notification_but_loses_nothing(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from botocore.exceptions import EndpointConnectionError

    runtime = make_runtime()
    publish = runtime.notifier.publish

    def unreachable(*_args: Any, **_kwargs: Any) -> str:
        raise EndpointConnectionError(endpoint_url="https://sns.eu-west-1.amazonaws.com")

    monkeypatch.setattr(runtime.notifier, "publish", unreachable)
    submit(handlers, task_body(idempotency_key="sns-down-1"))
    (callback,) = wait_for(lambda: algorithm_service.callbacks)
    assert callback.http_status == 200  # the outcome is recorded all the same
    handlers.invoke("sweep", schedule_event("sweep"))  # still claimed: nothing yet
    assert aws.notifications() == []

    monkeypatch.setattr(runtime.notifier, "publish", publish)
    clock.advance(61)  # the first publisher's claim lapses
    handlers.invoke("sweep", schedule_event("sweep"))
    (notification,) = notified(aws, 1)
    assert notification["status"] == "succeeded"


def test_busy_service_is_left_alone_for_its_retry_after(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
) -> None:
    # Given a cap of 1, the first task is refused with 429 and Retry-After: 30
    runtime = make_runtime(algorithms=registry_for(algorithm_service, ocr=1))
    submit(
        handlers,
        task_body(
            idempotency_key="busy-0",
            priority=9,
            input={"test": {"dispatch_status": [429, 202], "retry_after": 30}},
        ),
    )
    assert len(algorithm_service.requests) == 1
    submit(handlers, *(task_body(idempotency_key=f"busy-{n}") for n in range(1, 4)))

    # Then nothing more goes to the service while it asked to be left alone...
    clock.advance(20)
    handlers.invoke("dispatch", schedule_event("dispatch"))
    assert len(algorithm_service.requests) == 1
    refused = runtime.repository.find_task("contracts", "busy-0")
    assert refused is not None
    assert refused.not_before >= clock() + timedelta(seconds=9)

    # ...and everything goes once the pause is over
    clock.advance(11)
    handlers.invoke("dispatch", schedule_event("dispatch"))
    notifications = notified(aws, 4)
    assert Counter(n["status"] for n in notifications) == {"succeeded": 4}
