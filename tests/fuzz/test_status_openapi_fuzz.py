"""A schema-driven fuzz of the task status API: schemathesis generates requests from
docs/callback-api.openapi.json (valid ones and, in negative mode, invalid ones) for
``GET /tasks/{task_id}``, ``GET /apps/{app}/tasks`` and the two cancel routes, and sends
them to the real callback handler through a WSGI adapter that does what API Gateway does
for an AWS_IAM route: a request without a valid signature is its 403, a signed one
becomes a REST proxy event carrying the signer's identity. With the identities of the
owner app's principal, an operator, another app's principal, nobody's, and forged or
missing signatures, and with real, foreign and unknown tasks and keys: never a 5xx,
every status documented, every body as the document says."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import schemathesis
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
from tests.support.events import response_headers, sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.runtime import RuntimeFactory
from tests.support.status_api import role_arn, session_arn, status_event
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
SENDER = "AROAEXAMPLEROLEID123"  # the sample events' SenderId
OWNER = role_arn("contracts-portal")
OTHER = role_arn("billing-portal")
OPERATOR = "arn:aws:iam::123456789012:user/on-call"
NOBODY = role_arn("nobody")
KEY = "fuzz/key?x=%2F"
# What API Gateway would have verified: one signature per identity (the adapter's stand-in
# for SigV4; anything else is a bad signature).
SIGNATURES = {
    f"AWS4-HMAC-SHA256 Credential=AKIA{n}/20260101/eu-west-1/execute-api/aws4_request, "
    f"SignedHeaders=host;x-amz-date, Signature={n:064d}": arn
    for n, arn in enumerate([OWNER, session_arn("contracts-portal"), OPERATOR, OTHER, NOBODY])
}
ROUTES = [
    (re.compile(r"^/tasks/(?P<task_id>[^/]+)$"), "GET", "/tasks/{task_id}"),
    (re.compile(r"^/apps/(?P<app>[^/]+)/tasks$"), "GET", "/apps/{app}/tasks"),
    (re.compile(r"^/tasks/(?P<task_id>[^/]+)/cancel$"), "POST", "/tasks/{task_id}/cancel"),
    (re.compile(r"^/apps/(?P<app>[^/]+)/tasks/cancel$"), "POST", "/apps/{app}/tasks/cancel"),
]
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _gateway_refusal(start_response: Callable[..., Any], code: str, message: str) -> list[bytes]:
    """API Gateway's 403, through the template's DEFAULT_4XX gateway response."""
    start_response(
        "403 Forbidden", [("Content-Type", "application/json"), ("x-amzn-ErrorType", code)]
    )
    return [json.dumps({"error": {"code": code, "message": message}}).encode()]


def iam_gateway(handlers: Handlers, statuses: Counter[int]) -> WsgiApp:
    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace")
        authorization = environ.get("HTTP_AUTHORIZATION")
        method = environ["REQUEST_METHOD"]
        matched = next(
            (
                (found, resource)
                for pattern, route_method, resource in ROUTES
                if route_method == method and (found := pattern.match(path))
            ),
            None,
        )
        if matched is None:
            statuses[403] += 1  # what API Gateway answers for a resource it does not have
            return _gateway_refusal(
                start_response, "MISSING_AUTHENTICATION_TOKEN", "Missing Authentication Token"
            )
        if authorization is None:
            statuses[403] += 1
            return _gateway_refusal(
                start_response, "MISSING_AUTHENTICATION_TOKEN", "Missing Authentication Token"
            )
        caller = SIGNATURES.get(authorization)
        if caller is None:
            statuses[403] += 1
            return _gateway_refusal(
                start_response,
                "INVALID_SIGNATURE",
                "The request signature we calculated does not match the signature you provided.",
            )
        found, resource = matched
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        event = status_event(resource, found.groupdict(), query or None, caller)
        if method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length) if length else b""
            event["httpMethod"] = event["requestContext"]["httpMethod"] = "POST"
            event["body"] = raw.decode("utf-8", "replace") if raw else None
        try:
            answer = handlers.invoke("callback", event)
        except Exception:  # what API Gateway answers when the function fails
            statuses[502] += 1
            start_response("502 Bad Gateway", [("Content-Type", "application/json")])
            return [b'{"message": "Internal server error"}']
        statuses[int(answer["statusCode"])] += 1
        start_response(f"{answer['statusCode']} -", list(response_headers(answer).items()))
        return [(answer.get("body") or "").encode()]

    return application


@pytest.fixture
def tasks(
    make_runtime: RuntimeFactory, handlers: Handlers, algorithm_service: AlgorithmService
) -> dict[str, str]:
    """A running task of the owner's app (key KEY), one of another app, and an unknown id."""
    apps = {
        "contracts": {"senders": [SENDER], "principals": [OWNER]},
        "billing": {"senders": [SENDER], "principals": [OTHER]},
    }
    runtime = make_runtime(apps=json.dumps(apps), operator_principals=OPERATOR)
    silent = {"test": {"outcome": "silent"}}
    handlers.invoke(
        "intake",
        sqs_event(
            sqs_record(task_body(idempotency_key=KEY, input=silent)),
            sqs_record(task_body(app="billing", idempotency_key="b-1", input=silent)),
        ),
    )
    wait_for(lambda: len(algorithm_service.requests) == 2)
    own = runtime.repository.find_task("contracts", KEY)
    other = runtime.repository.find_task("billing", "b-1")
    assert own is not None
    assert other is not None
    return {"own": own.id, "other": other.id, "ghost": "00000000-0000-4000-8000-000000000000"}


