"""Why a task waits, each reason produced by a real situation through the handlers and
read through the status API (``waiting`` of ``GET /apps/{app}/tasks`` and of ``GET
/tasks/{task_id}``, which is also what ``baton task why`` prints): a future
``not_before``, a backoff after a 503, a full cap, an app at its quota, an exhausted
rate limit, an endpoint cooling down, a paused algorithm, and Redis flushed and not yet
rebuilt; each with the tasks ahead of it in a known queue. ``ahead`` is checked against
the order admit.lua itself then takes the tasks in, and ``eta`` against known run times."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from baton.contracts import Waiting
from baton.models import Task
from baton.pausing import pause_algorithm
from baton.runtime import Runtime, get_runtime
from baton.waiting import explain_waiting

from tests.support.algorithm_service import AlgorithmService
from tests.support.clock import ShiftableClock
from tests.support.events import sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.runtime import RuntimeFactory
from tests.support.services import flush_prefix
from tests.support.status_api import get_task, get_task_by_key, role_arn
from tests.support.waiting import wait_for

CALLER = role_arn("contracts-portal")
SENDER = "AROAEXAMPLEROLEID123"  # the sample events' sender


def _ocr(service: AlgorithmService, cap: int = 1, **extra: Any) -> dict[str, Any]:
    return {"ocr": {"endpoint": service.endpoint("ocr"), "max_concurrency": cap, **extra}}


def _send(handlers: Handlers, key: str, app: str = "contracts", **fields: Any) -> None:
    body = task_body(app=app, idempotency_key=key, **fields)
    assert handlers.invoke("intake", sqs_event(sqs_record(body))) == {"batchItemFailures": []}


def _why(handlers: Handlers, key: str, app: str = "contracts") -> Waiting:
    """The task's ``waiting`` through the status API, by key and by id alike."""
    status, answer = get_task_by_key(handlers, app, key, CALLER)
    assert status == 200, answer
    assert answer["waiting"] is not None, f"{key} is {answer['status']}"
    by_id = get_task(handlers, answer["task_id"], CALLER)[1]["waiting"]
    waiting = Waiting.model_validate(answer["waiting"])
    assert Waiting.model_validate(by_id).model_dump(exclude={"eta", "until"}) == (
        waiting.model_dump(exclude={"eta", "until"})
    )
    # What `baton task why` prints is the same object
    task: Task | None = get_runtime().repository.find_task(app, key)
    assert task is not None
    explained = explain_waiting(get_runtime(), task)
    assert explained is not None
    assert explained.model_dump(exclude={"eta", "until"}) == waiting.model_dump(
        exclude={"eta", "until"}
    )
    return waiting


SILENT = {"test": {"outcome": "silent"}}


def test_a_task_asked_to_start_later_waits_for_not_before(
    make_runtime: RuntimeFactory, handlers: Handlers, algorithm_service: AlgorithmService
) -> None:
    make_runtime(algorithms=_ocr(algorithm_service))
    _send(handlers, "first", input={**SILENT, "n": 1})  # runs
    _send(handlers, "second", input={**SILENT, "n": 2})  # ready, older than the next
    later = datetime.now(UTC) + timedelta(hours=1)
    _send(handlers, "later", not_before=later.isoformat(), input=SILENT)

    waiting = _why(handlers, "later")

    assert waiting.reason == "not_before"
    assert waiting.until is not None
    assert abs((waiting.until - later).total_seconds()) < 1
    assert (waiting.running, waiting.max_concurrency) == (1, 1)
    assert waiting.ahead == 1  # "second" goes first
    assert waiting.eta is None  # no attempt has ended yet: no run time to go by


