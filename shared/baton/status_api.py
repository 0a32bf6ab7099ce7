"""The status API's routes (REST, payload 1.0, ``AWS_IAM`` authorization): business
apps and operators look a task up by id or by its app's idempotency key.

A Powertools router that ``callback_api`` includes, so both APIs share one function,
one runtime and the one place where domain errors become answers
(``callback_api.answer_api_error``). API Gateway has checked the SigV4 signature
before the function runs; who the caller is comes from
``requestContext.identity.userArn``, and what it may see is ``callers.access_of``'s
to decide. Idempotency keys travel in the query string, never in the path: a key may
hold ``/``, ``?`` or ``%``.
"""

from __future__ import annotations

from typing import cast

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from pydantic import BaseModel, TypeAdapter, ValidationError

from baton.contracts import IdempotencyKey
from baton.errors import InvalidRequest
from baton.runtime import Runtime
from baton.status import look_up_task, look_up_task_by_key

router = Router()  # type: ignore[no-untyped-call]  # Powertools leaves it untyped

ROUTES = ("GET /tasks/{task_id}", "GET /apps/{app}/tasks?idempotency_key=...")
"""What the not-found answer lists (the cancel routes join these)."""

_KEY: TypeAdapter[str] = TypeAdapter(IdempotencyKey)


def _runtime() -> Runtime:
    runtime: Runtime = router.context["runtime"]
    return runtime


def _event() -> APIGatewayProxyEvent:
    return cast("APIGatewayProxyEvent", router.current_event)


def _caller() -> str | None:
    """The SigV4-authenticated caller's ARN, as API Gateway reports it."""
    return _event().request_context.identity.user_arn


def _query_value(name: str) -> str:
    """The one value of a query parameter. Two make the request ambiguous (a proxy may
    read one and Baton the other), so they are refused like none."""
    values = (_event().multi_value_query_string_parameters or {}).get(name) or []
    if not values:
        single = (_event().query_string_parameters or {}).get(name)
        values = [single] if single is not None else []
    if len(values) != 1:
        problem = "required" if not values else "given more than once"
        raise InvalidRequest(f"{name}: {problem} in the query string")
    return values[0]


def _json(model: BaseModel) -> Response[str]:
    return Response(
        status_code=200, content_type=content_types.APPLICATION_JSON, body=model.model_dump_json()
    )


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


# The cancel routes (POST /tasks/<task_id>/cancel, POST /apps/<app>/tasks/cancel) go
# here, each one call into ``baton``: ``access_of(runtime.config, _caller())``, then
# ``visible_task`` (or the app check of ``look_up_task_by_key``) before cancelling, so a
# task of another app is a 404 there as here. Their paths join ROUTES, template.yaml's
# DefinitionBody (with the same sigv4 security) and ``openapi.status_api_paths``.
