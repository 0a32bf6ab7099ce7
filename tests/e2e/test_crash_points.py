"""A worker dies at each step boundary of the lifecycle, once; the timers (promote,
dispatch, sweep, reconcile) and SQS/API retries must still bring every task to
exactly one final state with exactly one notification id, without ever running
an attempt twice or exceeding the cap.

Each crash point runs twice: one app's tasks of cost 1 on two algorithms of one
endpoint each, and the fleet mix: two apps of an app registry (weights, one with a
quota), tasks of cost 1 to 3, and an algorithm on two endpoints of different caps
whose sum is above the algorithm's. After recovery, the cost in flight never went
above the cap of the algorithm, of either endpoint or of the app's quota, by the
service's own count and by the attempts in the database, and Redis holds no cost."""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import pytest
import sqlalchemy as sa
from baton.faults import CRASH_POINTS, InjectedCrash, crash_once_at, inject_faults
from baton.records import TaskStatus
from baton.runtime import Runtime

from bench.chaos_checks import max_load
from tests.support.algorithm_service import AlgorithmService
from tests.support.aws import AwsResources
from tests.support.clock import ShiftableClock
from tests.support.endpoint_costs import EndpointCostService
from tests.support.events import schedule_event, sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.runtime import RuntimeFactory
from tests.support.waiting import wait_for

TASKS = 3

# The fleet: ocr on a big and a small server, at most 4 of cost in flight in all.
BIG, SMALL = "ocr-big", "ocr-small"
CAPS = {BIG: 3, SMALL: 2}
ALGORITHM_CAP = 4
# The intake sample's SenderId is a session of the contracts role.
APPS: dict[str, Any] = {
    "contracts": {"senders": ["AROAEXAMPLEROLEID123"], "principals": [], "weight": 2},
    "billing": {
        "senders": ["AROAEXAMPLEBILLINGID"],
        "principals": [],
        "max_in_flight": {"ocr": 2},
    },
}
SENDERS = {"contracts": None, "billing": "AROAEXAMPLEBILLINGID:billing-job"}
QUOTAS = {("billing", "ocr"): 2}
# (app, cost): the big task fits the big server only; billing's two fit its quota
# one at a time.
FLEET_TASKS = (("contracts", 3), ("billing", 2), ("contracts", 1), ("billing", 1), ("contracts", 2))


@dataclass(frozen=True)
class Mix:
    name: str
    tasks: tuple[tuple[str, int], ...]  # (app, cost) of each task
    fleet: bool


MIXES = (
    Mix("one app, cost 1", (("contracts", 1),) * TASKS, fleet=False),
    Mix("apps, costs, endpoints", FLEET_TASKS, fleet=True),
)


@pytest.fixture
def algorithm_service() -> Iterator[EndpointCostService]:
    """The service that also counts cost in flight per endpoint."""
    service = EndpointCostService()
    service.start()
    yield service
    service.stop()


def invoke_surviving(handlers: Handlers, name: str, event: dict[str, Any]) -> bool:
    """Invoke as Lambda would: a crash kills this invocation only. True if it lived."""
    try:
        handlers.invoke(name, event)
    except InjectedCrash:
        return False
    return True


def _fleet_registry(service: EndpointCostService) -> dict[str, Any]:
    return {
        "ocr": {
            "endpoints": [
                {"url": service.endpoint(path), "max_concurrency": cap}
                for path, cap in CAPS.items()
            ],
            "max_concurrency": ALGORITHM_CAP,
            "timeout_seconds": 30,
            "max_timeout_seconds": 7200,
            "max_attempts": 3,
        }
    }


def _subscribed(aws: AwsResources, app: str) -> AwsResources:
    """Another business app's queue on the notification topic, filtered on its name."""
    sqs = aws.session.client("sqs")
    url = sqs.create_queue(QueueName=f"{app}-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    aws.session.client("sns").subscribe(
        TopicArn=aws.topic_arn,
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"RawMessageDelivery": "true", "FilterPolicy": json.dumps({"app": [app]})},
    )
    return AwsResources(aws.bucket, aws.topic_arn, url, aws.session)


