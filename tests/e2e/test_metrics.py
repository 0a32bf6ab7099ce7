"""The metrics a run emits, read from the EMF documents the handlers print, as
CloudWatch reads them: each per algorithm (and per app where one applies), with the
values the run's records say. The sweep's gauges are checked against a state built on
purpose, under a controlled clock."""

from __future__ import annotations

from typing import Any

import pytest
from baton.cancellation import cancel_task
from baton.observability import (
    ATTEMPTS_TIMED_OUT,
    BACKLOG,
    CALLBACKS,
    CAPACITY,
    DISPATCH_ACCEPTED,
    DISPATCH_BUSY,
    DISPATCH_FAILED,
    DISPATCH_REJECTED,
    NAMESPACE,
    OLDEST_PENDING_AGE_SECONDS,
    PAUSED,
    PENDING,
    QUEUE_WAIT_SECONDS,
    QUEUED,
    RUN_TIME_SECONDS,
    RUNNING,
    SATURATED,
    TASK_OUTCOMES,
)
from baton.pausing import pause_algorithm

from tests.support.algorithm_service import AlgorithmService
from tests.support.aws import AwsResources
from tests.support.clock import ShiftableClock
from tests.support.emf import Metrics, emf_documents
from tests.support.events import schedule_event, sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.runtime import RuntimeFactory
from tests.support.waiting import wait_for

OCR = {"service": "baton", "algorithm": "ocr"}


def _algorithm(service: AlgorithmService, name: str, cap: int) -> dict[str, Any]:
    return {
        "endpoint": service.endpoint(name),
        "max_concurrency": cap,
        "timeout_seconds": 3600,
        "max_timeout_seconds": 7200,
        "max_attempts": 3,
    }


def _send(handlers: Handlers, *bodies: str) -> None:
    answer = handlers.invoke("intake", sqs_event(*(sqs_record(body) for body in bodies)))
    assert answer == {"batchItemFailures": []}


