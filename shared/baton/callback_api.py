"""The callback API (REST, payload 1.0): routing, request limits, and the one place
where domain errors become HTTP answers with a JSON error body."""

from __future__ import annotations

from typing import Any, TypeVar

import redis
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import OperationalError

from baton.completion import complete_attempt, record_heartbeat
from baton.contracts import CallbackBody, ErrorAnswer, ErrorDetail, HeartbeatBody
from baton.errors import ApiError, InvalidRequest, PayloadTooLarge, ServiceUnavailable
from baton.intake import describe_validation_error
from baton.observability import logger
from baton.runtime import get_runtime
from baton.tokens import authenticate_token, bearer_token

MAX_BODY_BYTES = 64 * 1024
M = TypeVar("M", bound=BaseModel)

app = APIGatewayRestResolver(strip_prefixes=None)


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response[str]:
    body = ErrorAnswer(error=ErrorDetail(code=code, message=message)).model_dump_json()
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers
    )


def _json(model: BaseModel) -> Response[str]:
    return Response(
        status_code=200, content_type=content_types.APPLICATION_JSON, body=model.model_dump_json()
    )


def _authenticated_body(task_id: str, model: type[M]) -> tuple[str, M]:
    """Size first, then the token's authenticity, then the body: a caller without a
    valid token learns nothing about what the body should be."""
    event = app.current_event
    raw = event.decoded_body or ""
    if len(raw.encode()) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"body is over {MAX_BODY_BYTES} bytes")
    runtime = get_runtime()
    token = bearer_token(event.headers.get("Authorization") or event.headers.get("authorization"))
    authenticate_token(runtime.config.token_keys, token, task_id, runtime.clock())
    try:
        return token, model.model_validate_json(raw or "null")
    except ValidationError as exc:
        raise InvalidRequest(describe_validation_error(exc)) from None


@app.post("/tasks/<task_id>/callback")
def post_callback(task_id: str) -> Response[str]:
    token, body = _authenticated_body(task_id, CallbackBody)
    return _json(complete_attempt(get_runtime(), task_id, token, body))


@app.post("/tasks/<task_id>/heartbeat")
def post_heartbeat(task_id: str) -> Response[str]:
    token, body = _authenticated_body(task_id, HeartbeatBody)
    return _json(record_heartbeat(get_runtime(), task_id, token, body))


@app.exception_handler(ApiError)  # type: ignore[untyped-decorator]  # Powertools leaves it untyped
def answer_api_error(exc: ApiError) -> Response[str]:
    logger.info("callback refused", status=exc.status, code=exc.code, reason=exc.message)
    headers = {"Retry-After": "5"} if isinstance(exc, ServiceUnavailable) else None
    return _error(exc.status, exc.code, exc.message, headers)


@app.exception_handler([OperationalError, redis.ConnectionError, redis.TimeoutError])  # type: ignore[untyped-decorator]
def answer_unavailable(exc: Exception) -> Response[str]:
    logger.warning("dependency unavailable", error=type(exc).__name__)
    return _error(
        503, "unavailable", "a dependency is briefly unavailable; try again", {"Retry-After": "5"}
    )


@app.not_found
def answer_not_found(_exc: Exception) -> Response[str]:
    return _error(
        404,
        "route_not_found",
        f"no route for {app.current_event.http_method} {app.current_event.path}",
    )


def handle_api_event(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
