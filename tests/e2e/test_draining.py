"""Work Baton gave up on stops at the algorithm, through the real handlers and a real
service on loopback: an attempt Baton ends (a timeout, a cancel, a total deadline)
drains, keeping its slot until its endpoint acknowledges the signed cancel request or
the algorithm's cancel_grace_seconds pass, so the service's true load never exceeds
the cap. Without a cancel URL the slot is freed at once, and the test shows what
that costs: the service carries more than its cap."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from baton.faults import InjectedCrash, crash_once_at, inject_faults
from baton.models import TaskExecution
from baton.records import TaskStatus
from baton.runtime import Runtime
from standardwebhooks import Webhook

from tests.support.algorithm_service import AlgorithmService
from tests.support.aws import AwsResources
from tests.support.clock import ShiftableClock
from tests.support.events import schedule_event, sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.lifecycle import notifications_of, run_sweep, send_message, task_of
from tests.support.logs import captured_log_lines
from tests.support.runtime import RuntimeFactory
from tests.support.services import flush_prefix
from tests.support.waiting import wait_for

UNTIL_CANCELLED = {"outcome": "until_cancelled"}


def _ocr(service: AlgorithmService, *, cancel: bool = True, cap: int = 1, **extra: Any) -> Any:
    entry: dict[str, Any] = {
        "endpoint": service.endpoint("ocr"),
        "max_concurrency": cap,
        "timeout_seconds": 30,
        "max_attempts": 1,
        **extra,
    }
    if cancel:
        entry["cancel_url"] = service.cancel_url("ocr")
    return {"ocr": entry}


def _submit(handlers: Handlers, key: str, **test: Any) -> None:
    body = task_body(idempotency_key=key, input={"key": key, "test": test})
    assert send_message(handlers, body) == {"batchItemFailures": []}


def _cancel(handlers: Handlers, reason: str | None = None, **target: str) -> dict[str, Any]:
    message: dict[str, Any] = {"app": "contracts", "cancel": target}
    if reason is not None:
        message["reason"] = reason
    return send_message(handlers, json.dumps(message))


def _execution(runtime: Runtime, key: str, attempt: int = 1) -> TaskExecution:
    execution = runtime.repository.get_execution(task_of(runtime, key).id, attempt)
    assert execution is not None
    return execution


def _dispatched(service: AlgorithmService, runtime: Runtime, key: str) -> int:
    return len(service.requests_for(task_of(runtime, key).id))


def test_a_timed_out_attempt_keeps_its_slot_until_the_service_acknowledges_the_cancel(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
) -> None:
    # Given a cap of 1 held by an attempt whose service refuses two cancel requests,
    # and a task waiting behind it
    runtime = make_runtime(algorithms=_ocr(algorithm_service))
    _submit(handlers, "first", **UNTIL_CANCELLED, cancel_status=[503, 503, 200])
    _submit(handlers, "second", **UNTIL_CANCELLED)
    assert _dispatched(algorithm_service, runtime, "second") == 0

    # When the first times out, the sweep ends it and sends the cancel request: refused
    clock.advance(31)
    assert run_sweep(handlers)["timed_out"] == 1
    first = task_of(runtime, "first")
    assert (first.status, first.error_code) == (TaskStatus.TIMED_OUT, "timeout")
    assert _execution(runtime, "first").drain_until is not None
    # Then the slot stays taken while the service has not stopped
    assert runtime.queue.inflight_cost("ocr") == 1
    assert _dispatched(algorithm_service, runtime, "second") == 0
    assert algorithm_service.true_cost_in_flight["ocr"] == 1

    # When the sweep tries again (refused again), then a third time (acknowledged)
    clock.advance(10)
    assert run_sweep(handlers)["cancels_retrying"] == 1
    assert _dispatched(algorithm_service, runtime, "second") == 0
    clock.advance(10)
    report = run_sweep(handlers)

    # Then the slot is freed at once and the next task dispatched on the fast path
    assert report["cancels_acknowledged"] == 1
    assert _dispatched(algorithm_service, runtime, "second") == 1
    drained = _execution(runtime, "first")
    assert drained.drain_until is None
    assert drained.drained_at is not None
    assert (drained.cancel_tries, drained.cancel_http_status) == (3, 200)
    assert drained.cancel_reason == "timed_out"
    assert algorithm_service.max_true_cost_in_flight["ocr"] == 1
    assert [n["error"]["code"] for n in notifications_of(aws, first)] == ["timeout"]


def test_a_cancel_request_never_answered_frees_the_slot_at_the_grace_and_not_before(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    clock: ShiftableClock,
) -> None:
    # Given a service that drops every cancel request, and a grace of 60 s
    runtime = make_runtime(algorithms=_ocr(algorithm_service, cancel_grace_seconds=60))
    _submit(handlers, "first", run_seconds=120, outcome="until_cancelled", cancel_status=[0])
    _submit(handlers, "second", **UNTIL_CANCELLED)
    clock.advance(31)
    run_sweep(handlers)

    # When the sweep keeps trying within the grace
    for _ in range(3):
        clock.advance(19)
        assert run_sweep(handlers)["cancels_retrying"] == 1
        assert _dispatched(algorithm_service, runtime, "second") == 0
        assert runtime.queue.inflight_cost("ocr") == 1

    # Then once the grace has passed the slot goes back, and the next task runs
    clock.advance(5)
    with captured_log_lines() as logs:
        assert run_sweep(handlers)["cancels_past_grace"] == 1
    assert _dispatched(algorithm_service, runtime, "second") == 1
    drained = _execution(runtime, "first")
    assert drained.cancel_tries >= 4
    assert drained.cancel_http_status is None
    assert any("freed at its grace" in line["message"] for line in logs.records)


def test_without_a_cancel_url_the_slot_is_freed_at_once_and_the_service_carries_more(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    clock: ShiftableClock,
) -> None:
    # Given an endpoint with no cancel URL, whose service keeps working on what it has
    runtime = make_runtime(algorithms=_ocr(algorithm_service, cancel=False))
    _submit(handlers, "first", **UNTIL_CANCELLED)
    _submit(handlers, "second", **UNTIL_CANCELLED)

    # When the first times out
    clock.advance(31)
    run_sweep(handlers)

    # Then Baton frees the slot at once and sends the next task, while the service is
    # still on the first: its true load is twice the cap (what the README warns of)
    assert _execution(runtime, "first").drain_until is None
    assert _dispatched(algorithm_service, runtime, "second") == 1
    assert algorithm_service.cancels == []
    assert algorithm_service.max_true_cost_in_flight["ocr"] == 2


def test_the_cancel_request_is_signed_with_the_algorithm_s_secret_under_its_own_id(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
) -> None:
    # Given a running task
    runtime = make_runtime(algorithms=_ocr(algorithm_service))
    _submit(handlers, "running", **UNTIL_CANCELLED)
    task = task_of(runtime, "running")

    # When its app cancels it by id
    assert _cancel(handlers, "the user deleted the document", task_id=task.id) == {
        "batchItemFailures": []
    }

    # Then the algorithm got one cancel request that verifies with its secret, with
    # the id <task>:<attempt>:cancel and the reason
    [delivery] = algorithm_service.cancels
    secret = runtime.config.signing_keys.secrets_of("ocr")[0].secret
    verified = Webhook(secret).verify(delivery.body, delivery.headers)
    assert verified == {
        "task_id": task.id,
        "attempt": 1,
        "algorithm": "ocr",
        "reason": "cancelled",
    }
    assert delivery.headers["webhook-id"] == f"{task.id}:1:cancel"
    assert delivery.headers["Idempotency-Key"] == f"{task.id}:1:cancel"
    assert (task.id, 1) in algorithm_service.stopped_by_cancel


def test_cancel_messages_for_queued_running_and_final_tasks(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
) -> None:
    # Given a running task (the cap is 1), a queued one behind it, and a final one
    runtime = make_runtime(algorithms=_ocr(algorithm_service))
    _submit(handlers, "done")
    algorithm_service.wait_idle()
    assert task_of(runtime, "done").status == TaskStatus.SUCCEEDED
    _submit(handlers, "running", **UNTIL_CANCELLED)
    _submit(handlers, "queued", **UNTIL_CANCELLED)
    _submit(handlers, "next", **UNTIL_CANCELLED)
    assert task_of(runtime, "running").status == TaskStatus.RUNNING

    # When the app cancels the queued one by key, the running one by id, the final one
    ok: dict[str, Any] = {"batchItemFailures": []}
    assert _cancel(handlers, "no longer needed", idempotency_key="queued") == ok
    assert _cancel(handlers, task_id=task_of(runtime, "running").id) == ok
    assert _cancel(handlers, idempotency_key="done") == ok
    assert _cancel(handlers, task_id=str(uuid.uuid4())) == ok  # unknown: no failure

    # Then the queued one ended cancelled, never dispatched, with the reason
    queued = task_of(runtime, "queued")
    assert (queued.status, queued.attempts) == (TaskStatus.CANCELLED, 0)
    assert queued.error_message == "no longer needed"
    # the running one was stopped at the algorithm, its slot freed for the next task
    running = task_of(runtime, "running")
    assert running.status == TaskStatus.CANCELLED
    assert (running.id, 1) in algorithm_service.stopped_by_cancel
    assert task_of(runtime, "next").status == TaskStatus.RUNNING
    assert algorithm_service.max_true_cost_in_flight["ocr"] == 1
    # and the final one did not change; each of them was told exactly once
    assert task_of(runtime, "done").status == TaskStatus.SUCCEEDED
    notifications = aws.notifications(wait_seconds=1)
    by_task = {
        key: [n["status"] for n in notifications if n["task_id"] == task_of(runtime, key).id]
        for key in ("done", "running", "queued")
    }
    assert by_task == {
        "done": ["succeeded"],
        "running": ["cancelled"],
        "queued": ["cancelled"],
    }


def test_a_cancel_that_arrives_before_its_task_is_kept_and_the_task_never_runs(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
) -> None:
    # Given a cancel by key for a task that has not arrived (SQS keeps no order)
    runtime = make_runtime(algorithms=_ocr(algorithm_service))
    assert _cancel(handlers, "withdrawn", idempotency_key="late") == {"batchItemFailures": []}
    assert runtime.repository.find_task("contracts", "late") is None

    # When the task arrives, and SQS delivers it once more
    _submit(handlers, "late")
    _submit(handlers, "late")

    # Then it is cancelled, never dispatched, and told once (the duplicate publishes
    # the same notification again, as for any final task)
    task = task_of(runtime, "late")
    assert (task.status, task.attempts) == (TaskStatus.CANCELLED, 0)
    assert (task.error_code, task.error_message) == ("cancelled", "withdrawn")
    assert algorithm_service.requests == []
    notified = notifications_of(aws, task)
    assert {n["status"] for n in notified} == {"cancelled"}
    assert len({n["notification_id"] for n in notified}) == 1
    # and another task of the same app with another key is not affected
    _submit(handlers, "other")
    algorithm_service.wait_idle()
    assert task_of(runtime, "other").status == TaskStatus.SUCCEEDED


def test_a_cancel_is_kept_only_for_its_retention(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    clock: ShiftableClock,
) -> None:
    # Given a cancel kept for an hour
    runtime = make_runtime(algorithms=_ocr(algorithm_service), cancel_retention_seconds="3600")
    _cancel(handlers, idempotency_key="much-later")

    # When its task arrives after that, once the sweep has purged it
    clock.advance(3601)
    assert run_sweep(handlers)["expired_cancels_purged"] == 1
    _submit(handlers, "much-later")

    # Then the task runs as any other
    algorithm_service.wait_idle()
    assert task_of(runtime, "much-later").status == TaskStatus.SUCCEEDED


def test_a_cancel_from_a_sender_not_the_app_s_is_refused_and_changes_nothing(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
) -> None:
    # Given an app registry and a running task of contracts
    apps = {
        "contracts": {"senders": ["AROAEXAMPLEROLEID123"], "principals": []},
        "billing": {"senders": ["AROAEXAMPLEBILLINGID"], "principals": []},
    }
    runtime = make_runtime(algorithms=_ocr(algorithm_service), apps=json.dumps(apps))
    _submit(handlers, "mine", **UNTIL_CANCELLED)
    task = task_of(runtime, "mine")

    # When someone else sends a cancel for it, and a malformed cancel comes too
    foreign = json.dumps({"app": "contracts", "cancel": {"task_id": task.id}})
    refused = send_message(handlers, foreign, sender_id="AROAEXAMPLEOTHERID:intruder")
    malformed = send_message(handlers, json.dumps({"app": "contracts", "cancel": {"id": task.id}}))

    # and another registered app names the task as if it were its own
    other = json.dumps({"app": "billing", "cancel": {"task_id": task.id}})
    unseen = send_message(handlers, other, sender_id="AROAEXAMPLEBILLINGID:billing-job")

    # Then the first two are failed batch items, the third changes nothing (the task
    # is not found for billing), and the task runs on
    assert len(refused["batchItemFailures"]) == 1
    assert len(malformed["batchItemFailures"]) == 1
    assert unseen == {"batchItemFailures": []}
    assert task_of(runtime, "mine").status == TaskStatus.RUNNING
    assert algorithm_service.cancels == []


def test_the_heartbeat_and_callback_of_an_ended_attempt_are_answered_409(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
) -> None:
    # Given a running attempt that its app cancels (the endpoint has no cancel URL)
    runtime = make_runtime(algorithms=_ocr(algorithm_service, cancel=False))
    _submit(handlers, "stopped", outcome="silent", run_seconds=0)
    task = task_of(runtime, "stopped")
    [request] = algorithm_service.requests_for(task.id)
    _cancel(handlers, task_id=task.id)

    # When the service heartbeats, then calls back
    heartbeat = algorithm_service.call_back(request, {"attempt": 1}, path="heartbeat")
    callback = algorithm_service.call_back(request, {"attempt": 1, "status": "failed"})

    # Then both are told 409: stop working on this attempt
    assert heartbeat.http_status == 409, heartbeat.answer
    assert callback.http_status == 409, callback.answer
    assert task_of(runtime, "stopped").status == TaskStatus.CANCELLED


@pytest.mark.parametrize("cancel", [True, False], ids=["cancel_url", "no_cancel_url"])
def test_the_service_s_true_load_stays_within_the_cap_through_many_timeouts_and_cancels(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
    cancel: bool,
) -> None:
    # Given 16 tasks on a cap of 3 whose service works on each attempt until told to
    # stop; some refuse their first cancel or two, some do not know the attempt (404)
    runtime = make_runtime(algorithms=_ocr(algorithm_service, cancel=cancel, cap=3, max_attempts=2))
    answers = ([200], [503, 200], [404], [0, 503, 200])
    keys = [f"load-{n}" for n in range(16)]
    for n, key in enumerate(keys):
        _submit(handlers, key, **UNTIL_CANCELLED, cancel_status=answers[n % len(answers)])

    # When, round after round, attempts time out and the app cancels some tasks
    for round_ in range(40):
        if round_ % 3 == 1:
            running = [k for k in keys if task_of(runtime, k).status == TaskStatus.RUNNING]
            if running:
                _cancel(handlers, idempotency_key=running[0])
        clock.advance(16)
        run_sweep(handlers)
        # the minute timer: retries whose backoff ended meanwhile are promoted
        handlers.invoke("dispatch", schedule_event("dispatch"))
        if all(task_of(runtime, key).status.is_terminal for key in keys):
            break

    # Then every task ended once, and the service never carried more than the cap,
    # by its own count of what it really ran, when the endpoint has a cancel URL
    for _ in range(6):  # the last drains
        clock.advance(16)
        run_sweep(handlers)
        handlers.invoke("dispatch", schedule_event("dispatch"))
    left = {key: task_of(runtime, key).status.value for key in keys}
    assert all(TaskStatus(status).is_terminal for status in left.values()), {
        key: status for key, status in left.items() if not TaskStatus(status).is_terminal
    }
    notified = aws.notifications(wait_seconds=1)
    assert len({n["task_id"] for n in notified}) == len(keys)
    assert runtime.queue.inflight_cost("ocr") == 0
    if cancel:
        assert algorithm_service.max_true_cost_in_flight["ocr"] == 3
    else:
        assert algorithm_service.max_true_cost_in_flight["ocr"] > 3


def test_a_retry_waits_until_its_previous_attempt_has_drained(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    clock: ShiftableClock,
) -> None:
    # Given room for two, and an attempt that times out with a retry left, whose
    # service refuses the first cancel request
    runtime = make_runtime(
        algorithms=_ocr(
            algorithm_service, cap=2, max_attempts=2, backoff_base_seconds=0, backoff_max_seconds=0
        )
    )
    _submit(handlers, "again", **UNTIL_CANCELLED, cancel_status=[503, 200])
    clock.advance(31)
    assert run_sweep(handlers)["retrying"] == 1

    # When the timers run while the first attempt still drains
    handlers.invoke("dispatch", schedule_event("dispatch"))

    # Then the retry waits, though there is room and its backoff is over: the task
    # never runs twice at once
    assert _dispatched(algorithm_service, runtime, "again") == 1
    assert task_of(runtime, "again").status == TaskStatus.PENDING
    # and once the service acknowledges, the retry goes out at once
    clock.advance(5)
    assert run_sweep(handlers)["cancels_acknowledged"] == 1
    assert [r["attempt"] for r in algorithm_service.requests_for(task_of(runtime, "again").id)] == [
        1,
        2,
    ]
    assert algorithm_service.max_true_cost_in_flight["ocr"] == 1


def test_a_draining_attempt_keeps_its_slot_through_a_redis_flush_and_reconcile(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    clock: ShiftableClock,
    redis_client: Any,
    key_prefix: str,
) -> None:
    # Given a draining attempt (its service refuses the first cancel) and a task behind it
    runtime = make_runtime(algorithms=_ocr(algorithm_service))
    _submit(handlers, "first", **UNTIL_CANCELLED, cancel_status=[503, 200])
    _submit(handlers, "second", **UNTIL_CANCELLED)
    clock.advance(31)
    run_sweep(handlers)
    assert _execution(runtime, "first").drain_until is not None

    # When Redis loses everything and reconcile rebuilds it from the database
    assert flush_prefix(redis_client, key_prefix) > 0
    handlers.invoke("reconcile", schedule_event("reconcile"))
    handlers.invoke("dispatch", schedule_event("dispatch"))

    # Then the draining attempt still holds its slot: nothing else was sent
    assert runtime.queue.inflight_cost("ocr") == 1
    assert _dispatched(algorithm_service, runtime, "second") == 0
    # and the sweep's next cancel request, acknowledged, frees it for the next task
    clock.advance(5)
    assert run_sweep(handlers)["cancels_acknowledged"] == 1
    assert _dispatched(algorithm_service, runtime, "second") == 1
    assert algorithm_service.max_true_cost_in_flight["ocr"] == 1


def test_a_running_attempt_past_its_total_deadline_is_cancelled_at_the_algorithm(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
) -> None:
    # Given a running task that may take 60 s in all
    runtime = make_runtime(algorithms=_ocr(algorithm_service, timeout_seconds=600))
    body = task_body(
        idempotency_key="bounded", input={"test": UNTIL_CANCELLED}, total_timeout_seconds=60
    )
    assert send_message(handlers, body) == {"batchItemFailures": []}

    # When the total deadline passes
    clock.advance(61)
    assert run_sweep(handlers)["deadlines_exceeded"] == 1

    # Then the algorithm was told, with the reason, and stopped; the task told once
    task = task_of(runtime, "bounded")
    assert [json.loads(d.body)["reason"] for d in algorithm_service.cancels] == [
        "deadline_exceeded"
    ]
    assert (task.id, 1) in algorithm_service.stopped_by_cancel
    assert runtime.queue.inflight_cost("ocr") == 0
    assert [n["error"]["code"] for n in notifications_of(aws, task)] == ["deadline_exceeded"]


def _surviving(handlers: Handlers, name: str, event: dict[str, Any]) -> bool:
    """Invoke as Lambda would: a crash kills this invocation only. True if it lived."""
    try:
        handlers.invoke(name, event)
    except InjectedCrash:
        return False
    return True


@pytest.mark.parametrize("point", ["cancel.after_end", "cancel.after_ack"])
def test_a_crash_in_the_cancel_path_loses_nothing_and_holds_no_slot(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
    point: str,
) -> None:
    # Given a running task, and one waiting for the cap of 1
    runtime = make_runtime(algorithms=_ocr(algorithm_service))
    _submit(handlers, "cancelled", **UNTIL_CANCELLED)
    _submit(handlers, "waiting")
    task = task_of(runtime, "cancelled")
    cancel = sqs_event(sqs_record(json.dumps({"app": "contracts", "cancel": {"task_id": task.id}})))

    # When the intake dies in the cancel path, and SQS delivers the message again
    with inject_faults(crash_once_at([point])) as fired:
        before = fired[point]
        assert not _surviving(handlers, "intake", cancel)
        assert _surviving(handlers, "intake", cancel)
        assert fired[point] == before + 1

    # Then the timers finish the job: the service is stopped, the slot is freed, the
    # waiting task runs, and the cancelled one is told once
    # Past the claim the dead invocation held on its outbox row (60 s), so a
    # notification left behind goes out.
    for _ in range(5):
        clock.advance(15)
        for name in ("sweep", "reconcile", "dispatch"):
            handlers.invoke(name, schedule_event(name))
        wait_for(lambda: task_of(runtime, "waiting").status != TaskStatus.RUNNING, timeout=10)
    algorithm_service.wait_idle()
    assert (task.id, 1) in algorithm_service.stopped_by_cancel
    assert task_of(runtime, "cancelled").status == TaskStatus.CANCELLED
    assert task_of(runtime, "waiting").status == TaskStatus.SUCCEEDED
    assert algorithm_service.max_true_cost_in_flight["ocr"] == 1
    assert runtime.queue.inflight_cost("ocr") == 0
    assert [n["status"] for n in notifications_of(aws, task_of(runtime, "cancelled"))] == [
        "cancelled"
    ]


def test_a_crash_after_a_cancel_is_kept_still_cancels_its_task(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
) -> None:
    # Given a cancel by key whose intake dies once it is kept, and is delivered again
    runtime = make_runtime(algorithms=_ocr(algorithm_service))
    cancel = sqs_event(
        sqs_record(json.dumps({"app": "contracts", "cancel": {"idempotency_key": "early"}}))
    )
    with inject_faults(crash_once_at(["cancel.after_keep"])) as fired:
        before = fired["cancel.after_keep"]
        assert not _surviving(handlers, "intake", cancel)
        assert _surviving(handlers, "intake", cancel)
        assert fired["cancel.after_keep"] == before + 1

    # When its task arrives
    _submit(handlers, "early")

    # Then it is cancelled without a dispatch, told once
    task = task_of(runtime, "early")
    assert (task.status, task.attempts) == (TaskStatus.CANCELLED, 0)
    assert algorithm_service.requests == []
    assert [n["status"] for n in notifications_of(aws, task)] == ["cancelled"]
