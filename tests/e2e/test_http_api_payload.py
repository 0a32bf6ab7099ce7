"""The callback function behind an HTTP API (ApiKind HTTP): payload 2.0 events, built
from events/callback-http.json and status-http.json, through the real handler. Each
request is also sent as its REST (payload 1.0) twin where it changes nothing, and the
two answers must be the same status and the same body bytes: the kind of API Gateway
in front is not something a caller of Baton can tell from its answers."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from baton.callback_api import resolver_for
from baton.contracts import TaskView
from baton.records import TaskStatus
from baton.runtime import Runtime

from tests.support.algorithm_service import AlgorithmService
from tests.support.events import (
    api_event,
    http_api_event,
    sample_event,
    sqs_event,
    sqs_record,
    task_body,
)
from tests.support.handlers import Handlers
from tests.support.logs import captured_log_lines
from tests.support.runtime import RuntimeFactory
from tests.support.status_api import role_arn, status_event
from tests.support.waiting import wait_for

SENDER = "AROAEXAMPLEROLEID123"  # the sample events' SenderId
OWNER = role_arn("contracts-portal")
OTHER_APP = role_arn("billing-portal")
APPS = {
    "contracts": {"senders": [SENDER], "principals": [OWNER]},
    "billing": {"senders": [SENDER], "principals": [OTHER_APP]},
}
SILENT = {"test": {"outcome": "silent"}}


@pytest.fixture
def running(
    make_runtime: RuntimeFactory, handlers: Handlers, algorithm_service: AlgorithmService
) -> tuple[Runtime, dict[str, Any]]:
    """One task of the app 'contracts' whose first attempt is running."""
    runtime = make_runtime(apps=json.dumps(APPS))
    body = task_body(idempotency_key="http-1", input=SILENT)
    assert handlers.invoke("intake", sqs_event(sqs_record(body))) == {"batchItemFailures": []}
    (request,) = wait_for(lambda: algorithm_service.requests)
    return runtime, request


def _callback(task_id: str, body: Any, token: str, route: str = "callback") -> dict[str, Any]:
    raw = body if isinstance(body, str) else json.dumps(body)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    return api_event(f"/tasks/{task_id}/{route}", raw, headers)


def _answer(answer: dict[str, Any]) -> tuple[int, Any]:
    return int(answer["statusCode"]), json.loads(answer["body"])


def _both(handlers: Handlers, rest: dict[str, Any]) -> dict[str, Any]:
    """The answer to ``rest`` and to its payload 2.0 twin, which must be the same."""
    over_rest = handlers.invoke("callback", rest)
    over_http: dict[str, Any] = handlers.invoke("callback", http_api_event(rest))
    assert (over_http["statusCode"], over_http["body"]) == (
        over_rest["statusCode"],
        over_rest["body"],
    )
    assert over_http["headers"]["Content-Type"] == "application/json"
    assert "multiValueHeaders" not in over_http  # the 2.0 envelope, not the 1.0 one
    return over_http


def test_the_samples_are_payload_2_0_and_pick_the_http_resolver() -> None:
    callback, status = sample_event("callback-http"), sample_event("status-http")
    for event in (callback, status):
        assert event["version"] == "2.0"
        assert event["rawPath"] == f"/{event['requestContext']['stage']}" + event["routeKey"].split(
            " ", 1
        )[1].replace("{task_id}", event["pathParameters"]["task_id"])
        assert event["requestContext"]["http"]["path"] == event["rawPath"]
        assert all(name == name.lower() for name in event["headers"])
        assert type(resolver_for(event)).__name__ == "APIGatewayHttpResolver"
    assert callback["headers"]["authorization"].startswith("Bearer ")
    assert "authorizer" not in callback["requestContext"]  # no IAM on the callback routes
    iam = status["requestContext"]["authorizer"]["iam"]
    assert iam["userArn"].startswith("arn:aws:sts::123456789012:assumed-role/")
    assert type(resolver_for(sample_event("callback"))).__name__ == "APIGatewayRestResolver"


def test_a_callback_over_the_http_api_is_applied(
    running: tuple[Runtime, dict[str, Any]], handlers: Handlers
) -> None:
    runtime, request = running
    body = {"attempt": 1, "status": "failed", "error": {"code": "E1", "message": "bad scan"}}
    event = http_api_event(_callback(request["task_id"], body, request["callback"]["token"]))

    status, answer = _answer(handlers.invoke("callback", event))

    assert (status, answer["applied"], answer["status"]) == (200, True, "failed")
    task = runtime.repository.get_task(request["task_id"])
    assert task is not None
    assert task.status == TaskStatus.FAILED


def test_a_heartbeat_over_the_http_api_is_recorded(
    running: tuple[Runtime, dict[str, Any]], handlers: Handlers
) -> None:
    _, request = running
    rest = _callback(
        request["task_id"],
        {"attempt": 1, "progress": 40},
        request["callback"]["token"],
        "heartbeat",
    )

    status, answer = _answer(handlers.invoke("callback", http_api_event(rest)))

    assert status == 200
    assert answer["attempt"] == 1


def test_a_malformed_body_is_refused_alike_with_baton_s_error_shape(
    running: tuple[Runtime, dict[str, Any]], handlers: Handlers
) -> None:
    runtime, request = running
    rest = _callback(request["task_id"], '{"attempt": 1, "status": ', request["callback"]["token"])

    status, answer = _answer(_both(handlers, rest))

    assert status == 422
    assert set(answer) == {"error"}
    assert set(answer["error"]) == {"code", "message"}
    assert answer["error"]["code"] == "invalid_request"
    task = runtime.repository.get_task(request["task_id"])
    assert task is not None
    assert task.status == TaskStatus.RUNNING


def test_two_authorization_headers_are_refused_though_2_0_joins_them(
    running: tuple[Runtime, dict[str, Any]], handlers: Handlers
) -> None:
    runtime, request = running
    token = request["callback"]["token"]
    rest = _callback(request["task_id"], {"attempt": 1, "status": "succeeded"}, token)
    rest["multiValueHeaders"]["Authorization"] = [f"Bearer {token}", f"Bearer {token}"]

    status, answer = _answer(_both(handlers, rest))

    assert (status, answer["error"]["code"]) == (401, "unauthorized")
    assert "more than one Authorization header" in answer["error"]["message"]
    task = runtime.repository.get_task(request["task_id"])
    assert task is not None
    assert task.status == TaskStatus.RUNNING


def test_a_status_get_answers_the_owner_and_hides_the_task_from_another_app(
    running: tuple[Runtime, dict[str, Any]], handlers: Handlers
) -> None:
    _, request = running
    task_id = request["task_id"]

    def get(caller: str | None) -> tuple[int, Any]:
        return _answer(
            _both(handlers, status_event("/tasks/{task_id}", {"task_id": task_id}, None, caller))
        )

    status, answer = get(OWNER)
    assert status == 200
    view = TaskView.model_validate(answer)
    assert (view.task_id, view.app, view.status) == (task_id, "contracts", "running")

    # Another app's principal: as if the task did not exist.
    status, answer = get(OTHER_APP)
    assert (status, answer["error"]["code"]) == (404, "task_not_found")

    # No IAM identity at all (an HTTP API route left open by mistake): refused.
    status, answer = get(None)
    assert (status, answer["error"]["code"]) == (403, "forbidden")


def test_the_caller_comes_from_the_iam_authorizer_of_payload_2_0(
    running: tuple[Runtime, dict[str, Any]], handlers: Handlers
) -> None:
    """Guards the test above: the 2.0 event carries no ``identity`` a reader could fall
    back on, so a 200 can only come from ``authorizer.iam.userArn``."""
    _, request = running
    rest = status_event("/tasks/{task_id}", {"task_id": request["task_id"]}, None, OWNER)
    event = http_api_event(rest)
    assert "identity" not in event["requestContext"]
    assert _answer(handlers.invoke("callback", event))[0] == 200
    event["requestContext"]["authorizer"]["iam"]["userArn"] = OTHER_APP
    assert _answer(handlers.invoke("callback", event))[0] == 404


def test_a_lookup_by_key_counts_repeated_parameters_from_the_raw_query(
    running: tuple[Runtime, dict[str, Any]], handlers: Handlers
) -> None:
    def by_key(keys: list[str]) -> tuple[int, Any]:
        query = {"idempotency_key": keys}
        rest = status_event("/apps/{app}/tasks", {"app": "contracts"}, query, OWNER)
        return _answer(_both(handlers, rest))

    status, answer = by_key(["http-1"])
    assert (status, answer["idempotency_key"]) == (200, "http-1")
    # 2.0 hands both over as "http-1,http-1": still two, so still ambiguous.
    status, answer = by_key(["http-1", "http-1"])
    assert (status, answer["error"]["code"]) == (422, "invalid_request")
    assert "more than once" in answer["error"]["message"]
    # One key that holds a comma is one key (here of no task), not two.
    status, answer = by_key(["http-1,x"])
    assert (status, answer["error"]["code"]) == (404, "task_not_found")


def test_a_cancel_over_the_http_api_cancels(
    running: tuple[Runtime, dict[str, Any]], handlers: Handlers
) -> None:
    runtime, request = running
    rest = status_event("/tasks/{task_id}/cancel", {"task_id": request["task_id"]}, None, OWNER)
    rest["httpMethod"] = "POST"
    rest["requestContext"]["httpMethod"] = "POST"
    rest["body"] = json.dumps({"reason": "wrong document"})

    status, answer = _answer(handlers.invoke("callback", http_api_event(rest)))

    assert (status, answer["status"]) == (200, "cancelled")
    task = runtime.repository.get_task(request["task_id"])
    assert task is not None
    assert task.status == TaskStatus.CANCELLED


def test_an_unknown_route_is_the_same_404(
    running: tuple[Runtime, dict[str, Any]], handlers: Handlers
) -> None:
    _, request = running
    rest = api_event(f"/tasks/{request['task_id']}/explode", "{}")

    status, answer = _answer(_both(handlers, rest))

    assert (status, answer["error"]["code"]) == (404, "route_not_found")


def test_a_refusal_of_either_payload_is_logged_under_its_lambda_request_id(
    running: tuple[Runtime, dict[str, Any]], handlers: Handlers
) -> None:
    # The access log of either API kind names the Lambda request id (lambdaRequestId):
    # that, not a correlation id on every line, ties a refusal to its request.
    _, request = running
    rest = _callback(request["task_id"], "not json", request["callback"]["token"])

    with captured_log_lines(logging.INFO) as logs:  # each refusal logs a line
        handlers.invoke("callback", http_api_event(rest))
        handlers.invoke("callback", rest)

    refusals = [r for r in logs.records if str(r.get("message", "")).endswith("refused")]
    assert len(refusals) == 2
    assert all(r.get("function_request_id") for r in refusals)
    assert len({r["function_request_id"] for r in refusals}) == 2
    assert not any("correlation_id" in r for r in refusals)
