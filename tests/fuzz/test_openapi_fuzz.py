"""A schema-driven fuzz of the callback API: schemathesis generates requests from
docs/callback-api.openapi.json (valid ones and, in negative mode, invalid ones) and
sends them to the real callback handler through a small WSGI adapter that turns each
request into an API Gateway REST (payload 1.0) event. With real tokens of running
tasks, an authentic token of a task that does not exist, forged tokens and none: never
a 5xx, every status documented, every body as the document says."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import schemathesis
from baton.tokens import issue_token
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.algorithm_service import AlgorithmService
from tests.support.clock import ShiftableClock
from tests.support.database import stored_task
from tests.support.events import api_event, response_headers, sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.runtime import RuntimeFactory
from tests.support.waiting import wait_for

pytestmark = pytest.mark.fuzz

DOCUMENT_PATH = Path(__file__).resolve().parents[2] / "docs" / "callback-api.openapi.json"
MAX_EXAMPLES = 100  # per operation and generation mode
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def api_gateway_adapter(handlers: Handlers, statuses: Counter[int]) -> WsgiApp:
    """A WSGI application that does what API Gateway does in front of the function:
    the request becomes a REST proxy event (text, or base64 when the body is not
    UTF-8), the function's answer becomes the response."""

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {
            key[5:].replace("_", "-").title(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        # WSGI carries the path as latin-1 text of the raw bytes
        path = environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace")
        event = api_event(path, None, headers, method=environ["REQUEST_METHOD"])
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if query:
            event["queryStringParameters"] = {key: values[-1] for key, values in query.items()}
            event["multiValueQueryStringParameters"] = query
        try:
            event["body"], event["isBase64Encoded"] = (
                (body.decode(), False) if body else (None, False)
            )
        except UnicodeDecodeError:
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
        try:
            answer = handlers.invoke("callback", event)
        except Exception:  # what API Gateway answers when the function fails
            statuses[502] += 1
            start_response("502 Bad Gateway", [("Content-Type", "application/json")])
            return [b'{"message": "Internal server error"}']
        statuses[int(answer["statusCode"])] += 1
        payload = answer.get("body") or ""
        data = base64.b64decode(payload) if answer.get("isBase64Encoded") else payload.encode()
        start_response(f"{answer['statusCode']} -", list(response_headers(answer).items()))
        return [data]

    return application


@pytest.fixture
def identities(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    clock: ShiftableClock,
) -> dict[str, list[tuple[str, dict[str, str]]]]:
    """Per operation, the (task_id, headers) pairs requests are sent with: the real
    token of a running attempt (one task for callbacks, one for heartbeats, so that
    heartbeats keep finding a running attempt), an authentic token of a task that does
    not exist, a token of another task, a forged token, and no token at all."""
    # Upload URLs always "close to expiry": every heartbeat answer carries a fresh one
    runtime = make_runtime(upload_url_ttl_seconds="600", upload_url_refresh_seconds="600")
    silent = {"test": {"outcome": "silent"}}
    handlers.invoke(
        "intake",
        sqs_event(
            sqs_record(task_body(idempotency_key="openapi-callback", input=silent)),
            sqs_record(task_body(idempotency_key="openapi-heartbeat", input=silent)),
        ),
    )
    wait_for(lambda: len(algorithm_service.requests) == 2)
    algorithm_service.wait_idle()
    by_key = {
        stored_task(runtime.repository, request["task_id"]).idempotency_key: request
        for request in algorithm_service.requests
    }
    later = clock() + timedelta(hours=1)
    ghost = "00000000-0000-4000-8000-000000000000"
    ghost_token = issue_token(runtime.config.token_keys, ghost, 1, later)

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    result = {}
    for operation, key, other in (
        ("callback", "openapi-callback", "openapi-heartbeat"),
        ("heartbeat", "openapi-heartbeat", "openapi-callback"),
    ):
        task_id, token = by_key[key]["task_id"], by_key[key]["callback"]["token"]
        result[operation] = [
            (task_id, bearer(token)),
            (task_id, bearer(token)),  # twice: the real token is what reaches the logic
            (ghost, bearer(ghost_token)),
            (task_id, bearer(by_key[other]["callback"]["token"])),
            (task_id, bearer(token[:-8] + "AAAAAAAA")),
            (task_id, {}),
        ]
    return result


@pytest.mark.parametrize("operation", ["callback", "heartbeat"])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_requests_get_documented_answers_and_never_a_5xx(
    identities: dict[str, list[tuple[str, dict[str, str]]]],
    handlers: Handlers,
    operation: str,
    mode: GenerationMode,
) -> None:
    statuses: Counter[int] = Counter()
    app = api_gateway_adapter(handlers, statuses)
    schema = schemathesis.openapi.from_dict(json.loads(DOCUMENT_PATH.read_text()))
    schema.app = app  # every request, the checks' own probes included, goes to the adapter
    api_operation = schema[f"/tasks/{{task_id}}/{operation}"]["POST"]
    strategy = st.one_of(
        *(
            api_operation.as_strategy(
                generation_mode=mode, path_parameters={"task_id": task_id}, headers=headers
            )
            for task_id, headers in identities[operation]
        ),
        api_operation.as_strategy(generation_mode=mode),  # any task id, no token
    )

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, pin_attempt=st.booleans())
    def fuzz(case: schemathesis.Case[Any], pin_attempt: bool) -> None:
        if mode is GenerationMode.POSITIVE and pin_attempt and isinstance(case.body, dict):
            case.body["attempt"] = 1  # the running attempt: past the token, into the logic
        response = case.call()
        case.validate_response(response, checks=CHECKS, transport_kwargs={"app": app})

    fuzz()

    print(f"{operation} {mode.value}: {sum(statuses.values())} requests {dict(statuses)}")
    assert statuses[502] == 0
    assert all(status < 500 for status in statuses), statuses
    # The fuzz reached the logic, not only the token check
    assert statuses[401] > 0
    assert set(statuses) - {401}, statuses