def test_a_task_whose_dispatch_failed_waits_for_its_backoff(
    make_runtime: RuntimeFactory, handlers: Handlers, algorithm_service: AlgorithmService
) -> None:
    # A long base: the backoff (and the endpoint's cool-down) outlasts the test.
    runtime = make_runtime(
        algorithms=_ocr(algorithm_service), backoff_base_seconds=120, backoff_max_seconds=600
    )
    _send(handlers, "flaky", input={"test": {"dispatch_status": [503, 202]}})
    _send(handlers, "younger-1", input={**SILENT, "n": 1})
    _send(handlers, "younger-2", input={**SILENT, "n": 2})

    waiting = _why(handlers, "flaky")

    assert waiting.reason == "backoff"
    assert waiting.until is not None
    assert waiting.until > runtime.clock()
    # Its place is its age's: the younger tasks queued meanwhile go after it
    assert waiting.ahead == 0
    assert _why(handlers, "younger-2").ahead == 1


def test_tasks_behind_a_full_cap_wait_for_capacity_and_count_those_ahead(
    make_runtime: RuntimeFactory, handlers: Handlers, algorithm_service: AlgorithmService
) -> None:
    make_runtime(algorithms=_ocr(algorithm_service, cap=1))
    for n in range(4):
        _send(handlers, f"doc-{n}", input={**SILENT, "n": n})

    first, last = _why(handlers, "doc-1"), _why(handlers, "doc-3")

    assert first.reason == last.reason == "capacity"
    assert (first.ahead, last.ahead) == (0, 2)
    assert (last.running, last.max_concurrency) == (1, 1)


def test_an_app_at_its_quota_waits_for_its_own_tasks(
    make_runtime: RuntimeFactory, handlers: Handlers, algorithm_service: AlgorithmService
) -> None:
    apps = {"contracts": {"senders": [SENDER], "principals": [CALLER], "max_in_flight": {"ocr": 1}}}
    make_runtime(algorithms=_ocr(algorithm_service, cap=4), apps=json.dumps(apps))
    _send(handlers, "a", input={**SILENT, "n": 1})
    _send(handlers, "b", input={**SILENT, "n": 2})
    _send(handlers, "c", input={**SILENT, "n": 3})

    waiting = _why(handlers, "c")

    assert waiting.reason == "app_limit"
    assert (waiting.running, waiting.max_concurrency) == (1, 4)
    assert waiting.ahead == 1


def test_a_task_waits_for_the_rate_limit(
    make_runtime: RuntimeFactory, handlers: Handlers, algorithm_service: AlgorithmService
) -> None:
    limit = {"requests": 1, "per_seconds": 60, "burst": 1}
    runtime = make_runtime(algorithms=_ocr(algorithm_service, cap=4, rate_limit=limit))
    for n in range(4):
        _send(handlers, f"r-{n}", input={**SILENT, "n": n})

    waiting = _why(handlers, "r-3")

    assert len(algorithm_service.requests) == 1
    assert waiting.reason == "rate_limit"
    assert waiting.until is not None
    assert 50 < (waiting.until - runtime.clock()).total_seconds() <= 60
    assert waiting.ahead == 2


def test_a_task_waits_while_the_endpoint_cools_down(
    make_runtime: RuntimeFactory, handlers: Handlers, algorithm_service: AlgorithmService
) -> None:
    runtime = make_runtime(algorithms=_ocr(algorithm_service, cap=4))
    algorithm_service.refuse("ocr", seconds=600, status=503, retry_after=30)
    _send(handlers, "a", input={**SILENT, "n": 1})
    _send(handlers, "b", input={**SILENT, "n": 2})
    _send(handlers, "c", input={**SILENT, "n": 3})

    waiting = _why(handlers, "c")

    assert waiting.reason == "cooling_down"
    assert waiting.until is not None
    assert 20 < (waiting.until - runtime.clock()).total_seconds() <= 30
    assert waiting.ahead == 1  # "b"; "a" was refused and waits until then too


def test_a_task_of_a_paused_algorithm_waits_for_the_resume(
    make_runtime: RuntimeFactory, handlers: Handlers, algorithm_service: AlgorithmService
) -> None:
    runtime = make_runtime(algorithms=_ocr(algorithm_service))
    pause_algorithm(runtime, "ocr", "maintenance")
    _send(handlers, "a", input={**SILENT, "n": 1})
    _send(handlers, "b", input={**SILENT, "n": 2})

    waiting = _why(handlers, "b")

    assert waiting.reason == "paused"
    assert "operator" in waiting.detail
    assert waiting.ahead == 1
    assert waiting.eta is None  # a pause has no known end


