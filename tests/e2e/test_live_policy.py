"""One live policy, through the real handlers: a registry change in SSM is enforced by
warm functions within the refresh period (no cold start), a pause stops admission and
a resume starts it again, and fair admission reaches the apps' backlogs whatever their
ages."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import redis
from baton.pausing import pause_algorithm, resume_algorithm
from baton.reconcile import reconcile_all
from baton.records import NewTask, TaskStatus
from baton.runtime import Runtime
from baton.waiting import explain_waiting

from tests.support.algorithm_service import AlgorithmService
from tests.support.aws import AwsResources
from tests.support.events import schedule_event, sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.runtime import RuntimeFactory
from tests.support.services import flush_prefix
from tests.support.waiting import wait_for


def _registry(service: AlgorithmService, cap: int) -> dict[str, Any]:
    return {"ocr": {"endpoint": service.endpoint("ocr"), "max_concurrency": cap}}


def _submit(handlers: Handlers, count: int, **test: Any) -> None:
    for start in range(0, count, 10):
        records = [
            sqs_record(task_body(idempotency_key=f"doc-{n}", input={"document": n, "test": test}))
            for n in range(start, min(start + 10, count))
        ]
        assert handlers.invoke("intake", sqs_event(*records)) == {"batchItemFailures": []}


def test_a_lower_cap_in_ssm_holds_in_warm_functions_within_the_refresh_period(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
) -> None:
    # Given the algorithm registry in SSM with a cap of 4, re-read every second
    ssm = aws.session.client("ssm")
    name = f"/baton/test-{uuid.uuid4().hex[:8]}/algorithms"
    ssm.put_parameter(Name=name, Value=json.dumps(_registry(algorithm_service, 4)), Type="String")
    make_runtime(algorithms_parameter=name, policy_refresh_seconds="1")
    _submit(handlers, 40, run_seconds=0.25)
    wait_for(lambda: algorithm_service.max_in_flight["ocr"] == 4, timeout=30)

    # When the operator lowers the cap to 2 while tasks run
    ssm.put_parameter(
        Name=name,
        Value=json.dumps(_registry(algorithm_service, 2)),
        Type="String",
        Overwrite=True,
    )
    changed = time.monotonic()

    def all_notified() -> bool:
        handlers.invoke("dispatch", schedule_event("dispatch"))
        return len(aws.notifications()) >= 40

    wait_for(all_notified, timeout=120)

    # Then within the refresh period (plus the time a dispatch takes to reach the
    # service on this busy machine) every admission obeys the new cap: no task is
    # accepted while two already run
    settle = changed + 1.0 + 1.0
    after = [
        in_flight for moment, path, in_flight in algorithm_service.accepted_at if moment > settle
    ]
    assert after, "nothing was dispatched after the change"
    assert max(after) <= 2, after
    assert Counter(n["status"] for n in aws.notifications(wait_seconds=1)) == {"succeeded": 40}


def test_a_pause_stops_admission_and_a_resume_restarts_it_at_once(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    redis_client: redis.Redis,
    key_prefix: str,
) -> None:
    runtime: Runtime = make_runtime(algorithms=_registry(algorithm_service, 3))

    # Given a paused algorithm
    assert pause_algorithm(runtime, "ocr", "broken release")
    assert not pause_algorithm(runtime, "ocr", "twice")

    # When tasks arrive, and the schedule runs
    _submit(handlers, 5, run_seconds=0.05)
    handlers.invoke("dispatch", schedule_event("dispatch"))

    # Then nothing is sent, and each task says why it waits
    assert algorithm_service.requests == []
    task = runtime.repository.find_task("contracts", "doc-0")
    assert task is not None
    waiting = explain_waiting(runtime, task)
    assert waiting is not None
    assert waiting.reason == "paused"

    # And the pause survives Redis losing its data
    flush_prefix(redis_client, key_prefix)
    reconcile_all(runtime)
    handlers.invoke("dispatch", schedule_event("dispatch"))
    assert algorithm_service.requests == []

    # When it is resumed, the tasks go out at once (no tick needed) and all finish
    assert resume_algorithm(runtime, "ocr")
    assert len(algorithm_service.requests) >= 3
    wait_for(lambda: len(aws.notifications()) >= 5, timeout=30)
    wait_for(lambda: _statuses(runtime, 5) == {TaskStatus.SUCCEEDED}, timeout=30)


def _statuses(runtime: Runtime, count: int) -> set[TaskStatus]:
    tasks = [runtime.repository.find_task("contracts", f"doc-{n}") for n in range(count)]
    return {task.status for task in tasks if task is not None}


def test_fair_admission_reaches_a_young_backlog_behind_an_old_one(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
) -> None:
    # Given a bulk import whose 300 tasks are all older than the portal's 30, apps of
    # weights 1 and 4, a cap of 5 and a ready queue of 10 per app
    apps = {
        "bulk-import": {"senders": [], "principals": [], "weight": 1},
        "docs-portal": {"senders": [], "principals": [], "weight": 4},
    }
    runtime: Runtime = make_runtime(
        algorithms=_registry(algorithm_service, 5),
        apps=json.dumps(apps),
        ready_queue_depth="10",
    )
    now = runtime.clock()
    for app, count, offset in (("bulk-import", 300, 0), ("docs-portal", 30, 1000)):
        for n in range(count):
            runtime.repository.add_task(
                NewTask(
                    id=str(uuid.uuid4()),
                    app=app,
                    algorithm="ocr",
                    idempotency_key=f"{app}-{n}",
                    priority=0,
                    input={"test": {"outcome": "silent"}},
                    metadata={},
                    timeout_seconds=60,
                    max_attempts=1,
                    not_before=now - timedelta(hours=1),
                    created_at=now - timedelta(hours=1) + timedelta(milliseconds=offset + n),
                )
            )

    # When the scheduled dispatch runs once
    handlers.invoke("dispatch", schedule_event("dispatch"))

    # Then the portal's young tasks were promoted beside the old backlog, and the five
    # slots went four to one by weight
    sent = Counter(
        runtime.repository.get_task(request["task_id"]).app  # type: ignore[union-attr]
        for request in algorithm_service.requests
    )
    assert sent == {"docs-portal": 4, "bulk-import": 1}
