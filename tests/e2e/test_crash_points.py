"""A worker dies at each step boundary of the lifecycle, once; the timers (promote,
dispatch, sweep, reconcile) and SQS/API retries must still bring every task to
exactly one final state with exactly one notification id, without ever running
an attempt twice or exceeding the cap."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from baton.faults import CRASH_POINTS, InjectedCrash, crash_once_at, inject_faults
from baton.records import TaskStatus

from tests.support.algorithm_service import AlgorithmService
from tests.support.aws import AwsResources
from tests.support.clock import ShiftableClock
from tests.support.events import schedule_event, sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.runtime import RuntimeFactory
from tests.support.waiting import wait_for

TASKS = 3


def invoke_surviving(handlers: Handlers, name: str, event: dict[str, Any]) -> bool:
    """Invoke as Lambda would: a crash kills this invocation only. True if it lived."""
    try:
        handlers.invoke(name, event)
    except InjectedCrash:
        return False
    return True


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_at_any_step_loses_nothing(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
    point: str,
) -> None:
    runtime = make_runtime()
    records = [
        sqs_record(
            task_body(
                idempotency_key=f"crash-{n}",
                timeout_seconds=20,
                # long enough for a heartbeat to find the attempt running
                input={"test": {"run_seconds": 0.5 if point.startswith("heartbeat") else 0.05}},
            )
        )
        for n in range(TASKS)
    ]
    with inject_faults(crash_once_at([point])) as fired:
        before = fired[point]
        # SQS redelivers a batch whose invocation died
        while not invoke_surviving(handlers, "intake", sqs_event(*records)):
            pass
        if point == "heartbeat.after_record":
            request = wait_for(lambda: algorithm_service.requests)[0]
            algorithm_service.call_back(request, {"attempt": 1, "progress": 10}, "heartbeat")

        def settled() -> bool:
            # One minute of timers, then time moves on: leases, deadlines, backoff.
            for name in ("sweep", "reconcile", "promote", "dispatch"):
                invoke_surviving(handlers, name, schedule_event(name))
            algorithm_service.wait_idle()
            clock.advance(45)
            notified = {n["task_id"] for n in aws.notifications()}
            return len(notified) == TASKS

        wait_for(settled, timeout=60, interval=0)
        assert fired[point] == before + 1, f"{point} was never reached"

    notifications = aws.notifications(wait_seconds=1)
    ids_per_task: dict[str, set[str]] = {}
    for notification in notifications:
        ids_per_task.setdefault(notification["task_id"], set()).add(notification["notification_id"])
    assert len(ids_per_task) == TASKS
    assert all(len(ids) == 1 for ids in ids_per_task.values()), ids_per_task
    assert Counter(n["status"] for n in notifications).keys() == {"succeeded"}
    for task_id in ids_per_task:
        task = runtime.repository.get_task(task_id)
        assert task is not None
        assert task.status == TaskStatus.SUCCEEDED
    assert algorithm_service.overlaps == []
    assert algorithm_service.max_in_flight["ocr"] <= 2
    assert runtime.queue.running_count("ocr") == 0


# -- once a task is final: a duplicate of its message, an operator's retry --------------


def _settle(handlers: Handlers, algorithm_service: AlgorithmService, clock: ShiftableClock) -> None:
    """One minute of timers, then time moves on."""
    for name in ("sweep", "reconcile", "promote", "dispatch"):
        invoke_surviving(handlers, name, schedule_event(name))
    algorithm_service.wait_idle()
    clock.advance(45)


def _notifications_of(aws: AwsResources, task_id: str, count: int) -> list[dict[str, Any]]:
    def arrived() -> list[dict[str, Any]] | None:
        mine = [n for n in aws.notifications() if n["task_id"] == task_id]
        return mine if len(mine) >= count else None

    return wait_for(arrived)


@pytest.mark.parametrize("point", ["notify.before_republish", "notify.after_republish"])
def test_a_crash_while_a_final_tasks_duplicate_is_published_again_loses_nothing(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    point: str,
) -> None:
    runtime = make_runtime()
    body = task_body(idempotency_key="lost-notification")
    assert invoke_surviving(handlers, "intake", sqs_event(sqs_record(body)))
    task = runtime.repository.find_task("contracts", "lost-notification")
    assert task is not None
    original = _notifications_of(aws, task.id, 1)[0]
    wait_for(lambda: runtime.repository.get_task(task.id).notified_at is not None)  # type: ignore[union-attr]

    with inject_faults(crash_once_at([point])) as fired:
        before = fired[point]
        duplicate = sqs_event(sqs_record(body))
        # the invocation dies; SQS delivers the record again
        assert not invoke_surviving(handlers, "intake", duplicate)
        assert invoke_surviving(handlers, "intake", duplicate)
        assert fired[point] == before + 1

    # published again once (twice when the first publish got out before the crash),
    # always under the same notification id, and nothing else happened
    again = _notifications_of(aws, task.id, 2 if point == "notify.before_republish" else 3)
    assert len(aws.notifications(wait_seconds=1)) == len(again)
    assert {n["notification_id"] for n in again} == {original["notification_id"]}
    assert len(algorithm_service.requests) == 1
    stored = runtime.repository.get_task(task.id)
    assert stored is not None
    assert (stored.status, stored.attempts) == (TaskStatus.SUCCEEDED, 1)


def test_a_crash_after_a_retry_reset_the_task_loses_nothing(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
) -> None:
    from baton.retrying import TaskRef, retry_task

    runtime = make_runtime()
    body = task_body(
        idempotency_key="retried", input={"test": {"outcomes": ["failed", "succeeded"]}}
    )
    assert invoke_surviving(handlers, "intake", sqs_event(sqs_record(body)))
    task = runtime.repository.find_task("contracts", "retried")
    assert task is not None
    first = _notifications_of(aws, task.id, 1)[0]
    wait_for(lambda: runtime.repository.get_task(task.id).notified_at is not None)  # type: ignore[union-attr]

    with inject_faults(crash_once_at(["retry.after_reset"])) as fired:
        before = fired["retry.after_reset"]
        # the operator's command dies between the reset and the fast path
        with pytest.raises(InjectedCrash):
            retry_task(runtime, TaskRef(task_id=task.id))
        assert fired["retry.after_reset"] == before + 1
    stored = runtime.repository.get_task(task.id)
    assert stored is not None
    assert stored.status == TaskStatus.PENDING
    assert len(algorithm_service.requests) == 1

    # the timers take it from there: attempt 2 runs, a new outcome is announced once
    def settled() -> bool:
        _settle(handlers, algorithm_service, clock)
        return len([n for n in aws.notifications() if n["task_id"] == task.id]) >= 2

    wait_for(settled, timeout=60, interval=0)
    notifications = [n for n in aws.notifications(wait_seconds=1) if n["task_id"] == task.id]
    assert [n["status"] for n in notifications] == ["failed", "succeeded"]
    assert notifications[1]["notification_id"] != first["notification_id"]
    assert [r["attempt"] for r in algorithm_service.requests_for(task.id)] == [1, 2]
    assert algorithm_service.overlaps == []
    assert runtime.queue.running_count("ocr") == 0
