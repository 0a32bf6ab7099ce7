"""The callback API: routing, request limits, and the one place where domain errors
become HTTP answers with a JSON error body. The status API's routes (``status_api``)
are served alike.

The same routes and error answers serve both kinds of API Gateway the template offers
(``ApiKind``): a REST API's payload 1.0 through ``APIGatewayRestResolver``, an HTTP
API's payload 2.0 (``"version": "2.0"``) through ``APIGatewayHttpResolver``. Both
resolvers include the same two routers, so an answer's status and body are the same
bytes whichever kind asked; only the envelope (``multiValueHeaders`` or ``headers``)
differs, as each payload format requires."""

from __future__ import annotations

from typing import Any, TypeVar

import redis
from aws_lambda_powertools.event_handler import (
    APIGatewayHttpResolver,
    APIGatewayRestResolver,
    Response,
    content_types,
)
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver, Router
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent
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

router = Router()  # type: ignore[no-untyped-call]  # Powertools leaves it untyped
"""The callback routes and every error answer, for both resolvers."""

rest_app = APIGatewayRestResolver(strip_prefixes=None)
http_app = APIGatewayHttpResolver(strip_prefixes=None)
# A router reads its context from the resolver that included it last: with one dict
# for both, the runtime appended to either resolver is where every route looks.
http_app.context = rest_app.context


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


def _authorization(event: BaseProxyEvent) -> str | None:
    """The one Authorization header. Two of them make the request ambiguous (a proxy
    may check one and Baton read the other), so they are refused like a bad token."""
    header: str | None = event.headers.get("Authorization")
    if isinstance(event, APIGatewayProxyEvent):
        several = len(event.multi_value_headers.get("Authorization") or []) > 1
    else:
        # Payload 2.0 joins repeated headers with commas; a bearer token holds none.
        several = header is not None and "," in header
    if several:
        raise Unauthorized("more than one Authorization header")
    return header


def _runtime() -> Runtime:
    runtime: Runtime = router.context["runtime"]
    return runtime


def _authenticated_body(runtime: Runtime, task_id: str, model: type[M]) -> tuple[str, M]:
    """Size first, then the token's authenticity, then the body: a caller without a
    valid token learns nothing about what the body should be."""
    event = router.current_event
    raw, encoding_problem = request_body_bytes(event.body, bool(event.is_base64_encoded))
    check_body_size(raw)
    token = bearer_token(_authorization(event))
    authenticate_token(runtime.config.token_keys, token, task_id, runtime.clock())
    return token, parse_request_body(raw, encoding_problem, model)


@router.post("/tasks/<task_id>/callback")
def post_callback(task_id: str) -> Response[str]:
    """Step 12: the algorithm reports its outcome (13-16 follow in ``complete_attempt``)."""
    runtime = _runtime()
    try:
        token, body = _authenticated_body(runtime, task_id, CallbackBody)
        return _json(complete_attempt(runtime, task_id, token, body))
    except (Unauthorized, ResultMissing) as exc:
        event = router.current_event
        note_refused_callback(
            runtime, task_id, request_body_bytes(event.body, bool(event.is_base64_encoded))[0], exc
        )
        raise


@router.post("/tasks/<task_id>/heartbeat")
def post_heartbeat(task_id: str) -> Response[str]:
    runtime = _runtime()
    token, body = _authenticated_body(runtime, task_id, HeartbeatBody)
    return _json(record_heartbeat(runtime, task_id, token, body))


@router.exception_handler(ApiError)  # type: ignore[untyped-decorator]  # Powertools leaves it untyped
def answer_api_error(exc: ApiError) -> Response[str]:
    what = (
        "callback"
        if router.current_event.path.endswith(("/callback", "/heartbeat"))
        else ("status request")
    )
    logger.info(f"{what} refused", status=exc.status, code=exc.code, reason=exc.message)
    headers = {"Retry-After": "5"} if isinstance(exc, ServiceUnavailable) else None
    return _error(exc.status, exc.code, exc.message, headers)


@router.exception_handler([OperationalError, redis.ConnectionError, redis.TimeoutError])  # type: ignore[untyped-decorator]
def answer_unavailable(exc: Exception) -> Response[str]:
    logger.warning("dependency unavailable", error=type(exc).__name__)
    return _error(
        503, "unavailable", "a dependency is briefly unavailable; try again", {"Retry-After": "5"}
    )


@router.exception_handler(NotFoundError)  # type: ignore[untyped-decorator]  # a router's not_found
def answer_not_found(_exc: Exception) -> Response[str]:
    event = router.current_event
    return _error(
        404,
        "route_not_found",
        f"no route for {field_name(event.http_method, 16)} {field_name(event.path, 200)}; "
        "POST /tasks/{task_id}/callback or /tasks/{task_id}/heartbeat, " + ", ".join(STATUS_ROUTES),
    )


for _resolver in (rest_app, http_app):
    _resolver.include_router(router)
    _resolver.include_router(status_router)


def resolver_for(event: dict[str, Any]) -> ApiGatewayResolver:
    """The resolver of ``event``'s payload format: 2.0 says so in ``version`` (an HTTP
    API), 1.0 (a REST API) carries ``version`` "1.0" or none."""
    return http_app if event.get("version") == "2.0" else rest_app


def handle_api_event(runtime: Runtime, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Answer one API Gateway event; the routes receive ``runtime`` as every other
    operation does (Powertools clears the context after each event)."""
    resolver = resolver_for(event)
    resolver.append_context(runtime=runtime)  # type: ignore[no-untyped-call]  # Powertools leaves it untyped
    return resolver.resolve(event, context)
