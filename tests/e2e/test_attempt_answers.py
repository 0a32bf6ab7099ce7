"""What an attempt's service and its app are told at the edges: a timeout after refused
callbacks says they were refused, a late callback while the retry waits is a stale
attempt (as once the retry runs), and a fresh upload URL keeps the lifetime cap."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from baton.runtime import Runtime

from tests.support.algorithm_service import AlgorithmService
from tests.support.aws import AwsResources
from tests.support.clock import ShiftableClock
from tests.support.events import api_event, schedule_event, sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.runtime import RuntimeFactory
from tests.support.waiting import wait_for


def submit(handlers: Handlers, body: str) -> None:
    answer = handlers.invoke("intake", sqs_event(sqs_record(body)))
    assert answer == {"batchItemFailures": []}


def post(
    handlers: Handlers, task_id: str, body: dict[str, Any], token: str, route: str = "callback"
) -> tuple[int, dict[str, Any]]:
    answer = handlers.invoke(
        "callback",
        api_event(
            f"/tasks/{task_id}/{route}", json.dumps(body), {"Authorization": f"Bearer {token}"}
        ),
    )
    return answer["statusCode"], json.loads(answer["body"])


def test_a_timeout_after_refused_callbacks_says_they_were_refused(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
) -> None:
    runtime = make_runtime()
    # Given an attempt whose service calls back "succeeded" without uploading
    submit(
        handlers,
        task_body(
            idempotency_key="refused",
            max_attempts=1,
            timeout_seconds=5,
            input={"test": {"outcome": "no_upload"}},
        ),
    )
    (refused,) = wait_for(lambda: algorithm_service.callbacks)
    assert (refused.http_status, refused.answer["error"]["code"]) == (409, "result_missing")
    request = algorithm_service.requests[0]
    task_id, token = request["task_id"], request["callback"]["token"]
    execution = runtime.repository.get_execution(task_id, 1)
    assert execution is not None
    assert (execution.refused_callbacks, execution.last_refusal) == (1, "result_missing")
    # ...then with a token that does not verify (a newer one, say, of another key)
    status, _ = post(handlers, task_id, {"attempt": 1, "status": "succeeded"}, token[:-3] + "xyz")
    assert status == 401
    # (refusals that name no active attempt of a task change nothing, and answer the same)
    for body, path_id in (
        ({"attempt": 7, "status": "succeeded"}, task_id),
        ({"attempt": 1, "status": "succeeded"}, "no-such-task"),
        ({"attempt": "1", "status": "succeeded"}, task_id),
        ({"attempt": 1, "status": "succeeded"}, "x" * 300),
    ):
        assert post(handlers, path_id, body, "not-a-token")[0] == 401
    execution = runtime.repository.get_execution(task_id, 1)
    assert execution is not None
    assert (execution.refused_callbacks, execution.last_refusal) == (2, "unauthorized")

    # When its deadline passes
    clock.advance(6)
    assert handlers.invoke("sweep", schedule_event("sweep"))["timed_out"] == 1

    # Then the app is told no callback was accepted, and why the last was not
    (notification,) = wait_for(aws.notifications)
    deadline = execution.deadline.isoformat()
    assert notification["status"] == "timed_out"
    assert notification["error"] == {
        "code": "timeout",
        "message": f"no callback accepted by the deadline {deadline}: 2 refused, the last "
        "with 401 unauthorized (its token did not verify for this task and attempt)",
    }


def test_a_silent_attempt_still_times_out_with_no_callback_by_the_deadline(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
) -> None:
    make_runtime()
    submit(
        handlers,
        task_body(
            idempotency_key="quiet",
            max_attempts=1,
            timeout_seconds=5,
            input={"test": {"outcome": "silent"}},
        ),
    )
    wait_for(lambda: algorithm_service.requests)
    algorithm_service.wait_idle()
    clock.advance(6)
    handlers.invoke("sweep", schedule_event("sweep"))
    (notification,) = wait_for(aws.notifications)
    assert notification["error"]["message"].startswith("no callback by the deadline ")


def test_a_late_callback_while_the_retry_waits_is_a_stale_attempt(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    clock: ShiftableClock,
) -> None:
    runtime = make_runtime(backoff_base_seconds="600", backoff_max_seconds="600")
    submit(
        handlers,
        task_body(idempotency_key="late", timeout_seconds=5, input={"test": {"outcome": "silent"}}),
    )
    (first,) = wait_for(lambda: algorithm_service.requests)
    algorithm_service.wait_idle()
    # Given attempt 1 timed out, and attempt 2 waits its backoff
    clock.advance(6)
    assert handlers.invoke("sweep", schedule_event("sweep"))["retrying"] == 1
    task = runtime.repository.get_task(first["task_id"])
    assert task is not None
    assert (task.status.value, task.attempts) == ("pending", 1)

    # When attempt 1 calls back late, or heartbeats
    for route, body in (
        ("callback", {"attempt": 1, "status": "succeeded"}),
        ("heartbeat", {"attempt": 1, "progress": 90}),
    ):
        status, answer = post(handlers, first["task_id"], body, first["callback"]["token"], route)
        # Then it is told the task moved on, as it will be once attempt 2 runs
        assert (status, answer["error"]["code"]) == (409, "stale_attempt")
        assert (
            answer["error"]["message"]
            == "attempt 1 is over (timed_out); the task waits for attempt 2"
        )

    clock.advance(700)
    handlers.invoke("dispatch", schedule_event("dispatch"))
    wait_for(lambda: len(algorithm_service.requests) == 2)
    status, answer = post(
        handlers,
        first["task_id"],
        {"attempt": 1, "status": "succeeded"},
        first["callback"]["token"],
    )
    assert (status, answer["error"]["code"]) == (409, "stale_attempt")


def expires_in(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["X-Amz-Expires"][0])


def test_a_fresh_upload_url_lives_no_longer_than_the_attempt_and_five_minutes(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    clock: ShiftableClock,
) -> None:
    # Given a long URL lifetime, and an attempt of 30 s that heartbeats
    runtime: Runtime = make_runtime(upload_url_ttl_seconds="3600", upload_url_refresh_seconds="600")
    submit(
        handlers,
        task_body(
            idempotency_key="beats", timeout_seconds=30, input={"test": {"outcome": "silent"}}
        ),
    )
    (request,) = wait_for(lambda: algorithm_service.requests)
    # the dispatch's URL: the timeout and five minutes
    assert expires_in(request["result"]["upload_url"]) == 330

    # When it heartbeats (its URL has less than the refresh period left)
    clock.advance(20)
    beat = algorithm_service.call_back(request, {"attempt": 1, "progress": 50}, path="heartbeat")
    assert beat.http_status == 200

    # Then the fresh URL lives until the new deadline and five minutes, not the full hour
    deadline = datetime.fromisoformat(beat.answer["deadline"])
    fresh = beat.answer["result"]
    assert expires_in(fresh["upload_url"]) == 330
    assert datetime.fromisoformat(fresh["expires_at"]) == deadline + timedelta(seconds=300)
    execution = runtime.repository.get_execution(request["task_id"], 1)
    assert execution is not None
    assert execution.upload_expires_at == deadline + timedelta(seconds=300)
