"""The callback API as an OpenAPI 3.1 document, generated from the same pydantic
models that validate the requests, so the published contract cannot drift from the
code. ``baton openapi`` prints it; docs/callback-api.openapi.json is its copy."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from baton.contracts import (
    CallbackAnswer,
    CallbackBody,
    ErrorAnswer,
    HeartbeatAnswer,
    HeartbeatBody,
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


def callback_api_document() -> dict[str, Any]:
    models: list[type[BaseModel]] = [
        CallbackBody,
        HeartbeatBody,
        CallbackAnswer,
        HeartbeatAnswer,
        ErrorAnswer,
    ]
    _, schemas = models_json_schema(
        [(model, "validation") for model in models],
        ref_template="#/components/schemas/{model}",
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Baton callback API",
            "version": "1",
            "description": "Algorithm services report the outcome of an attempt and send "
            'heartbeats. Every refusal has a JSON body {"error": {"code", "message"}}.',
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
        },
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "callbackToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "callback.token of the dispatch request: one task, one attempt",
                }
            },
        },
    }
