"""Status API requests as API Gateway hands them to the function: REST proxy events
(payload 1.0) built from events/status.json, with the IAM identity API Gateway fills in
after checking the SigV4 signature, and the answers parsed."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

from tests.support.events import response_headers, sample_event
from tests.support.handlers import Handlers

ACCOUNT = "123456789012"


def role_arn(name: str, path: str = "/") -> str:
    return f"arn:aws:iam::{ACCOUNT}:role{path}{name}"


def session_arn(role: str, session: str = "worker-1") -> str:
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}"


def status_event(
    resource: str,
    path_parameters: dict[str, str],
    query: dict[str, list[str]] | None = None,
    caller: str | None = None,
) -> dict[str, Any]:
    """A GET of ``resource`` (``/tasks/{task_id}``, ``/apps/{app}/tasks``); ``caller``
    the ARN API Gateway authenticated (None: a request that carried no identity)."""
    event = sample_event("status")
    path = resource
    for name, value in path_parameters.items():
        path = path.replace(f"{{{name}}}", value)
    event["resource"] = resource
    event["path"] = path
    event["pathParameters"] = dict(path_parameters)
    event["queryStringParameters"] = (
        {name: values[-1] for name, values in query.items()} if query else None
    )
    event["multiValueQueryStringParameters"] = dict(query) if query else None
    context = event["requestContext"]
    context["resourcePath"] = resource
    context["path"] = f"/{context['stage']}{quote(path)}"
    context["requestId"] = str(uuid.uuid4())
    identity = context["identity"]
    if caller is None:
        for field in ("accessKey", "accountId", "caller", "user", "userArn"):
            identity[field] = None
    else:
        identity["userArn"] = caller
        identity["accountId"] = caller.split(":")[4]
    return event


def get_task(handlers: Handlers, task_id: str, caller: str | None) -> tuple[int, Any]:
    return answer_of(
        handlers.invoke(
            "callback", status_event("/tasks/{task_id}", {"task_id": task_id}, None, caller)
        )
    )


def get_task_by_key(
    handlers: Handlers, app: str, key: str | list[str] | None, caller: str | None
) -> tuple[int, Any]:
    keys = [key] if isinstance(key, str) else key
    query = {"idempotency_key": keys} if keys is not None else None
    event = status_event("/apps/{app}/tasks", {"app": app}, query, caller)
    return answer_of(handlers.invoke("callback", event))


def answer_of(answer: dict[str, Any]) -> tuple[int, Any]:
    assert response_headers(answer)["Content-Type"] == "application/json"
    return int(answer["statusCode"]), json.loads(answer["body"])


def post_cancel(
    handlers: Handlers,
    caller: str | None,
    body: dict[str, Any] | None,
    *,
    task_id: str | None = None,
    app: str | None = None,
) -> tuple[int, Any]:
    """``POST /tasks/{task_id}/cancel`` (``task_id``) or ``POST /apps/{app}/tasks/cancel``."""
    if task_id is not None:
        event = status_event("/tasks/{task_id}/cancel", {"task_id": task_id}, None, caller)
    else:
        assert app is not None
        event = status_event("/apps/{app}/tasks/cancel", {"app": app}, None, caller)
    event["httpMethod"] = "POST"
    event["requestContext"]["httpMethod"] = "POST"
    event["body"] = None if body is None else json.dumps(body)
    return answer_of(handlers.invoke("callback", event))
