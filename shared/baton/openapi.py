"""The callback API and the task status API as an OpenAPI 3.1 document, generated from
the same pydantic models that validate the requests and shape the answers, so the
published contract cannot drift from the code. ``baton openapi`` prints it;
docs/callback-api.openapi.json is its copy."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from baton.contracts import (
    AlreadyFinalAnswer,
    CallbackAnswer,
    CallbackBody,
    CancelByKeyBody,
    CancelKeptAnswer,
    CancelTaskBody,
    ErrorAnswer,
    HeartbeatAnswer,
    HeartbeatBody,
    IdempotencyKey,
    TaskView,
)

_REFUSALS = {
    "401": "No token, or not the token of this task and attempt, or expired",
    "404": "No such task",
    "409": "Stale attempt, a different outcome already recorded, or the result object is missing",
    "413": "Body over 64 KiB",
    "422": "Invalid body",
    "503": "A dependency is briefly unavailable; retry after Retry-After seconds",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation(
    summary: str, body: type[BaseModel], answer: type[BaseModel], description: str
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {
            "description": description,
            "content": {"application/json": {"schema": _ref(answer)}},
        }
    }
    for status, text in _REFUSALS.items():
        responses[status] = {
            "description": text,
            "content": {"application/json": {"schema": _ref(ErrorAnswer)}},
        }
    return {
        "summary": summary,
        "security": [{"callbackToken": []}],
        "parameters": [
            {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        },
        "responses": responses,
    }


_STATUS_REFUSALS = {
    "403": "Not signed by an IAM identity (API Gateway), not allowed to invoke the API, or "
    "the caller is no app's principal and no operator",
    "404": "No such task, or a task of an app the caller may not see (the same answer)",
    "503": "A dependency is briefly unavailable; retry after Retry-After seconds",
}


def _status_operation(
    summary: str, parameters: list[dict[str, Any]], refusals: dict[str, str]
) -> dict[str, Any]:
    """A status API route: SigV4 (AWS_IAM), answered with the task."""
    responses: dict[str, Any] = {
        "200": {
            "description": "The task",
            "content": {"application/json": {"schema": _ref(TaskView)}},
        }
    }
    for status, text in sorted(refusals.items()):
        responses[status] = {
            "description": text,
            "content": {"application/json": {"schema": _ref(ErrorAnswer)}},
        }
    return {
        "summary": summary,
        "security": [{"sigv4": []}],
        "parameters": parameters,
        "responses": responses,
    }


def _cancel_operation(
    summary: str, parameter: str, body: type[BaseModel], required: bool
) -> dict[str, Any]:
    """A cancel route: as the cancel message, answered with the task once cancelled."""
    operation = _status_operation(
        summary,
        [_path_parameter(parameter)],
        {
            **_STATUS_REFUSALS,
            "413": "Body over 64 KiB",
            "422": "Invalid body (unknown fields included)",
        },
    )
    operation["responses"]["200"]["description"] = "The task, now cancelled"
    operation["responses"]["409"] = {
        "description": "The task is already final: nothing changed",
        "content": {"application/json": {"schema": _ref(AlreadyFinalAnswer)}},
    }
    operation["requestBody"] = {
        "required": required,
        "content": {"application/json": {"schema": _ref(body)}},
    }
    return operation


def _path_parameter(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def status_api_paths() -> dict[str, Any]:
    """The status API's routes: look-ups and cancels."""
    key_schema = TypeAdapter(IdempotencyKey).json_schema()
    return {
        "/tasks/{task_id}": {
            "get": _status_operation(
                "Look a task up by its id", [_path_parameter("task_id")], _STATUS_REFUSALS
            )
        },
        "/apps/{app}/tasks": {
            "get": _status_operation(
                "Look a task up by its app's idempotency key (in the query string: a key "
                "may hold /, ? and %)",
                [
                    _path_parameter("app"),
                    {
                        "name": "idempotency_key",
                        "in": "query",
                        "required": True,
                        "schema": key_schema,
                    },
                ],
                {**_STATUS_REFUSALS, "422": "No idempotency_key, more than one, or not a key"},
            )
        },
        "/tasks/{task_id}/cancel": {
            "post": _cancel_operation(
                "Cancel a task by its id (a running attempt is stopped at its algorithm)",
                "task_id",
                CancelTaskBody,
                required=False,
            )
        },
        "/apps/{app}/tasks/cancel": {"post": _by_key_cancel_operation()},
    }


def _by_key_cancel_operation() -> dict[str, Any]:
    operation = _cancel_operation(
        "Cancel an app's task by its idempotency key (in the body); a task not arrived "
        "yet is cancelled when it arrives",
        "app",
        CancelByKeyBody,
        required=True,
    )
    operation["responses"]["202"] = {
        "description": "No such task yet: the cancel is kept for it",
        "content": {"application/json": {"schema": _ref(CancelKeptAnswer)}},
    }
    return operation


def callback_api_document() -> dict[str, Any]:
    models: list[type[BaseModel]] = [
        CallbackBody,
        HeartbeatBody,
        CallbackAnswer,
        HeartbeatAnswer,
        ErrorAnswer,
        TaskView,
        CancelTaskBody,
        CancelByKeyBody,
        AlreadyFinalAnswer,
        CancelKeptAnswer,
    ]
    _, schemas = models_json_schema(
        [(model, "validation") for model in models],
        ref_template="#/components/schemas/{model}",
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Baton callback and task status API",
            "version": "1",
            "description": "Algorithm services report the outcome of an attempt and send "
            "heartbeats (bearer token); business apps and operators look tasks up (SigV4, "
            '"execute-api"). Every refusal has a JSON body {"error": {"code", "message"}}.',
        },
        "paths": {
            "/tasks/{task_id}/callback": {
                "post": _operation(
                    "Report the outcome of an attempt",
                    CallbackBody,
                    CallbackAnswer,
                    "Applied, or the same outcome was already applied (applied: false)",
                )
            },
            "/tasks/{task_id}/heartbeat": {
                "post": _operation(
                    "Extend the deadline of a running attempt and record progress",
                    HeartbeatBody,
                    HeartbeatAnswer,
                    "The new deadline, and a fresh upload URL when the old one is close to expiry",
                )
            },
            **status_api_paths(),
        },
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "callbackToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "callback.token of the dispatch request: one task, one attempt",
                },
                "sigv4": {
                    "type": "apiKey",
                    "name": "Authorization",
                    "in": "header",
                    "x-amazon-apigateway-authtype": "awsSigv4",
                    "description": "AWS Signature Version 4 (service execute-api), checked by "
                    "API Gateway (AWS_IAM); the caller must be one of the app's principals "
                    "or an operator",
                },
            },
        },
    }