def test_dispatches_outcomes_timeouts_and_times_per_algorithm_and_app(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given one algorithm with room for every task at once
    runtime = make_runtime(algorithms={"ocr": _algorithm(algorithm_service, "ocr", 8)})
    capsys.readouterr()

    # When a task starts and is cancelled while it runs
    _send(handlers, task_body(idempotency_key="cancel", input={"test": {"outcome": "silent"}}))
    cancelled = runtime.repository.find_task("contracts", "cancel")
    assert cancelled is not None
    wait_for(lambda: len(algorithm_service.requests) == 1)
    cancel_task(runtime, cancelled.id, "no longer needed")

    # and tasks that succeed, are rejected, fail once, are busy once and time out arrive
    # (one of them from another app)
    tests: dict[str, dict[str, Any]] = {
        "ok": {},
        "rejected": {"dispatch_status": [400]},
        "failed-once": {"dispatch_status": [500, 202]},
        "busy-once": {"dispatch_status": [429, 202], "retry_after": "1"},
        "silent": {"outcome": "silent"},
    }
    bodies = [
        task_body(
            idempotency_key=key,
            input={"test": test},
            **({"timeout_seconds": 1, "max_attempts": 1} if key == "silent" else {}),
        )
        for key, test in tests.items()
    ]
    bodies.append(task_body(app="portal", idempotency_key="portal-ok"))
    _send(handlers, *bodies)

    # and time passes, the schedules run, until every task is final (the portal's
    # notification goes to a queue of its own)
    def all_notified() -> bool:
        clock.advance(2)
        handlers.invoke("sweep", schedule_event("sweep"))
        handlers.invoke("dispatch", schedule_event("dispatch"))
        portal = runtime.repository.find_task("portal", "portal-ok")
        finished = portal is not None and portal.notified_at is not None
        return finished and len(aws.notifications()) >= 6

    wait_for(all_notified, timeout=60)
    algorithm_service.wait_idle()
    stdout = capsys.readouterr().out
    emitted = Metrics(stdout)

    # Then the dispatches are counted by outcome, per algorithm and per app
    assert emitted.total(DISPATCH_ACCEPTED.name, **OCR) == 6
    assert emitted.total(DISPATCH_REJECTED.name, **OCR) == 1
    assert emitted.total(DISPATCH_FAILED.name, **OCR) == 1
    assert emitted.total(DISPATCH_BUSY.name, **OCR) == 1
    assert emitted.total(DISPATCH_ACCEPTED.name, **OCR, app="portal") == 1
    assert emitted.total(DISPATCH_ACCEPTED.name, **OCR, app="contracts") == 5
    # and the timeout, per algorithm and app, and in the service total the alarm reads
    assert emitted.total(ATTEMPTS_TIMED_OUT.name, **OCR) == 1
    assert emitted.total(ATTEMPTS_TIMED_OUT.name, **OCR, app="contracts") == 1
    assert emitted.total(ATTEMPTS_TIMED_OUT.name, service="baton") == 1
    assert emitted.total(CALLBACKS.name, service="baton") == 4
    # and every outcome once
    outcomes = {status: emitted.total(spec.name, **OCR) for status, spec in TASK_OUTCOMES.items()}
    assert outcomes == {"succeeded": 4, "failed": 1, "timed_out": 1, "cancelled": 1}
    assert emitted.total(TASK_OUTCOMES["succeeded"].name, **OCR, app="portal") == 1

    # and each dispatched task's queue wait and run time, as its record has them
    waits, runs = [], []
    for app, key in [("contracts", "cancel"), ("portal", "portal-ok")] + [
        ("contracts", key) for key in tests
    ]:
        task = runtime.repository.find_task(app, key)
        assert task is not None
        assert task.first_dispatched_at is not None
        assert task.finished_at is not None
        waits.append((task.first_dispatched_at - task.created_at).total_seconds())
        runs.append((task.finished_at - task.first_dispatched_at).total_seconds())
    assert sorted(emitted.values(QUEUE_WAIT_SECONDS.name, **OCR)) == pytest.approx(sorted(waits))
    assert sorted(emitted.values(RUN_TIME_SECONDS.name, **OCR)) == pytest.approx(sorted(runs))
    assert max(runs) >= 2, "the retried tasks ran across the clock's steps"
    # and every document is in the configured namespace, with its units
    documents = emf_documents(stdout)
    assert {d["_aws"]["CloudWatchMetrics"][0]["Namespace"] for d in documents} == {NAMESPACE}
    units = {point.name: point.unit for point in emitted.points}
    assert units[QUEUE_WAIT_SECONDS.name] == units[RUN_TIME_SECONDS.name] == "Seconds"


def test_the_sweep_publishes_each_algorithms_gauges(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    clock: ShiftableClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given ocr (cap 4) running a task of cost 2, nlp (cap 1) full, cv paused, and
    # one ready task per app and algorithm at most (the rest stays pending)
    runtime = make_runtime(
        algorithms={
            "ocr": _algorithm(algorithm_service, "ocr", 4),
            "nlp": _algorithm(algorithm_service, "nlp", 1),
            "cv": _algorithm(algorithm_service, "cv", 2),
        },
        ready_queue_depth=1,
    )
    silent = {"test": {"outcome": "silent"}}
    _send(
        handlers,
        task_body(idempotency_key="r-ocr", cost=2, input=silent),
        task_body(algorithm="nlp", idempotency_key="r-nlp", input=silent),
    )
    wait_for(lambda: len(algorithm_service.requests) == 2)
    pause_algorithm(runtime, "cv", "maintenance")

    # When tasks too large for the room left arrive, the oldest 5 minutes before the
    # sweep, and one more for nlp and one for the paused cv
    _send(handlers, task_body(idempotency_key="ocr-0", cost=3))
    clock.advance(60)
    _send(
        handlers,
        *(task_body(idempotency_key=f"ocr-{n}", cost=3) for n in (1, 2, 3)),
        task_body(algorithm="nlp", idempotency_key="nlp-1"),
        task_body(algorithm="cv", idempotency_key="cv-1"),
    )
    clock.advance(240)
    capsys.readouterr()
    handlers.invoke("sweep", schedule_event("sweep"))
    emitted = Metrics(capsys.readouterr().out)

    # Then ocr: 3 pending, 1 queued, cost 2 in flight of 4, not paused, not saturated,
    # the oldest waiting for 5 minutes (and the few seconds the test took)
    ocr = {spec.name: emitted.last(spec.name, **OCR) for spec in (PENDING, QUEUED, BACKLOG)}
    assert ocr == {"Pending": 3, "Queued": 1, "Backlog": 4}
    assert emitted.last(RUNNING.name, **OCR) == 2
    assert emitted.last(CAPACITY.name, **OCR) == 4
    assert emitted.last(PAUSED.name, **OCR) == 0
    assert emitted.last(SATURATED.name, **OCR) == 0
    age = emitted.last(OLDEST_PENDING_AGE_SECONDS.name, **OCR)
    assert 300 <= age < 360
    # and nlp is full with a task that could start: saturated
    nlp = {"service": "baton", "algorithm": "nlp"}
    assert (emitted.last(RUNNING.name, **nlp), emitted.last(CAPACITY.name, **nlp)) == (1, 1)
    assert emitted.last(BACKLOG.name, **nlp) == 1
    assert emitted.last(SATURATED.name, **nlp) == 1
    assert 240 <= emitted.last(OLDEST_PENDING_AGE_SECONDS.name, **nlp) < 300
    # and cv is paused, its waiting task no saturation
    cv = {"service": "baton", "algorithm": "cv"}
    assert emitted.last(PAUSED.name, **cv) == 1
    assert emitted.last(BACKLOG.name, **cv) == 1
    assert emitted.last(SATURATED.name, **cv) == 0
    # and the service totals the alarms read
    assert emitted.total(CAPACITY.name, service="baton") == 7
    assert max(emitted.values(SATURATED.name, service="baton")) == 1
    assert max(emitted.values(OLDEST_PENDING_AGE_SECONDS.name, service="baton")) == age
    # and no gauge carries an app
    assert not [p for p in emitted.points if p.name == PENDING.name and "app" in p.dimension_names]
