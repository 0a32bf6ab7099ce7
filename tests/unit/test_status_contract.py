"""The status API's contract: one definition of its shapes and of the waiting reasons
(the client SDK's), and an OpenAPI document whose status routes, and only they, take
SigV4."""

from __future__ import annotations

from typing import get_args

import baton_sdk.contracts as sdk
from baton import waiting
from baton.contracts import TaskView, Waiting
from baton.openapi import callback_api_document

DESIGN_TASK_FIELDS = {
    "task_id",
    "app",
    "algorithm",
    "idempotency_key",
    "status",
    "priority",
    "cost",
    "metadata",
    "created_at",
    "not_before",
    "first_dispatched_at",
    "finished_at",
    "attempts",
    "executions",
    "result",
    "error",
    "waiting",
}
DESIGN_REASONS = {
    "not_before",
    "backoff",
    "capacity",
    "app_limit",
    "rate_limit",
    "cooling_down",
    "paused",
    "recovering",
}


def test_the_shapes_and_the_reasons_are_the_sdks() -> None:
    assert TaskView is sdk.TaskView
    assert Waiting is waiting.Waiting is sdk.Waiting
    assert waiting.WaitingReason is sdk.WaitingReason
    assert set(get_args(sdk.WaitingReason)) == DESIGN_REASONS
    assert set(TaskView.model_fields) == DESIGN_TASK_FIELDS
    assert set(sdk.ExecutionView.model_fields) == {
        "attempt",
        "status",
        "dispatched_at",
        "deadline",
        "progress",
        "message",
        "http_status",
        "error",
    }
    assert set(Waiting.model_fields) == {
        "reason",
        "detail",
        "ahead",
        "running",
        "max_concurrency",
        "until",
        "eta",
    }
    # The result can carry the object's manifest, as the notification does
    assert {"bucket", "key", "url", "expires_at", "size", "content_type", "etag"} <= set(
        sdk.ResultLocation.model_fields
    )


def test_only_the_status_routes_are_signed_with_sigv4() -> None:
    document = callback_api_document()
    schemes = document["components"]["securitySchemes"]
    assert schemes["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    security = {
        (method, path): operation["security"]
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }
    assert security == {
        ("post", "/tasks/{task_id}/callback"): [{"callbackToken": []}],
        ("post", "/tasks/{task_id}/heartbeat"): [{"callbackToken": []}],
        ("get", "/tasks/{task_id}"): [{"sigv4": []}],
        ("get", "/apps/{app}/tasks"): [{"sigv4": []}],
        ("post", "/tasks/{task_id}/cancel"): [{"sigv4": []}],
        ("post", "/apps/{app}/tasks/cancel"): [{"sigv4": []}],
    }


def test_status_routes_answer_the_task_and_document_each_refusal() -> None:
    document = callback_api_document()
    by_id = document["paths"]["/tasks/{task_id}"]["get"]
    by_key = document["paths"]["/apps/{app}/tasks"]["get"]
    for operation in (by_id, by_key):
        answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert answer == {"$ref": "#/components/schemas/TaskView"}
        assert {"403", "404", "503"} <= set(operation["responses"])
        assert "requestBody" not in operation
    assert "422" in by_key["responses"]
    (key,) = [p for p in by_key["parameters"] if p["name"] == "idempotency_key"]
    assert (key["in"], key["required"], key["schema"]["maxLength"]) == ("query", True, 200)
    reason = document["components"]["schemas"]["Waiting"]["properties"]["reason"]
    assert set(reason["anyOf"][0]["enum"]) == DESIGN_REASONS
