"""Cancelling through the status API, with REST proxy events carrying IAM identities:
it does what the cancel message does (``baton.cancellation``). A queued task ends
cancelled; a running one too, its attempt stopped at the algorithm; a final one is a
409 with its status; a cancel by key for a task not arrived yet is kept (202), and the
task, when it comes, is never dispatched. Another app's task is a 404, as if unknown."""

from __future__ import annotations

import json
from typing import Any

import pytest
from baton.contracts import AlreadyFinalAnswer, CancelKeptAnswer, TaskView
from baton.records import TaskStatus
from baton.runtime import Runtime

from tests.support.algorithm_service import AlgorithmService
from tests.support.aws import AwsResources
from tests.support.events import sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.runtime import RuntimeFactory
from tests.support.status_api import post_cancel, role_arn

SENDER = "AROAEXAMPLEROLEID123"  # the sample events' SenderId
OWNER = role_arn("contracts-portal")
OTHER_APP = role_arn("billing-portal")
NOBODY = role_arn("someone-else")
APPS = {
    "contracts": {"senders": [SENDER], "principals": [OWNER]},
    "billing": {"senders": [SENDER], "principals": [OTHER_APP]},
}
UNTIL_CANCELLED = {"test": {"outcome": "until_cancelled"}}


@pytest.fixture
def runtime(make_runtime: RuntimeFactory, algorithm_service: AlgorithmService) -> Runtime:
    ocr = {
        "endpoint": algorithm_service.endpoint("ocr"),
        "cancel_url": algorithm_service.cancel_url("ocr"),
        "max_concurrency": 1,
        "timeout_seconds": 600,
    }
    return make_runtime(apps=json.dumps(APPS), algorithms={"ocr": ocr})


def _submit(handlers: Handlers, key: str, **fields: Any) -> None:
    body = task_body(idempotency_key=key, **fields)
    assert handlers.invoke("intake", sqs_event(sqs_record(body))) == {"batchItemFailures": []}


def _task_id(runtime: Runtime, key: str) -> str:
    task = runtime.repository.find_task("contracts", key)
    assert task is not None
    return task.id


def _status(runtime: Runtime, key: str) -> TaskStatus:
    task = runtime.repository.find_task("contracts", key)
    assert task is not None
    return task.status


def test_cancel_a_running_and_a_queued_task_by_id_and_by_key(
    runtime: Runtime,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
) -> None:
    # Given a running task and a queued one behind it (cap 1)
    _submit(handlers, "running", input=UNTIL_CANCELLED)
    _submit(handlers, "queued", input=UNTIL_CANCELLED)
    running_id = _task_id(runtime, "running")

    # When the app's principal cancels the queued one by key, the running one by id
    by_key, keyed = post_cancel(handlers, OWNER, {"idempotency_key": "queued"}, app="contracts")
    status, answer = post_cancel(handlers, OWNER, {"reason": "withdrawn"}, task_id=running_id)

    # Then both answer 200 with the task, cancelled, and the reason as its error
    assert status == 200, answer
    view = TaskView.model_validate(answer)
    assert view.status == "cancelled"
    assert view.error is not None
    assert (view.error.code, view.error.message) == ("cancelled", "withdrawn")
    assert by_key == 200, keyed
    assert TaskView.model_validate(keyed).status == "cancelled"
    # the running attempt was stopped at the algorithm; the queued one never ran
    assert (running_id, 1) in algorithm_service.stopped_by_cancel
    assert algorithm_service.requests_for(_task_id(runtime, "queued")) == []
    # each told once
    notified = aws.notifications(wait_seconds=1)
    assert sorted(n["status"] for n in notified) == ["cancelled", "cancelled"]


def test_cancel_a_final_task_is_409_with_its_status_and_changes_nothing(
    runtime: Runtime,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
) -> None:
    # Given a task that succeeded
    _submit(handlers, "done")
    algorithm_service.wait_idle()
    assert _status(runtime, "done") == TaskStatus.SUCCEEDED

    # When it is cancelled by id (no body at all) and by key
    status, answer = post_cancel(handlers, OWNER, None, task_id=_task_id(runtime, "done"))
    by_key, keyed = post_cancel(handlers, OWNER, {"idempotency_key": "done"}, app="contracts")

    # Then both are 409 already_final with the status, and nothing changed
    for code, body in ((status, answer), (by_key, keyed)):
        assert code == 409, body
        final = AlreadyFinalAnswer.model_validate(body)
        assert (final.error.code, final.status) == ("already_final", "succeeded")
    assert _status(runtime, "done") == TaskStatus.SUCCEEDED
    assert [n["status"] for n in aws.notifications(wait_seconds=1)] == ["succeeded"]


def test_a_cancel_by_key_before_its_task_is_kept_and_answered_202(
    runtime: Runtime,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
) -> None:
    # When the app cancels a key no task has yet
    status, answer = post_cancel(
        handlers, OWNER, {"idempotency_key": "early", "reason": "changed my mind"}, app="contracts"
    )

    # Then it is kept (202), and the task, when it arrives, is never dispatched
    assert status == 202, answer
    kept = CancelKeptAnswer.model_validate(answer)
    assert (kept.app, kept.idempotency_key) == ("contracts", "early")
    _submit(handlers, "early")
    assert _status(runtime, "early") == TaskStatus.CANCELLED
    assert algorithm_service.requests == []
    assert [n["status"] for n in aws.notifications(wait_seconds=1)] == ["cancelled"]


def test_another_app_s_task_is_404_and_nobody_is_403(
    runtime: Runtime,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
) -> None:
    # Given a running task of contracts
    _submit(handlers, "mine", input=UNTIL_CANCELLED)
    task_id = _task_id(runtime, "mine")

    # When billing's principal and nobody's try to cancel it, by id and by key
    other, other_answer = post_cancel(handlers, OTHER_APP, {}, task_id=task_id)
    other_key, _ = post_cancel(handlers, OTHER_APP, {"idempotency_key": "mine"}, app="contracts")
    nobody, nobody_answer = post_cancel(handlers, NOBODY, {}, task_id=task_id)
    anonymous, _ = post_cancel(handlers, None, {}, task_id=task_id)
    bad_body, bad = post_cancel(handlers, OWNER, {"reason": 7}, task_id=task_id)

    # Then 404 (as if unknown), 403, 422, and the task runs on
    assert (other, other_key) == (404, 404), other_answer
    assert other_answer["error"]["code"] == "task_not_found"
    assert (nobody, anonymous) == (403, 403), nobody_answer
    assert bad_body == 422, bad
    assert "reason" in bad["error"]["message"]
    assert _status(runtime, "mine") == TaskStatus.RUNNING
    assert algorithm_service.cancels == []