OPERATIONS = [
    ("GET", "/tasks/{task_id}"),
    ("GET", "/apps/{app}/tasks"),
    ("POST", "/tasks/{task_id}/cancel"),
    ("POST", "/apps/{app}/tasks/cancel"),
]


@pytest.mark.parametrize(
    ("method", "operation"), OPERATIONS, ids=[f"{m} {o}" for m, o in OPERATIONS]
)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_status_requests_get_documented_answers_and_never_a_5xx(
    tasks: dict[str, str],
    handlers: Handlers,
    method: str,
    operation: str,
    mode: GenerationMode,
) -> None:
    statuses: Counter[int] = Counter()
    app = iam_gateway(handlers, statuses)
    schema = schemathesis.openapi.from_dict(json.loads(DOCUMENT_PATH.read_text()))
    schema.app = app  # every request, the checks' own probes included, goes to the adapter
    api_operation = schema[operation][method]
    identities = [{"Authorization": signature} for signature in SIGNATURES]
    queries: list[dict[str, Any] | None] = [None]
    if "{task_id}" in operation:
        pinned = [{"task_id": task_id} for task_id in tasks.values()]
    elif method == "POST":
        pinned = [{"app": "contracts"}, {"app": "billing"}]
    else:
        pinned = [{"app": "contracts"}, {"app": "billing"}]
        queries = [{"idempotency_key": KEY}, {"idempotency_key": "b-1"}, None]
    strategy = st.one_of(
        *(
            api_operation.as_strategy(
                generation_mode=mode, path_parameters=path, headers=headers, query=query
            )
            for path in pinned
            for headers in identities
            for query in queries
        ),
        api_operation.as_strategy(generation_mode=mode),  # anything, signed or not
    )

    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def fuzz(case: schemathesis.Case[Any]) -> None:
        response = case.call()
        case.validate_response(response, checks=CHECKS, transport_kwargs={"app": app})

    fuzz()

    print(f"{operation} {mode.value}: {sum(statuses.values())} requests {dict(statuses)}")
    assert statuses[502] == 0
    assert all(status < 500 for status in statuses), statuses
    # The fuzz reached the logic, not only the gateway's refusals (a task id has no
    # constraint to break: invalid requests of that route break their signature alone)
    if mode is GenerationMode.POSITIVE:
        # A task is cancelled once: later cancels of it are 409, of a new key 202
        assert statuses[200] + statuses[202] + statuses[409] > 0, statuses
        assert statuses[404] > 0, statuses
    elif operation != "/tasks/{task_id}":
        assert statuses[422] > 0, statuses
