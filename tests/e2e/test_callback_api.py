"""The callback API's answers, through the real handler with API Gateway (REST,
payload 1.0) events: every authentication failure, every refusal, each with a JSON
error body, and nothing changed by a refused request."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from baton.records import TaskStatus
from baton.runtime import Runtime
from baton.tokens import TokenKeyring, issue_token

from tests.support.algorithm_service import AlgorithmService
from tests.support.aws import AwsResources
from tests.support.clock import ShiftableClock
from tests.support.events import api_event, response_headers, sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.runtime import TOKEN_SECRET, RuntimeFactory
from tests.support.waiting import wait_for

OTHER_KEY = "another-signing-key-that-is-long-enough-1234"


def call(
    handlers: Handlers,
    task_id: str,
    body: Any,
    token: str | None,
    route: str = "callback",
    scheme: str = "Bearer",
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"{scheme} {token}"
    raw = body if isinstance(body, str) else json.dumps(body)
    answer = handlers.invoke("callback", api_event(f"/tasks/{task_id}/{route}", raw, headers))
    assert response_headers(answer)["Content-Type"] == "application/json"
    return int(answer["statusCode"]), json.loads(answer["body"])


@pytest.fixture
def running(
    make_runtime: RuntimeFactory, handlers: Handlers, algorithm_service: AlgorithmService
) -> tuple[Runtime, dict[str, Any]]:
    """One task whose first attempt is running (the algorithm stays silent)."""
    runtime = make_runtime()
    handlers.invoke(
        "intake",
        sqs_event(
            sqs_record(task_body(idempotency_key="api-1", input={"test": {"outcome": "silent"}}))
        ),
    )
    (request,) = wait_for(lambda: algorithm_service.requests)
    return runtime, request


def assert_unchanged(runtime: Runtime, task_id: str, aws: AwsResources) -> None:
    task = runtime.repository.get_task(task_id)
    assert task is not None
    assert task.status == TaskStatus.RUNNING
    assert aws.notifications() == []


def test_valid_callback_is_applied(
    running: tuple[Runtime, dict[str, Any]], handlers: Handlers, aws: AwsResources
) -> None:
    runtime, request = running
    body = {"attempt": 1, "status": "failed", "error": {"code": "E1", "message": "bad scan"}}
    status, answer = call(handlers, request["task_id"], body, request["callback"]["token"])
    assert (status, answer["applied"], answer["status"]) == (200, True, "failed")
    task = runtime.repository.get_task(request["task_id"])
    assert task is not None
    assert task.status == TaskStatus.FAILED


@pytest.mark.parametrize(
    ("case", "scheme", "token_of"),
    [
        ("no header", "Bearer", None),
        ("wrong scheme", "Basic", "own"),
        ("garbage", "Bearer", "garbage"),
        ("truncated", "Bearer", "truncated"),
        ("other task", "Bearer", "other_task"),
        ("other attempt", "Bearer", "other_attempt"),
        ("expired", "Bearer", "expired"),
        ("unknown key", "Bearer", "unknown_key"),
    ],
)
def test_every_authentication_failure_is_401_with_a_json_body(
    running: tuple[Runtime, dict[str, Any]],
    handlers: Handlers,
    aws: AwsResources,
    clock: ShiftableClock,
    case: str,
    scheme: str,
    token_of: str | None,
) -> None:
    runtime, request = running
    task_id, own = request["task_id"], request["callback"]["token"]
    keys = runtime.config.token_keys
    later = clock() + timedelta(hours=1)
    tokens = {
        None: None,
        "own": own,
        "garbage": "not-a-token",
        "truncated": own[:-5],
        "other_task": issue_token(keys, str(uuid.uuid4()), 1, later),
        "other_attempt": issue_token(keys, task_id, 2, later),
        "expired": issue_token(keys, task_id, 1, clock() - timedelta(seconds=1)),
        "unknown_key": issue_token(TokenKeyring.from_secret(OTHER_KEY), task_id, 1, later),
    }
    status, answer = call(
        handlers, task_id, {"attempt": 1, "status": "succeeded"}, tokens[token_of], scheme=scheme
    )
    assert status == 401, case
    assert answer["error"]["code"] == "unauthorized"
    assert answer["error"]["message"]
    assert_unchanged(runtime, task_id, aws)


def test_token_is_checked_before_the_body(
    running: tuple[Runtime, dict[str, Any]], handlers: Handlers
) -> None:
    _, request = running
    status, _ = call(handlers, request["task_id"], "{not json", "bad-token")
    assert status == 401


def test_unknown_task_with_an_authentic_token_is_404(
    running: tuple[Runtime, dict[str, Any]], handlers: Handlers, clock: ShiftableClock
) -> None:
    runtime, _ = running
    ghost = str(uuid.uuid4())
    token = issue_token(runtime.config.token_keys, ghost, 1, clock() + timedelta(hours=1))
    status, answer = call(handlers, ghost, {"attempt": 1, "status": "succeeded"}, token)
    assert status == 404
    assert answer["error"]["code"] == "task_not_found"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("{not json", ""),
        ({"attempt": 1}, "status"),
        ({"attempt": 1, "status": "done"}, "status"),
        ({"attempt": "1", "status": "succeeded"}, "attempt"),
        ({"attempt": 1, "status": "succeeded", "extra": True}, "extra"),
        ({"attempt": 1, "status": "failed", "error": {"code": ""}}, "error"),
        ([1, 2, 3], ""),
    ],
)
def test_invalid_body_is_422_naming_the_field(
    running: tuple[Runtime, dict[str, Any]],
    handlers: Handlers,
    aws: AwsResources,
    body: Any,
    field: str,
) -> None:
    runtime, request = running
    status, answer = call(handlers, request["task_id"], body, request["callback"]["token"])
    assert status == 422
    assert answer["error"]["code"] == "invalid_request"
    assert field in answer["error"]["message"]
    assert_unchanged(runtime, request["task_id"], aws)


def test_body_over_64_kib_is_413(
    running: tuple[Runtime, dict[str, Any]], handlers: Handlers, aws: AwsResources
) -> None:
    runtime, request = running
    body = {"attempt": 1, "status": "failed", "error": {"code": "x", "message": "y" * 70_000}}
    status, answer = call(handlers, request["task_id"], body, request["callback"]["token"])
    assert status == 413
    assert answer["error"]["code"] == "payload_too_large"
    assert_unchanged(runtime, request["task_id"], aws)


def test_heartbeat_is_strict_too(
    running: tuple[Runtime, dict[str, Any]], handlers: Handlers
) -> None:
    _, request = running
    token = request["callback"]["token"]
    assert (
        call(handlers, request["task_id"], {"attempt": 1, "progress": 101}, token, "heartbeat")[0]
        == 422
    )
    assert (
        call(handlers, request["task_id"], {"attempt": 1, "eta": 5}, token, "heartbeat")[0] == 422
    )
    status, answer = call(
        handlers, request["task_id"], {"attempt": 1, "progress": 5}, token, "heartbeat"
    )
    assert status == 200
    assert answer["attempt"] == 1


def test_unknown_route_is_404_with_a_json_body(
    running: tuple[Runtime, dict[str, Any]], handlers: Handlers
) -> None:
    _, request = running
    answer = handlers.invoke("callback", api_event(f"/tasks/{request['task_id']}/explode", "{}"))
    assert answer["statusCode"] == 404
    assert json.loads(answer["body"])["error"]["code"] == "route_not_found"


def test_database_outage_is_503_with_retry_after(
    running: tuple[Runtime, dict[str, Any]], handlers: Handlers, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    runtime, request = running

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("refused"))

    monkeypatch.setattr(runtime.repository, "get_task_with_execution", refuse)
    answer = handlers.invoke(
        "callback",
        api_event(
            f"/tasks/{request['task_id']}/callback",
            json.dumps({"attempt": 1, "status": "succeeded"}),
            {"Authorization": f"Bearer {request['callback']['token']}"},
        ),
    )
    assert answer["statusCode"] == 503
    assert response_headers(answer)["Retry-After"] == "5"
    assert json.loads(answer["body"])["error"]["code"] == "unavailable"


def test_cancelled_task_refuses_its_callback_and_is_notified_once(
    running: tuple[Runtime, dict[str, Any]], handlers: Handlers, aws: AwsResources
) -> None:
    from baton.cancellation import cancel_task

    runtime, request = running
    cancel_task(runtime, request["task_id"], "customer withdrew the contract")
    assert runtime.queue.running_count("ocr") == 0
    status, answer = call(
        handlers,
        request["task_id"],
        {"attempt": 1, "status": "succeeded"},
        request["callback"]["token"],
    )
    assert status == 409
    assert answer["error"]["code"] == "outcome_conflict"
    (notification,) = wait_for(aws.notifications)
    assert notification["status"] == "cancelled"
    assert notification["error"]["message"] == "customer withdrew the contract"


def test_tokens_do_not_use_the_test_secret_in_clear(
    running: tuple[Runtime, dict[str, Any]],
) -> None:
    _, request = running
    assert TOKEN_SECRET not in request["callback"]["token"]
