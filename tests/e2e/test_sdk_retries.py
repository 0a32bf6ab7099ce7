"""The SDK's retries against the real callback handler: between the service and the
API, a proxy answers 503 with Retry-After twice, then lets a callback through to Baton
and drops the connection before the answer. ``succeed()`` waits as told, tries again,
and the outcome is applied exactly once: one succeeded task, one notification.

(The SDK's own tests retry against a scripted loopback server; this one shows that
Baton's answers to a repeat - 200 with ``applied: false`` - are what the SDK expects.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from baton.records import TaskStatus
from baton_sdk import AttemptEnded, Dispatch
from baton_sdk._http import RetryPolicy

from tests.support.algorithm_service import AlgorithmService
from tests.support.aws import AwsResources
from tests.support.events import sqs_event, sqs_record, task_body
from tests.support.faulty_proxy import FaultyProxy
from tests.support.gateway import CallbackGateway
from tests.support.handlers import Handlers
from tests.support.runtime import RuntimeFactory
from tests.support.waiting import wait_for


@pytest.fixture
def proxy(gateway: CallbackGateway) -> Iterator[FaultyProxy]:
    proxy = FaultyProxy(gateway.base_url).start()
    yield proxy
    proxy.stop()


def test_succeed_through_503s_and_a_dropped_answer_applies_once(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    proxy: FaultyProxy,
) -> None:
    # Given an attempt whose callback URL goes through the faulty proxy, received by a
    # service that works on it with the SDK (and never sleeps for real)
    runtime = make_runtime(callback_base_url=proxy.base_url)
    body = task_body(idempotency_key="retried", input={"test": {"outcome": "silent"}})
    assert handlers.invoke("intake", sqs_event(sqs_record(body))) == {"batchItemFailures": []}
    delivery = wait_for(lambda: next(iter(algorithm_service.deliveries), None))
    secrets = [one.secret for one in runtime.config.signing_keys.secrets_of("ocr")]
    slept: list[float] = []
    attempt = Dispatch.from_request(
        delivery.body, delivery.headers, secrets, retry=RetryPolicy(sleep=slept.append)
    )
    assert attempt.request.callback.url.startswith(proxy.base_url)
    attempt.upload_result(json.dumps({"words": 42}).encode(), "application/json")

    # When the callback meets two 503s with Retry-After, then an answer lost on the way
    proxy.then("503", "503", "drop")
    answer = attempt.succeed()

    # Then the SDK waited as told, tried again, and got Baton's "already applied"
    path = f"/test/tasks/{attempt.task_id}/callback"
    assert proxy.log == [
        (path, "503", 503),
        (path, "503", 503),
        (path, "drop", None),
        (path, "pass", 200),
    ]
    assert slept[:2] == [1.0, 1.0]
    assert len(slept) == 3
    # after the drop there was no Retry-After: the third retry's jittered backoff
    assert RetryPolicy().base_seconds * 2 <= slept[2] <= RetryPolicy().base_seconds * 4
    assert (answer.status, answer.applied) == ("succeeded", False)

    # And the outcome was applied once: one succeeded task, one attempt, one notification
    task = runtime.repository.get_task(attempt.task_id)
    assert task is not None
    assert (task.status, task.attempts) == (TaskStatus.SUCCEEDED, 1)
    notifications = wait_for(aws.notifications)
    assert [(n["task_id"], n["status"]) for n in notifications] == [(task.id, "succeeded")]
    assert aws.notifications(wait_seconds=1) == notifications
    # a different outcome now is refused, not applied
    with pytest.raises(AttemptEnded) as ended:
        attempt.fail("late", "changed its mind")
    assert ended.value.status == 409
