"""The status API through the real callback handler, with API Gateway REST proxy events
carrying the IAM identity that API Gateway fills in after checking the signature: who
may see which task (invariant 9: another app's task is a 404, as an unknown one is), the
task's shape while it runs and once it is final, and lookups by idempotency key, a key
with ``/``, ``?`` and ``%`` included."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import boto3
import pytest
from baton.contracts import TaskView
from baton.errors import SettingsError
from baton.runtime import Runtime
from baton.settings import load_settings
from baton_local.emulator.sigv4 import IamCaller, Refusal, verify
from baton_sdk import BatonClient, Forbidden, TaskNotFound

from tests.support.algorithm_service import AlgorithmService
from tests.support.events import sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.logs import captured_log_lines
from tests.support.runtime import RuntimeFactory
from tests.support.status_api import (
    answer_of,
    get_task,
    get_task_by_key,
    role_arn,
    session_arn,
    status_event,
)
from tests.support.waiting import wait_for

SENDER = "AROAEXAMPLEROLEID123"  # the sample events' SenderId
OWNER = role_arn("contracts-portal", path="/apps/")
OTHER_APP = role_arn("billing-portal")
OPERATOR = "arn:aws:iam::123456789012:user/on-call"
NOBODY = role_arn("someone-else")
ODD_KEY = "contract/17?v=2&x=%41%2F#end"
APPS = {
    "contracts": {"senders": [SENDER], "principals": [OWNER]},
    "billing": {"senders": [SENDER], "principals": [OTHER_APP]},
}
SILENT = {"test": {"outcome": "silent"}}
REGION = "eu-west-1"

Send = Callable[..., str]


@pytest.fixture
def registered(make_runtime: RuntimeFactory) -> Runtime:
    # Spaces around entries are dropped; an ARN that merely starts like a caller's is
    # not that caller.
    return make_runtime(apps=json.dumps(APPS), operator_principals=f" {OPERATOR} , {NOBODY}x")


@pytest.fixture
def send(handlers: Handlers, algorithm_service: AlgorithmService) -> Send:
    def send(key: str, app: str = "contracts", **fields: Any) -> str:
        before = len(algorithm_service.requests)
        body = task_body(app=app, idempotency_key=key, **fields)
        assert handlers.invoke("intake", sqs_event(sqs_record(body))) == {"batchItemFailures": []}
        wait_for(lambda: len(algorithm_service.requests) > before)
        return str(algorithm_service.requests[-1]["task_id"])

    return send


def test_a_running_task_as_its_app_sees_it(
    registered: Runtime, handlers: Handlers, send: Send
) -> None:
    task_id = send("running-1", input=SILENT, priority=7, metadata={"case": "17"}, cost=1)

    status, answer = get_task(handlers, task_id, OWNER)

    assert status == 200
    view = TaskView.model_validate(answer)
    assert (view.task_id, view.app, view.algorithm) == (task_id, "contracts", "ocr")
    assert (view.idempotency_key, view.status, view.priority, view.cost) == (
        "running-1",
        "running",
        7,
        1,
    )
    assert view.metadata == {"case": "17"}
    assert view.attempts == 1
    assert view.first_dispatched_at is not None
    assert view.finished_at is None
    assert view.result is None
    assert view.error is None
    assert view.waiting is None  # running: not waiting
    (execution,) = view.executions
    assert (execution.attempt, execution.status, execution.http_status) == (1, "running", 202)
    assert execution.dispatched_at is not None
    assert execution.deadline is not None
    assert execution.deadline > execution.dispatched_at
    # Every field of the design is there, null or not, and times carry an offset
    assert set(answer) == set(TaskView.model_fields)
    assert answer["created_at"].endswith(("Z", "+00:00"))


def test_a_final_task_carries_its_result_or_its_error(
    registered: Runtime,
    handlers: Handlers,
    send: Send,
    algorithm_service: AlgorithmService,
    aws: Any,
) -> None:
    done = send("done-1")
    failed = send("failed-1", input={"test": {"outcome": "failed"}}, max_attempts=1)
    wait_for(lambda: len(algorithm_service.callbacks) == 2)

    (_, ok), (_, bad) = get_task(handlers, done, OWNER), get_task(handlers, failed, OWNER)

    assert ok["status"] == "succeeded"
    assert ok["error"] is None
    assert ok["waiting"] is None
    assert ok["result"]["bucket"] == aws.bucket
    assert ok["result"]["key"].endswith(f"{done}/1/result")
    assert ok["result"]["url"].startswith("http")
    assert ok["result"]["expires_at"]
    assert ok["finished_at"] is not None
    assert bad["status"] == "failed"
    assert bad["result"] is None
    assert bad["error"]["code"]
    assert bad["executions"][0]["status"] == "failed"
    assert bad["executions"][0]["error"]["code"] == bad["error"]["code"]


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        (OWNER, 200),
        (session_arn("contracts-portal", "nightly-run"), 200),  # a session of the role
        (OPERATOR, 200),
        (session_arn("contracts-portal-2"), 403),  # a role of another name: nobody's
        (OTHER_APP, 404),  # another app's principal: as if the task did not exist
        (NOBODY, 403),
        (None, 403),  # no identity at all
    ],
)
def test_who_may_see_a_task(
    registered: Runtime, handlers: Handlers, send: Send, caller: str | None, expected: int
) -> None:
    task_id = send("seen-1", input=SILENT)

    status, answer = get_task(handlers, task_id, caller)

    assert status == expected
    if expected == 200:
        assert answer["task_id"] == task_id
    elif expected == 404:
        assert answer == {"error": {"code": "task_not_found", "message": f"no task {task_id}"}}
    else:
        assert answer["error"]["code"] == "forbidden"
        assert answer["error"]["message"]


def test_another_apps_task_is_answered_as_an_unknown_one(
    registered: Runtime, handlers: Handlers, send: Send
) -> None:
    theirs = send("theirs-1", app="billing", input=SILENT)
    unknown = "0b7f9c1e-0000-4000-8000-000000000000"

    _, for_theirs = get_task(handlers, theirs, OWNER)
    _, for_unknown = get_task(handlers, unknown, OWNER)

    assert get_task(handlers, theirs, OTHER_APP)[0] == 200
    assert for_theirs["error"]["message"].replace(theirs, "<id>") == for_unknown["error"][
        "message"
    ].replace(unknown, "<id>")
    assert for_theirs["error"]["code"] == for_unknown["error"]["code"] == "task_not_found"
    # Neither the upper-case spelling nor a padded one finds a task (MySQL compares both
    # equal under its default collation)
    assert get_task(handlers, theirs.upper(), OTHER_APP)[0] == 404
    assert get_task(handlers, theirs + " ", OTHER_APP)[0] == 404
    assert get_task(handlers, "x" * 5000, OTHER_APP)[0] == 404


def test_lookups_by_idempotency_key(registered: Runtime, handlers: Handlers, send: Send) -> None:
    task_id = send(ODD_KEY, input=SILENT)
    send(ODD_KEY, app="billing", input=SILENT)  # the same key in another app

    status, answer = get_task_by_key(handlers, "contracts", ODD_KEY, OWNER)
    assert (status, answer["task_id"], answer["idempotency_key"]) == (200, task_id, ODD_KEY)
    status, answer = get_task_by_key(handlers, "contracts", ODD_KEY, OPERATOR)
    assert (status, answer["task_id"]) == (200, task_id)
    status, answer = get_task_by_key(handlers, "billing", ODD_KEY, OTHER_APP)
    assert (status, answer["app"]) == (200, "billing")
    assert answer["task_id"] != task_id

    # Another app's, an unknown key, an unknown app: one and the same 404
    refusals = [
        get_task_by_key(handlers, "billing", ODD_KEY, OWNER),
        get_task_by_key(handlers, "contracts", ODD_KEY + "-x", OWNER),
        get_task_by_key(handlers, "nosuchapp", ODD_KEY, OWNER),
    ]
    for status, answer in refusals:
        assert status == 404
        assert answer["error"]["code"] == "task_not_found"
    assert get_task_by_key(handlers, "contracts", ODD_KEY, NOBODY)[0] == 403
    assert get_task_by_key(handlers, "contracts", ODD_KEY, None)[0] == 403


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (None, "required"),
        (["a", "b"], "more than once"),
        ("has space", "printable ASCII"),
        ("", "printable ASCII"),
        ("k" * 201, "printable ASCII"),
    ],
)
def test_a_bad_key_lookup_is_a_422(
    registered: Runtime, handlers: Handlers, key: str | list[str] | None, problem: str
) -> None:
    status, answer = get_task_by_key(handlers, "contracts", key, OWNER)

    assert status == 422
    assert answer["error"]["code"] == "invalid_request"
    assert problem in answer["error"]["message"]
    assert answer["error"]["message"].startswith("idempotency_key:")


def test_without_an_app_registry_every_iam_caller_is_allowed(
    make_runtime: RuntimeFactory, handlers: Handlers, send: Send
) -> None:
    with captured_log_lines() as logs:
        make_runtime()
        task_id = send("open-1", input=SILENT)
        for _ in range(3):
            assert get_task(handlers, task_id, NOBODY)[0] == 200

    # Said once, at the cold start, and not again on each request
    warnings = [line for line in logs.records if "status API answers every" in line["message"]]
    assert len(warnings) == 1
    assert warnings[0]["level"] == "WARNING"
    assert get_task_by_key(handlers, "contracts", "open-1", OTHER_APP)[0] == 200
    assert get_task(handlers, task_id, None)[0] == 403


def test_an_operator_list_that_is_no_list_of_arns_fails_the_cold_start() -> None:
    environ = {
        "BATON_REDIS_URL": "redis://127.0.0.1:6379",
        "BATON_RESULT_BUCKET": "bucket",
        "BATON_NOTIFICATION_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:t",
        "BATON_CALLBACK_BASE_URL": "https://example.com/dev",
        "BATON_DATABASE_URL": "sqlite://",
        "BATON_TOKEN_SECRET": "x" * 32,
        "BATON_ALGORITHMS": "{}",
    }
    assert load_settings(environ).operators == ()
    given = load_settings({**environ, "BATON_OPERATOR_PRINCIPALS": f"{OPERATOR},{OWNER},"})
    assert given.operators == (OPERATOR, OWNER)
    with pytest.raises(SettingsError, match=r"BATON_OPERATOR_PRINCIPALS: .*entry 2 is not"):
        load_settings({**environ, "BATON_OPERATOR_PRINCIPALS": f"{OPERATOR},on-call"})


def test_an_unknown_route_lists_the_status_routes(registered: Runtime, handlers: Handlers) -> None:
    event = status_event("/tasks", {}, None, OWNER)

    status, answer = answer_of(handlers.invoke("callback", event))

    assert status == 404
    assert answer["error"]["code"] == "route_not_found"
    assert "GET /tasks/{task_id}" in answer["error"]["message"]


class SignedGateway:
    """API Gateway in front of the callback handler on loopback, for an AWS_IAM route:
    the request's SigV4 signature checked (with the emulator's botocore-based check),
    then the handler called with the signer's identity. An access key per principal."""

    def __init__(self, handlers: Handlers, callers: dict[str, IamCaller]) -> None:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                gateway.forward(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.handlers = handlers
        self.callers = callers
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/dev"

    def forward(self, request: BaseHTTPRequestHandler) -> None:
        headers = list(request.headers.items())
        checked = verify("GET", request.path, headers, b"", region=REGION, callers=self.callers)
        if isinstance(checked, Refusal):
            status, body = 403, {"error": {"code": checked.response_type, "message": "no"}}
        else:
            parts = urlsplit(request.path.removeprefix("/dev"))
            segments = [unquote(part) for part in parts.path.strip("/").split("/")]
            if segments[0] == "tasks":
                resource, parameters = "/tasks/{task_id}", {"task_id": segments[1]}
            else:
                resource, parameters = "/apps/{app}/tasks", {"app": segments[1]}
            query: dict[str, list[str]] = {}
            for name, value in parse_qsl(parts.query, keep_blank_values=True):
                query.setdefault(name, []).append(value)
            event = status_event(resource, parameters, query or None, checked.arn)
            status, body = answer_of(self.handlers.invoke("callback", event))
        payload = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _sdk(gateway: SignedGateway, caller: IamCaller) -> BatonClient:
    session = boto3.session.Session(
        aws_access_key_id=caller.access_key_id,
        aws_secret_access_key=caller.secret_access_key,
        region_name=REGION,
    )
    return BatonClient("https://sqs.invalid/queue", api_url=gateway.url, session=session)


def test_the_sdk_looks_tasks_up_through_the_handler(
    registered: Runtime, handlers: Handlers, send: Send
) -> None:
    owner = IamCaller("AKIAOWNER", "owner-secret", session_arn("contracts-portal", "sdk"))
    other = IamCaller("AKIAOTHER", "other-secret", OTHER_APP)
    stranger = IamCaller("AKIASTRANGER", "stranger-secret", NOBODY)
    gateway = SignedGateway(handlers, {c.access_key_id: c for c in (owner, other, stranger)})
    try:
        task_id = send(ODD_KEY, input=SILENT)

        view = _sdk(gateway, owner).status(task_id)
        assert (view.task_id, view.status, view.idempotency_key) == (task_id, "running", ODD_KEY)
        assert _sdk(gateway, owner).status_by_key("contracts", ODD_KEY).task_id == task_id
        with pytest.raises(TaskNotFound):
            _sdk(gateway, other).status(task_id)
        with pytest.raises(TaskNotFound):
            _sdk(gateway, other).status_by_key("contracts", ODD_KEY)
        with pytest.raises(Forbidden):
            _sdk(gateway, stranger).status(task_id)
        forged = IamCaller(owner.access_key_id, "not-the-secret", owner.arn)
        with pytest.raises(Forbidden):
            _sdk(gateway, forged).status(task_id)
    finally:
        gateway.stop()
