"""The chaos run, short: 160 tasks through the real handlers in worker processes, with
crashes at random crash points, duplicate messages and callbacks, late callbacks, a
Redis flush inside a slow-database window and a database outage, all at once
(bench/chaos.py; the long run and its figures are in docs/reliability.md), in the fleet
mix: three apps in an app registry (weights, a quota), tasks of cost 1 to 3, and an
algorithm on two endpoints, one of them flaky; with the apps' cancels (before and after
their tasks), queue and total timeouts, an operator's retries, and cancel URLs (one
service that acknowledges every cancel, one that refuses some). Every check must pass.

Then three interleavings the chaos run is after, replayed deterministically; each
broke an invariant before its fix (docs/reliability.md, "What it found"). A fourth
still sends an attempt past its app's quota, and is expected to fail until it is fixed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from baton.intake import accept_task_message
from baton.repair import repair_algorithm_state
from baton.runtime import Runtime
from baton.scheduling import dispatch_attempt, promote_and_dispatch, promote_pending_tasks
from baton.sweep import sweep_overdue_attempts

from bench.chaos import ChaosOptions, run_chaos
from tests.support.admission import members
from tests.support.algorithm_service import AlgorithmService
from tests.support.clock import ShiftableClock
from tests.support.events import task_body
from tests.support.runtime import RuntimeFactory, registry_for
from tests.support.services import flush_prefix


def test_the_short_chaos_run_keeps_every_invariant(tmp_path: Path) -> None:
    report = run_chaos(
        ChaosOptions(
            tasks=160,
            workers=3,
            seed=7,
            cancels_before=0.05,
            flushes=1,
            outages=1,
            outage_seconds=2.0,
            settle_seconds=75.0,
            log_dir=str(tmp_path),
            progress=False,
        )
    )

    print(report.table())
    assert report.passed, "\n".join(report.failures())
    # The faults were really there, not only configured.
    assert sum(report.crash_points.values()) > 0
    assert report.injected["flushes"] == 1
    assert report.injected["outage_seconds"] >= 2.0
    assert report.injected["slow_seconds"] > 0
    assert report.injected["duplicate_messages"] > 0
    assert report.injected["duplicate_callbacks"] > 0
    assert report.figures["late_409"] > 0
    # The fleet mix was there too: costs above 1, both endpoints of the algorithm that
    # has two, the flaky one answering busy, and every app of the registry.
    assert {2, 3} <= set(report.figures["costs"])
    requests = report.figures["per_endpoint"]
    assert requests["vision/1"][0] > 0
    assert requests["vision/2"][0] > 0
    assert report.injected["answered_busy"] > 0
    assert set(report.figures["app_shares"]["vision"]) == {"contracts", "invoices", "forms"}
    names = {check.name for check in report.checks}
    assert {
        "3a no endpoint above its cap",
        "3b no app above its quota",
        "8 cancels end their task once, early ones before any dispatch",
        "9 the service's true load within the caps",
    } <= names
    assert report.figures["cap"]["db"]["app:contracts:vision"] > 0
    # Cancels, timeouts, retries and drains were there too, and reached their crash points.
    cancels = report.figures["cancel_figures"]
    assert cancels.get("before: cancelled, never dispatched", 0) > 0
    assert cancels.get("after: cancelled while running", 0) > 0
    assert "queue_timeout" in report.figures["timed_out_outcomes"]
    assert "deadline_exceeded" in report.figures["timed_out_outcomes"]
    assert report.injected["tasks_retried"].split(" / ")[0] != "0"
    assert report.figures["drains"].split(" / ")[0] != "0"  # acknowledged
    assert report.figures["drains"].split(" / ")[1] != "0"  # freed at the grace
    assert sum(n for point, n in report.crash_points.items() if point.startswith("cancel.")) > 0
    # The service that acknowledges every cancel was held to its cap by its true load,
    # and was loaded up to it.
    assert report.figures["true_load_raw"]["alg:vision"] == 5


# -- deterministic replays ----------------------------------------------------------------

SILENT = {"test": {"outcome": "silent"}}  # the algorithm never calls back: it keeps running


def _one_slot(make_runtime: RuntimeFactory, service: AlgorithmService) -> Runtime:
    return make_runtime(fast_path="false", algorithms=registry_for(service, ocr=1))


def _queued(runtime: Runtime, key: str) -> str:
    accepted = accept_task_message(runtime, task_body(idempotency_key=key, input=SILENT))
    promote_pending_tasks(runtime, ["ocr"])
    return accepted.task_id


def _once(action: Callable[[], None]) -> Callable[[], None]:
    done: list[bool] = []

    def run() -> None:
        if not done:
            done.append(True)
            action()

    return run


@pytest.mark.parametrize("read", ["get_execution", "get_task"])
def test_the_sweep_leaves_the_slot_of_an_attempt_that_starts_while_it_looks(
    make_runtime: RuntimeFactory,
    algorithm_service: AlgorithmService,
    clock: ShiftableClock,
    monkeypatch: pytest.MonkeyPatch,
    read: str,
) -> None:
    # Given a task admitted into the only slot by a worker that then stalled past the
    # admission lease (a big dispatch batch against a slow endpoint, a frozen instance)
    runtime = _one_slot(make_runtime, algorithm_service)
    first = _queued(runtime, "stalled-worker")
    repair_algorithm_state(runtime, "ocr")  # the policy (one slot), then the state
    (slot,) = runtime.queue.admit("ocr", clock() - timedelta(seconds=1), 1, clock()).slots
    assert members([slot]) == [(first, 1)]

    # When the sweep finds the expired lease, and the worker wakes up while the sweep
    # reads the database: it starts the attempt, confirms its slot and sends it
    worker_wakes = _once(lambda: dispatch_attempt(runtime, "ocr", slot) and None)
    original = getattr(runtime.repository, read)

    def read_then_worker_wakes(*args: Any) -> Any:
        value = original(*args)
        worker_wakes()
        return value

    monkeypatch.setattr(runtime.repository, read, read_then_worker_wakes)
    sweep_overdue_attempts(runtime)
    assert [r["task_id"] for r in algorithm_service.requests] == [first]

    # Then the attempt the algorithm is running keeps its slot, and nothing else is sent
    assert (first, 1) in runtime.queue.running("ocr")
    _queued(runtime, "next-in-line")
    promote_and_dispatch(runtime, ["ocr"])
    assert [r["task_id"] for r in algorithm_service.requests] == [first]
    assert algorithm_service.max_in_flight["ocr"] == 1


def test_a_reconcile_that_read_the_database_before_a_flush_does_not_rebuild_from_it(
    make_runtime: RuntimeFactory,
    algorithm_service: AlgorithmService,
    redis_client: redis.Redis,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given one slot, a queued task, and Redis state in place
    runtime = _one_slot(make_runtime, algorithm_service)
    first = _queued(runtime, "sent-during-reconcile")
    repair_algorithm_state(runtime, "ocr")

    # When a reconcile reads the active attempts (none), then a dispatcher sends the
    # task, then Redis loses its data, all before the reconcile writes its restore
    def dispatch_then_flush() -> None:
        promote_and_dispatch(runtime, ["ocr"])
        assert [r["task_id"] for r in algorithm_service.requests] == [first]
        flush_prefix(redis_client, key_prefix)

    then = _once(dispatch_then_flush)
    original = runtime.repository.active_attempts

    def snapshot_then_the_world_moves(algorithm: str) -> Any:
        active = original(algorithm)
        then()
        return active

    monkeypatch.setattr(runtime.repository, "active_attempts", snapshot_then_the_world_moves)
    repair_algorithm_state(runtime, "ocr")

    # Then the running attempt is not forgotten: the next task waits for the slot
    _queued(runtime, "next-in-line")
    promote_and_dispatch(runtime, ["ocr"])
    assert [r["task_id"] for r in algorithm_service.requests] == [first]
    assert runtime.queue.running_count("ocr") <= 1
    assert runtime.queue.inflight_cost("ocr") <= 1


def test_a_heartbeat_that_moves_the_deadline_wins_over_a_sweep_that_found_it_overdue(
    make_runtime: RuntimeFactory,
    algorithm_service: AlgorithmService,
    clock: ShiftableClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a running attempt whose deadline has just passed
    runtime = _one_slot(make_runtime, algorithm_service)
    task_id = _queued(runtime, "heartbeat-late")
    promote_and_dispatch(runtime, ["ocr"])
    (request,) = algorithm_service.requests
    clock.advance(31)

    # When the sweep finds it overdue, and the algorithm's heartbeat moves the deadline
    # before the sweep records the timeout
    original = runtime.repository.overdue_attempts
    heartbeats = []

    def overdue_then_heartbeat(now: Any, limit: int) -> Any:
        found = original(now, limit)
        heartbeats.append(
            algorithm_service.call_back(request, {"attempt": 1, "progress": 50}, "heartbeat")
        )
        return found

    monkeypatch.setattr(runtime.repository, "overdue_attempts", overdue_then_heartbeat)
    report = sweep_overdue_attempts(runtime)

    # Then the heartbeat's answer holds: the attempt runs on to the deadline it announced
    (heartbeat,) = heartbeats
    assert heartbeat.http_status == 200
    assert report.timed_out == report.retrying == 0
    execution = runtime.repository.get_execution(task_id, 1)
    assert execution is not None
    assert execution.status.is_active
    assert execution.deadline == datetime.fromisoformat(heartbeat.answer["deadline"])
    assert (task_id, 1) in runtime.queue.running("ocr")


CONTRACTS_SENDER = "AROAEXAMPLEROLEID123:contracts-service"
QUOTA_OF_ONE: dict[str, Any] = {
    "contracts": {
        "senders": ["AROAEXAMPLEROLEID123"],
        "principals": [],
        "max_in_flight": {"ocr": 1},
    }
}


def test_an_attempt_that_starts_after_the_sweep_took_its_slot_back_keeps_the_app_quota(
    make_runtime: RuntimeFactory,
    algorithm_service: AlgorithmService,
    clock: ShiftableClock,
) -> None:
    # Given an app allowed 1 in flight on an algorithm with room for 3, and its task
    # admitted by a worker that then stalled past the admission lease
    runtime = make_runtime(
        fast_path="false",
        algorithms=registry_for(algorithm_service, ocr=3),
        apps=json.dumps(QUOTA_OF_ONE),
    )
    stalled = accept_task_message(
        runtime, task_body(idempotency_key="stalled-worker", input=SILENT), CONTRACTS_SENDER
    ).task_id
    promote_pending_tasks(runtime, ["ocr"])
    repair_algorithm_state(runtime, "ocr")
    (slot,) = runtime.queue.admit("ocr", clock() - timedelta(seconds=1), 1, clock()).slots
    assert members([slot]) == [(stalled, 1)]

    # When the sweep takes the slot back, the app's next task takes the quota and is
    # sent, and then the stalled worker wakes up and starts its attempt
    sweep_overdue_attempts(runtime)
    accepted = accept_task_message(
        runtime,
        task_body(idempotency_key="next-in-line", priority=5, input=SILENT),
        CONTRACTS_SENDER,
    )
    promote_and_dispatch(runtime, ["ocr"])
    assert [r["task_id"] for r in algorithm_service.requests] == [accepted.task_id]
    dispatch_attempt(runtime, "ocr", slot)

    # Then the app still has at most 1 in flight: the stalled attempt is not sent
    assert [r["task_id"] for r in algorithm_service.requests] == [accepted.task_id]
    assert algorithm_service.max_cost_in_flight["ocr"] <= 1
