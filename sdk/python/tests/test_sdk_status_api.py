"""The status and cancel API, SigV4-signed with the caller's credentials: a loopback
server recomputes each signature with botocore from what arrived on the wire."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.credentials import Credentials
from sdk_support import Reply, Seen, loopback, sigv4_valid

from baton_sdk import BatonClient, BatonError, Forbidden, TaskNotFound

REGION = "eu-west-1"
CREDENTIALS = Credentials("AKIDEXAMPLEPORTAL", "portal-secret-key", "session-token-123")
KEY = "doc/17?v=2&x=%41+b#end"  # every character a key may hold that a path may not
TASK: dict[str, Any] = {
    "task_id": "t-1",
    "app": "portal",
    "algorithm": "ocr",
    "idempotency_key": KEY,
    "status": "running",
    "priority": 0,
    "cost": 1,
    "metadata": {},
    "created_at": "2026-07-01T10:00:00Z",
    "not_before": "2026-07-01T10:00:00Z",
    "first_dispatched_at": "2026-07-01T10:00:01Z",
    "finished_at": None,
    "attempts": 1,
    "executions": [
        {
            "attempt": 1,
            "status": "running",
            "dispatched_at": "2026-07-01T10:00:01Z",
            "deadline": "2026-07-01T10:15:01Z",
            "progress": 40,
            "message": "page 2",
            "http_status": 202,
            "error": None,
        }
    ],
    "result": None,
    "error": None,
    "waiting": None,
}


def session(credentials: Credentials = CREDENTIALS) -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        aws_session_token=credentials.token,
        region_name=REGION,
    )


def status_api(request: Seen) -> Reply:
    """Answers like Baton's API Gateway with AWS_IAM auth: 403 unless signed."""
    if not sigv4_valid(request, CREDENTIALS, REGION, "execute-api"):
        return Reply(403, b'{"message": "The request signature we calculated does not match"}')
    if request.headers.get("x-amz-security-token") != CREDENTIALS.token:
        return Reply(403, b'{"message": "The security token included in the request is invalid"}')
    url = urlsplit(request.path)
    if request.method == "GET" and url.path == "/prod/tasks/t-1":
        return Reply(200, json.dumps(TASK).encode())
    if (
        request.method == "GET"
        and url.path == "/prod/apps/portal/tasks"
        and parse_qs(url.query) == {"idempotency_key": [KEY]}
    ):
        return Reply(200, json.dumps(TASK).encode())
    if request.method == "POST" and url.path == "/prod/tasks/t-1/cancel":
        assert json.loads(request.body) == {"reason": "withdrawn"}
        return Reply(200, json.dumps({**TASK, "status": "cancelled"}).encode())
    if request.method == "POST" and url.path == "/prod/tasks/t-2/cancel":
        return Reply(
            409,
            json.dumps(
                {"error": {"code": "already_final", "message": "it is final"}, "status": "failed"}
            ).encode(),
        )
    if request.method == "POST" and url.path == "/prod/apps/portal/tasks/cancel":
        assert json.loads(request.body) == {"idempotency_key": KEY}
        return Reply(202, b'{"kept": true}')
    return Reply(404, b'{"error": {"code": "task_not_found", "message": "no such task"}}')


def client_for(url: str, credentials: Credentials = CREDENTIALS) -> BatonClient:
    return BatonClient("unused", api_url=f"{url}/prod/", session=session(credentials))


def test_status_is_signed_and_parsed() -> None:
    with loopback(status_api) as server:
        task = client_for(server.url).status("t-1")
    assert task.status == "running"
    assert task.executions[0].progress == 40
    (seen,) = server.seen
    assert seen.headers["authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLEPORTAL/"
    )
    assert f"/{REGION}/execute-api/aws4_request" in seen.headers["authorization"]


def test_status_by_key_carries_the_key_in_the_query_string() -> None:
    with loopback(status_api) as server:
        task = client_for(server.url).status_by_key("portal", KEY)
    assert task.idempotency_key == KEY
    assert "/apps/portal/tasks?idempotency_key=" in server.seen[0].path
    assert "/" not in server.seen[0].path.partition("?")[2]


def test_a_wrong_secret_is_refused_by_the_signature_check() -> None:
    impostor = Credentials(CREDENTIALS.access_key, "not-the-key", CREDENTIALS.token)
    with loopback(status_api) as server, pytest.raises(Forbidden):
        client_for(server.url, impostor).status("t-1")


def test_unknown_task_is_task_not_found() -> None:
    with loopback(status_api) as server, pytest.raises(TaskNotFound):
        client_for(server.url).status("t-404")


def test_cancel_via_api_answers() -> None:
    with loopback(status_api) as server:
        client = client_for(server.url)
        cancelled = client.cancel_via_api("t-1", reason="withdrawn")
        final = client.cancel_via_api("t-2")
        kept = client.cancel_via_api(app="portal", idempotency_key=KEY)
    assert cancelled.outcome == "cancelled"
    assert cancelled.task is not None
    assert cancelled.task.status == "cancelled"
    assert (final.outcome, final.status) == ("already_final", "failed")
    assert kept.outcome == "kept"
    assert all(seen.headers["content-type"] == "application/json" for seen in server.seen)


def test_cancel_via_api_needs_a_target() -> None:
    with pytest.raises(ValueError, match="task_id"):
        BatonClient("unused", api_url="https://x").cancel_via_api(app="portal")


def test_without_api_url_the_status_api_is_a_clear_error() -> None:
    with pytest.raises(BatonError, match="api_url"):
        BatonClient("unused", session=session()).status("t-1")


def test_region_comes_from_an_execute_api_url() -> None:
    from baton_sdk.app import _region_of

    assert _region_of("https://abc123.execute-api.us-east-2.amazonaws.com/prod/x") == "us-east-2"
    with pytest.raises(BatonError, match="region"):
        _region_of("http://127.0.0.1:8080/prod")