def test_a_task_waits_while_redis_is_rebuilt(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    redis_client: redis.Redis,
    key_prefix: str,
) -> None:
    make_runtime(algorithms=_ocr(algorithm_service))
    for n in range(4):
        _send(handlers, f"q-{n}", input={**SILENT, "n": n})
    flush_prefix(redis_client, key_prefix)

    waiting = _why(handlers, "q-3")

    assert waiting.reason == "recovering"
    # The ready queues are gone from Redis: counted from the database, as reconcile
    # will restore them ("q-0" runs; "q-1" and "q-2" go first)
    assert waiting.ahead == 2


def test_ahead_is_the_order_admission_then_takes_them_in(
    make_runtime: RuntimeFactory, handlers: Handlers, algorithm_service: AlgorithmService
) -> None:
    """Two apps of weights 2 and 1 behind a full cap, with priorities: each queued task's
    ``ahead`` is its place in the order admit.lua takes them once there is room."""
    apps = {
        "portal": {"senders": [SENDER], "principals": [CALLER], "weight": 2},
        "bulk": {"senders": [SENDER], "principals": [CALLER], "weight": 1},
    }
    make_runtime(algorithms=_ocr(algorithm_service, cap=1), apps=json.dumps(apps))
    _send(handlers, "bulk-0", app="bulk", input={**SILENT, "n": 0})  # takes the one slot
    plan = [("bulk", 0), ("portal", 0), ("bulk", 0), ("portal", 5), ("bulk", 9), ("portal", 0)]
    plan += [("bulk", 0), ("portal", 0), ("bulk", 0), ("portal", 0)]
    keys = []
    for n, (app, priority) in enumerate(plan, start=1):
        keys.append((app, f"{app}-{n}"))
        _send(handlers, f"{app}-{n}", app=app, priority=priority, input={**SILENT, "n": n})
    predicted: dict[str, int] = {}
    for app, key in keys:
        ahead = _why(handlers, key, app).ahead
        assert ahead is not None
        predicted[key] = ahead
    assert sorted(predicted.values()) == list(range(len(plan)))  # one place each

    # Room for all of them: the next admission takes every one, in the policy's order.
    runtime = make_runtime(algorithms=_ocr(algorithm_service, cap=50), apps=json.dumps(apps))
    runtime.policy.write(runtime.config, "ocr")
    admitted = runtime.queue.admit("ocr", runtime.clock() + timedelta(minutes=5), 50)

    order = [_key_of(runtime, slot.task_id) for slot in admitted.slots]
    assert order == sorted(predicted, key=lambda key: predicted[key])
    # (not the order they came in: the weights and the priorities reorder them)
    assert order != [key for _, key in keys]
    assert order.index("bulk-5") < order.index("bulk-1")  # priority first, within an app


def _key_of(runtime: Runtime, task_id: str) -> str:
    task = runtime.repository.get_task(task_id)
    assert task is not None
    return task.idempotency_key


def test_eta_comes_from_the_recent_run_times(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    clock: ShiftableClock,
) -> None:
    make_runtime(algorithms=_ocr(algorithm_service, cap=1))
    _send(handlers, "timed", input=SILENT, max_attempts=1)
    (request,) = wait_for(lambda: algorithm_service.requests)
    clock.advance(40)  # it runs 40 s
    failed = {"attempt": 1, "status": "failed", "error": {"code": "e", "message": "m"}}
    assert algorithm_service.call_back(request, failed).http_status == 200
    for n in range(3):  # one runs, two wait
        _send(handlers, f"after-{n}", input={**SILENT, "n": n})

    waiting = _why(handlers, "after-2")

    assert (waiting.reason, waiting.ahead) == ("capacity", 1)
    assert waiting.eta is not None
    # "after-1" runs its 40 s, then this one: 80 s from now
    expected = clock() + timedelta(seconds=80)
    assert abs((waiting.eta - expected).total_seconds()) < 2
