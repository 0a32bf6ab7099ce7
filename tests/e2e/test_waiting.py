"""Why a task waits, each reason produced by a real situation through the handlers:
a future ``not_before``, a backoff after a 503, a full cap (with the tasks ahead), an
app at its quota, an exhausted rate limit, an endpoint cooling down, a paused
algorithm, and Redis flushed and not yet rebuilt."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from baton.models import Task
from baton.pausing import pause_algorithm
from baton.runtime import Runtime
from baton.waiting import Waiting, explain_waiting

from tests.support.algorithm_service import AlgorithmService
from tests.support.events import sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.runtime import RuntimeFactory
from tests.support.services import flush_prefix


def _ocr(service: AlgorithmService, cap: int = 1, **extra: Any) -> dict[str, Any]:
    return {"ocr": {"endpoint": service.endpoint("ocr"), "max_concurrency": cap, **extra}}


def _send(handlers: Handlers, key: str, app: str = "contracts", **fields: Any) -> None:
    body = task_body(app=app, idempotency_key=key, **fields)
    assert handlers.invoke("intake", sqs_event(sqs_record(body))) == {"batchItemFailures": []}


def _why(runtime: Runtime, key: str, app: str = "contracts") -> Waiting:
    task: Task | None = runtime.repository.find_task(app, key)
    assert task is not None
    waiting = explain_waiting(runtime, task)
    assert waiting is not None, f"{key} is {task.status}"
    return waiting


SILENT = {"test": {"outcome": "silent"}}


def test_a_task_asked_to_start_later_waits_for_not_before(
    make_runtime: RuntimeFactory, handlers: Handlers, algorithm_service: AlgorithmService
) -> None:
    runtime = make_runtime(algorithms=_ocr(algorithm_service))
    later = datetime.now(UTC) + timedelta(hours=1)
    _send(handlers, "later", not_before=later.isoformat(), input=SILENT)

    waiting = _why(runtime, "later")

    assert waiting.reason == "not_before"
    assert waiting.until is not None
    assert abs((waiting.until - later).total_seconds()) < 1
    assert (waiting.running, waiting.max_concurrency) == (0, 1)


def test_a_task_whose_dispatch_failed_waits_for_its_backoff(
    make_runtime: RuntimeFactory, handlers: Handlers, algorithm_service: AlgorithmService
) -> None:
    runtime = make_runtime(algorithms=_ocr(algorithm_service))
    _send(handlers, "flaky", input={"test": {"dispatch_status": [503, 202]}})

    waiting = _why(runtime, "flaky")

    assert waiting.reason == "backoff"
    assert waiting.until is not None
    assert waiting.until > runtime.clock()


def test_tasks_behind_a_full_cap_wait_for_capacity_and_count_those_ahead(
    make_runtime: RuntimeFactory, handlers: Handlers, algorithm_service: AlgorithmService
) -> None:
    runtime = make_runtime(algorithms=_ocr(algorithm_service, cap=1))
    for n in range(4):
        _send(handlers, f"doc-{n}", input={**SILENT, "n": n})

    first, last = _why(runtime, "doc-1"), _why(runtime, "doc-3")

    assert first.reason == last.reason == "capacity"
    assert (first.ahead, last.ahead) == (0, 2)
    assert (last.running, last.max_concurrency) == (1, 1)


def test_an_app_at_its_quota_waits_for_its_own_tasks(
    make_runtime: RuntimeFactory, handlers: Handlers, algorithm_service: AlgorithmService
) -> None:
    apps = {
        "contracts": {
            "senders": ["AROAEXAMPLEROLEID123"],  # the sample events' sender
            "principals": [],
            "max_in_flight": {"ocr": 1},
        }
    }
    runtime = make_runtime(algorithms=_ocr(algorithm_service, cap=4), apps=json.dumps(apps))
    _send(handlers, "a", input={**SILENT, "n": 1})
    _send(handlers, "b", input={**SILENT, "n": 2})

    waiting = _why(runtime, "b")

    assert waiting.reason == "app_limit"
    assert (waiting.running, waiting.max_concurrency) == (1, 4)


def test_a_task_waits_for_the_rate_limit(
    make_runtime: RuntimeFactory, handlers: Handlers, algorithm_service: AlgorithmService
) -> None:
    limit = {"requests": 1, "per_seconds": 60, "burst": 1}
    runtime = make_runtime(algorithms=_ocr(algorithm_service, cap=4, rate_limit=limit))
    _send(handlers, "a", input={**SILENT, "n": 1})
    _send(handlers, "b", input={**SILENT, "n": 2})

    waiting = _why(runtime, "b")

    assert len(algorithm_service.requests) == 1
    assert waiting.reason == "rate_limit"
    assert waiting.until is not None
    assert 50 < (waiting.until - runtime.clock()).total_seconds() <= 60


def test_a_task_waits_while_the_endpoint_cools_down(
    make_runtime: RuntimeFactory, handlers: Handlers, algorithm_service: AlgorithmService
) -> None:
    runtime = make_runtime(algorithms=_ocr(algorithm_service, cap=4))
    algorithm_service.refuse("ocr", seconds=600, status=503, retry_after=30)
    _send(handlers, "a", input={**SILENT, "n": 1})
    _send(handlers, "b", input={**SILENT, "n": 2})

    waiting = _why(runtime, "b")

    assert waiting.reason == "cooling_down"
    assert waiting.until is not None
    assert 20 < (waiting.until - runtime.clock()).total_seconds() <= 30


def test_a_task_of_a_paused_algorithm_waits_for_the_resume(
    make_runtime: RuntimeFactory, handlers: Handlers, algorithm_service: AlgorithmService
) -> None:
    runtime = make_runtime(algorithms=_ocr(algorithm_service))
    pause_algorithm(runtime, "ocr", "maintenance")
    _send(handlers, "a", input=SILENT)

    waiting = _why(runtime, "a")

    assert waiting.reason == "paused"
    assert "operator" in waiting.detail


def test_a_task_waits_while_redis_is_rebuilt(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    redis_client: redis.Redis,
    key_prefix: str,
) -> None:
    runtime = make_runtime(algorithms=_ocr(algorithm_service))
    _send(handlers, "a", input={**SILENT, "n": 1})
    _send(handlers, "b", input={**SILENT, "n": 2})
    flush_prefix(redis_client, key_prefix)

    waiting = _why(runtime, "b")

    assert waiting.reason == "recovering"
