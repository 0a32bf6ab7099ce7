"""The status API's routes (``AWS_IAM`` authorization; REST payload 1.0 or HTTP API
payload 2.0, whichever ``callback_api`` was handed): business apps and operators look
a task up, or cancel it, by id or by its app's idempotency key (a cancel does what the
cancel message does: ``baton.cancellation``).

A Powertools router that ``callback_api`` includes, so both APIs share one function,
one runtime and the one place where domain errors become answers
(``callback_api.answer_api_error``). API Gateway has checked the SigV4 signature
before the function runs; who the caller is comes from the event
(``callers.caller_arn``), and what it may see is ``callers.access_of``'s to decide.
Idempotency keys travel in the query string, never in the path: a key may hold ``/``,
``?`` or ``%``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar
from urllib.parse import parse_qsl

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent
from pydantic import BaseModel, TypeAdapter, ValidationError

from baton.callers import access_of, caller_arn
from baton.cancellation import CancelOutcome, CancelResult, cancel_task, cancel_task_by_key
from baton.contracts import (
    AlreadyFinalAnswer,
    CancelByKeyBody,
    CancelKeptAnswer,
    CancelTaskBody,
    ErrorDetail,
    IdempotencyKey,
)
from baton.errors import InvalidRequest, TaskNotFound
from baton.input_hygiene import check_body_size, parse_request_body, request_body_bytes
from baton.runtime import Runtime
from baton.status import look_up_task, look_up_task_by_key, task_view, visible_task

router = Router()  # type: ignore[no-untyped-call]  # Powertools leaves it untyped

ROUTES = (
    "GET /tasks/{task_id}",
    "GET /apps/{app}/tasks?idempotency_key=...",
    "POST /tasks/{task_id}/cancel",
    "POST /apps/{app}/tasks/cancel",
)
"""What the not-found answer lists."""

_KEY: TypeAdapter[str] = TypeAdapter(IdempotencyKey)
M = TypeVar("M", bound=BaseModel)


def _runtime() -> Runtime:
    runtime: Runtime = router.context["runtime"]
    return runtime


def _event() -> BaseProxyEvent:
    return router.current_event


def _caller() -> str | None:
    """The SigV4-authenticated caller's ARN, as API Gateway reports it."""
    return caller_arn(_event())


def _query_values(event: BaseProxyEvent, name: str) -> list[str]:
    if isinstance(event, APIGatewayProxyEventV2):
        # Payload 2.0 joins repeated parameters with commas, and a key may hold a comma:
        # the raw query string tells how many there were, API Gateway's own decoding
        # gives the value of the one.
        count = sum(key == name for key, _ in parse_qsl(event.raw_query_string, True))
        single = event.query_string_parameters.get(name)
        if count == 1 and single is not None:
            return [single]
        return [""] * count  # none, or several: only how many matters then
    values = event.multi_value_query_string_parameters.get(name) or []
    if not values:
        single = event.query_string_parameters.get(name)
        values = [single] if single is not None else []
    return list(values)


def _query_value(name: str) -> str:
    """The one value of a query parameter. Two make the request ambiguous (a proxy may
    read one and Baton the other), so they are refused like none."""
    values = _query_values(_event(), name)
    if len(values) != 1:
        problem = "required" if not values else "given more than once"
        raise InvalidRequest(f"{name}: {problem} in the query string")
    return values[0]


def _json(model: BaseModel, status: int = 200) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=model.model_dump_json(),
    )


def _body(model: type[M]) -> M:
    event = _event()
    raw, encoding_problem = request_body_bytes(event.body, bool(event.is_base64_encoded))
    check_body_size(raw)
    return parse_request_body(raw or b"{}", encoding_problem, model)


def _cancel_answer(runtime: Runtime, result: CancelResult) -> Response[str]:
    if result.outcome is CancelOutcome.CANCELLED and result.task is not None:
        return _json(task_view(runtime, result.task))
    if result.outcome is CancelOutcome.ALREADY_FINAL and result.task is not None:
        status = result.task.status.value
        answer = AlreadyFinalAnswer(
            error=ErrorDetail(code="already_final", message=f"the task is already {status}"),
            status=status,
        )
        return _json(answer, 409)
    raise TaskNotFound("no such task")


@router.get("/tasks/<task_id>")
def get_task(task_id: str) -> Response[str]:
    return _json(look_up_task(_runtime(), _caller(), task_id))


@router.get("/apps/<app>/tasks")
def get_task_by_key(app: str) -> Response[str]:
    try:
        key = _KEY.validate_python(_query_value("idempotency_key"))
    except ValidationError:
        raise InvalidRequest(
            "idempotency_key: printable ASCII without spaces, 1-200 characters"
        ) from None
    return _json(look_up_task_by_key(_runtime(), _caller(), app, key))


@router.post("/tasks/<task_id>/cancel")
def cancel_task_by_id(task_id: str) -> Response[str]:
    runtime = _runtime()
    access = access_of(runtime.config, _caller())
    task = visible_task(runtime, access, task_id)  # another app's task: 404, as unknown
    body = _body(CancelTaskBody)
    return _cancel_answer(runtime, cancel_task(runtime, task.id, body.reason, app=task.app))


@router.post("/apps/<app>/tasks/cancel")
def cancel_task_of_app(app: str) -> Response[str]:
    runtime = _runtime()
    access = access_of(runtime.config, _caller())
    body = _body(CancelByKeyBody)
    if not access.sees(app):
        raise TaskNotFound("no such task")
    result = cancel_task_by_key(runtime, app, body.idempotency_key, body.reason)
    if result.outcome is CancelOutcome.KEPT:
        until = runtime.clock() + timedelta(seconds=runtime.settings.cancel_retention_seconds)
        kept = CancelKeptAnswer(app=app, idempotency_key=body.idempotency_key, kept_until=until)
        return _json(kept, 202)
    return _cancel_answer(runtime, result)
