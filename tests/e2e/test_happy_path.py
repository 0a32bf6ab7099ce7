"""The whole lifecycle through the real handlers: SQS intake, fast-path dispatch to an
algorithm on loopback, its upload to S3 and callback through the API, and the
business app's notification with a working result URL."""

from __future__ import annotations

from collections import Counter

import urllib3

from tests.support.algorithm_service import AlgorithmService
from tests.support.aws import AwsResources
from tests.support.events import schedule_event, sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.runtime import RuntimeFactory
from tests.support.waiting import wait_for


def test_tasks_of_two_algorithms_finish_under_their_caps(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
) -> None:
    # Given two algorithms with caps 2 and 3 and tasks that take a moment each
    make_runtime()
    bodies = [
        task_body(
            algorithm=algorithm,
            idempotency_key=f"{algorithm}-{n}",
            input={"document": f"doc-{n}", "test": {"run_seconds": 0.1}},
            metadata={"n": n},
        )
        for algorithm in ("ocr", "nlp")
        for n in range(8)
    ]

    # When the business app's messages arrive in batches of the real SQS shape
    for start in range(0, len(bodies), 5):
        answer = handlers.invoke(
            "intake", sqs_event(*(sqs_record(body) for body in bodies[start : start + 5]))
        )
        assert answer == {"batchItemFailures": []}

    # Then every task finishes with one notification, driven by callbacks alone, plus
    # the scheduled safety net in case a callback's fast path found no free slot.
    def all_notified() -> bool:
        handlers.invoke("dispatch", schedule_event("dispatch"))
        return len(aws.notifications()) >= len(bodies)

    wait_for(all_notified)
    algorithm_service.wait_idle()
    notifications = aws.notifications(wait_seconds=1)
    assert Counter(n["status"] for n in notifications) == {"succeeded": 16}
    assert len({n["notification_id"] for n in notifications}) == 16
    assert len({n["task_id"] for n in notifications}) == 16
    assert algorithm_service.max_in_flight["ocr"] <= 2
    assert algorithm_service.max_in_flight["nlp"] <= 3
    assert algorithm_service.max_in_flight["nlp"] >= 2, "the cap was never used"
    assert algorithm_service.overlaps == []

    # And the result URL in the notification reads the algorithm's upload
    sample = notifications[0]
    assert sample["result"]["key"].startswith(f"results/{sample['algorithm']}/{sample['task_id']}/")
    download = urllib3.request("GET", sample["result"]["url"])
    assert download.status == 200
    assert b"words" in download.data
    assert sample["metadata"]["n"] in range(8)