@pytest.mark.parametrize("mix", MIXES, ids=[mix.name for mix in MIXES])
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_at_any_step_loses_nothing(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: EndpointCostService,
    aws: AwsResources,
    clock: ShiftableClock,
    clean_database: str,
    point: str,
    mix: Mix,
) -> None:
    if mix.fleet:
        runtime = make_runtime(algorithms=_fleet_registry(algorithm_service), apps=json.dumps(APPS))
        queues = {"contracts": aws, "billing": _subscribed(aws, "billing")}
    else:
        runtime = make_runtime()
        queues = {"contracts": aws}
    records = [
        sqs_record(
            task_body(
                app=app,
                idempotency_key=f"crash-{n}",
                timeout_seconds=20,
                # the first mix as before the fleet: no cost field at all
                **({"cost": cost} if mix.fleet else {}),
                # long enough for a heartbeat to find the attempt running
                input={"test": {"run_seconds": 0.5 if point.startswith("heartbeat") else 0.05}},
            ),
            sender_id=SENDERS[app] if mix.fleet else None,
        )
        for n, (app, cost) in enumerate(mix.tasks)
    ]
    expected = len(records)

    def notifications(wait_seconds: int = 0) -> list[dict[str, Any]]:
        return [n for queue in queues.values() for n in queue.notifications(wait_seconds)]

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
            notified = {n["task_id"] for n in notifications()}
            return len(notified) == expected

        wait_for(settled, timeout=60, interval=0)
        assert fired[point] == before + 1, f"{point} was never reached"

    everything = notifications(wait_seconds=1)
    ids_per_task: dict[str, set[str]] = {}
    for notification in everything:
        ids_per_task.setdefault(notification["task_id"], set()).add(notification["notification_id"])
    assert len(ids_per_task) == expected
    assert all(len(ids) == 1 for ids in ids_per_task.values()), ids_per_task
    assert Counter(n["status"] for n in everything).keys() == {"succeeded"}
    for task_id in ids_per_task:
        task = runtime.repository.get_task(task_id)
        assert task is not None
        assert task.status == TaskStatus.SUCCEEDED
    assert algorithm_service.overlaps == []
    if mix.fleet:
        _assert_fleet_limits(runtime, algorithm_service, clean_database)
    else:
        assert algorithm_service.max_in_flight["ocr"] <= 2
        assert algorithm_service.max_cost_in_flight["ocr"] <= 2
    assert runtime.queue.running_count("ocr") == 0
    assert runtime.queue.inflight_cost("ocr") == 0


def _assert_fleet_limits(runtime: Runtime, service: EndpointCostService, database: str) -> None:
    """Cost in flight never above a limit, by the service's count and by the attempts
    in the database (those the service received), and nothing left counted in Redis."""
    # The service, from receipt to callback: each endpoint, and the algorithm
    assert service.max_cost_by_path[BIG] <= CAPS[BIG], dict(service.max_cost_by_path)
    assert service.max_cost_by_path[SMALL] <= CAPS[SMALL], dict(service.max_cost_by_path)
    assert service.max_cost_in_flight["ocr"] <= ALGORITHM_CAP, dict(service.max_cost_in_flight)
    assert set(service.max_cost_by_path) <= set(CAPS)

    # The database: [created_at, finished_at] of each attempt, weighted by its cost, by
    # algorithm, by endpoint and by app; each sent where and as its row says
    rows = _executions(database)
    received = {(r["task_id"], int(r["attempt"])): path for path, r in service.accepted}
    spans: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for row in rows:
        path = received.get((row["task_id"], row["attempt"]))
        if path is None:
            continue
        assert row["endpoint"] == service.endpoint(path), row
        assert row["finished_at"] is not None, row
        span = (row["created_at"], row["finished_at"], row["cost"])
        for key in ("ocr", row["endpoint"], f"app:{row['app']}"):
            spans[key].append(span)
    costs = {(r["task_id"], r["attempt"]): r["cost"] for r in rows}
    for _path, request in service.accepted:
        assert request["cost"] == costs[(request["task_id"], int(request["attempt"]))], request
    limits = {"ocr": ALGORITHM_CAP, **{service.endpoint(p): c for p, c in CAPS.items()}}
    limits |= {f"app:{app}": quota for (app, _), quota in QUOTAS.items()}
    for key, limit in limits.items():
        most, _ = max_load(spans.get(key, []))
        assert most <= limit, (key, most, limit)

    # Redis, after recovery: no cost left on the algorithm, an endpoint or an app
    counts = runtime.queue.policy_state("ocr").counts
    held = {f: int(v) for f, v in counts.items() if f.startswith(("inflight", "ep:", "app:"))}
    assert not any(held.values()), held


def _executions(database: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(database)
    try:
        with engine.connect() as connection:
            result = connection.exec_driver_sql(
                "SELECT task_id, attempt, app, cost, endpoint, created_at, finished_at "
                "FROM task_execution"
            )
            rows = [dict(row._mapping) for row in result]
    finally:
        engine.dispose()
    for row in rows:
        for column in ("created_at", "finished_at"):
            if row[column] is not None:
                row[column] = row[column].replace(tzinfo=UTC).timestamp()
    return rows


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
