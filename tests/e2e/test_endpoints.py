"""One algorithm served by several endpoints of different sizes, through the real
handlers: each endpoint's own cap holds, dispatch spreads the work by load, and an
endpoint that fails cools down alone while the others keep taking work."""

from __future__ import annotations

from collections import Counter
from typing import Any

from baton.runtime import Runtime

from tests.support.algorithm_service import AlgorithmService
from tests.support.aws import AwsResources
from tests.support.events import schedule_event, sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.runtime import RuntimeFactory
from tests.support.waiting import wait_for

BIG, SMALL = "ocr-big", "ocr-small"


def _two_endpoints(service: AlgorithmService) -> dict[str, Any]:
    return {
        "ocr": {
            "endpoints": [
                {"url": service.endpoint(BIG), "max_concurrency": 3},
                {"url": service.endpoint(SMALL), "max_concurrency": 1},
            ],
            "timeout_seconds": 30,
            "max_attempts": 3,
        }
    }


def _submit(handlers: Handlers, count: int, **test: Any) -> None:
    bodies = [
        task_body(idempotency_key=f"doc-{n}", input={"document": f"doc-{n}", "test": test})
        for n in range(count)
    ]
    for start in range(0, count, 10):
        records = (sqs_record(body) for body in bodies[start : start + 10])
        assert handlers.invoke("intake", sqs_event(*records)) == {"batchItemFailures": []}


def _notified(handlers: Handlers, aws: AwsResources, count: int) -> bool:
    handlers.invoke("dispatch", schedule_event("dispatch"))
    return len(aws.notifications()) >= count


def test_each_endpoint_keeps_its_own_cap_and_both_take_work(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
) -> None:
    # Given an algorithm on two endpoints with caps 3 and 1
    make_runtime(algorithms=_two_endpoints(algorithm_service))

    # When 24 tasks arrive at once
    _submit(handlers, 24, run_seconds=0.15)

    # Then all finish, neither endpoint ever had more than its cap, and the algorithm
    # never more than the sum
    wait_for(lambda: _notified(handlers, aws, 24), timeout=60)
    algorithm_service.wait_idle()
    assert Counter(n["status"] for n in aws.notifications(wait_seconds=1)) == {"succeeded": 24}
    assert algorithm_service.max_in_flight[BIG] == 3
    assert algorithm_service.max_in_flight[SMALL] == 1
    assert algorithm_service.max_cost_in_flight["ocr"] <= 4
    # the least-loaded endpoint goes first, so the big one took about three in four
    arrivals = Counter(path for _, path in algorithm_service.arrivals if path in (BIG, SMALL))
    assert arrivals[BIG] > arrivals[SMALL] > 0


def test_a_failing_endpoint_cools_down_alone(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
) -> None:
    # Given the big endpoint answering 503 with Retry-After: 3 for the next 3 seconds
    runtime: Runtime = make_runtime(algorithms=_two_endpoints(algorithm_service))
    algorithm_service.refuse(BIG, seconds=3, status=503, retry_after=3)

    # When tasks arrive (each runs a moment, so the small endpoint has work all along)
    _submit(handlers, 10, run_seconds=0.3)
    wait_for(lambda: _notified(handlers, aws, 10), timeout=60)

    # Then the big endpoint got what one admission handed it before its first answer,
    # and nothing more until its Retry-After had passed, while the small one kept
    # taking tasks in between; in the end every task succeeded
    big = algorithm_service.arrivals_at(BIG)
    small = algorithm_service.arrivals_at(SMALL)
    first = [moment for moment in big if moment - big[0] < 0.5]
    later = big[len(first) :]
    assert 1 <= len(first) <= 3
    assert later, "the big endpoint was never tried again"
    assert later[0] - first[0] >= 3 - 0.1, "sent to while cooling down"
    assert any(first[-1] < moment < later[0] for moment in small)
    assert Counter(n["status"] for n in aws.notifications(wait_seconds=1)) == {"succeeded": 10}
    assert runtime.queue.cooling_until("ocr", algorithm_service.endpoint(SMALL)) is None
