"""The callback API (REST, payload 1.0): routing, request limits, and the one place
where domain errors become HTTP answers with a JSON error body. The status API's
routes (``status_api``) are served by the same resolver, and so answered alike."""

from __future__ import annotations

from typing import Any, TypeVar

import redis
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError

from baton.completion import complete_attempt, record_heartbeat
from baton.contracts import CallbackBody, ErrorAnswer, ErrorDetail, HeartbeatBody
from baton.errors import (
    ApiError,
    ResultMissing,
    ServiceUnavailable,
    Unauthorized,
)
from baton.input_hygiene import (
    check_body_size,
    field_name,
    parse_request_body,
    request_body_bytes,
)
from baton.observability import logger
from baton.refusals import note_refused_callback
from baton.runtime import Runtime
from baton.status_api import ROUTES as STATUS_ROUTES
from baton.status_api import router as status_router
from baton.tokens import authenticate_token, bearer_token

MAX_MESSAGE_CHARS = 1024  # ErrorDetail.message
M = TypeVar("M", bound=BaseModel)

app = APIGatewayRestResolver(strip_prefixes=None)
app.include_router(status_router)


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response[str]:
    if len(message) > MAX_MESSAGE_CHARS:  # the answer must still match its own schema
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
    body = ErrorAnswer(error=ErrorDetail(code=code, message=message)).model_dump_json()
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers
    )


def _json(model: BaseModel) -> Response[str]:
    return Response(
        status_code=200, content_type=content_types.APPLICATION_JSON, body=model.model_dump_json()
    )


def _authorization(event: Any) -> str | None:
    """The one Authorization header. Two of them make the request ambiguous (a proxy
    may check one and Baton read the other), so they are refused like a bad token."""
    values = event.multi_value_headers.get("Authorization") or []
    if len(values) > 1:
        raise Unauthorized("more than one Authorization header")
    header: str | None = event.headers.get("Authorization")
    return header


def _runtime() -> Runtime:
    runtime: Runtime = app.context["runtime"]
    return runtime


def _authenticated_body(runtime: Runtime, task_id: str, model: type[M]) -> tuple[str, M]:
    """Size first, then the token's authenticity, then the body: a caller without a
    valid token learns nothing about what the body should be."""
    event = app.current_event
    raw, encoding_problem = request_body_bytes(event.body, bool(event.is_base64_encoded))
    check_body_size(raw)
    token = bearer_token(_authorization(event))
    authenticate_token(runtime.config.token_keys, token, task_id, runtime.clock())
    return token, parse_request_body(raw, encoding_problem, model)


@app.post("/tasks/<task_id>/callback")
def post_callback(task_id: str) -> Response[str]:
    """Step 12: the algorithm reports its outcome (13-16 follow in ``complete_attempt``)."""
    runtime = _runtime()
    try:
        token, body = _authenticated_body(runtime, task_id, CallbackBody)
        return _json(complete_attempt(runtime, task_id, token, body))
    except (Unauthorized, ResultMissing) as exc:
        event = app.current_event
        note_refused_callback(
            runtime, task_id, request_body_bytes(event.body, bool(event.is_base64_encoded))[0], exc
        )
        raise


@app.post("/tasks/<task_id>/heartbeat")
def post_heartbeat(task_id: str) -> Response[str]:
    runtime = _runtime()
    token, body = _authenticated_body(runtime, task_id, HeartbeatBody)
    return _json(record_heartbeat(runtime, task_id, token, body))


@app.exception_handler(ApiError)  # type: ignore[untyped-decorator]  # Powertools leaves it untyped
def answer_api_error(exc: ApiError) -> Response[str]:
    what = (
        "callback"
        if app.current_event.path.endswith(("/callback", "/heartbeat"))
        else ("status request")
    )
    logger.info(f"{what} refused", status=exc.status, code=exc.code, reason=exc.message)
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
    event = app.current_event
    return _error(
        404,
        "route_not_found",
        f"no route for {field_name(event.http_method, 16)} {field_name(event.path, 200)}; "
        "POST /tasks/{task_id}/callback or /tasks/{task_id}/heartbeat, " + ", ".join(STATUS_ROUTES),
    )


def handle_api_event(runtime: Runtime, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Answer one API Gateway event; the routes receive ``runtime`` as every other
    operation does (Powertools clears the context after each event)."""
    app.append_context(runtime=runtime)  # type: ignore[no-untyped-call]  # Powertools leaves it untyped
    return app.resolve(event, context)
