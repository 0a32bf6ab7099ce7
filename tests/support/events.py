"""Events in the real AWS shapes, built from the samples in events/."""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

EVENTS = Path(__file__).resolve().parents[2] / "events"


@cache
def _sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return loaded


def sample_event(name: str) -> dict[str, Any]:
    return copy.deepcopy(_sample(name))


def sqs_record(
    body: str,
    message_id: str | None = None,
    receive_count: int = 1,
    sender_id: str | None = None,
) -> dict[str, Any]:
    """An intake record; ``sender_id`` replaces the sample's ``SenderId`` (a role session)."""
    record: dict[str, Any] = copy.deepcopy(_sample("intake")["Records"][0])
    record["messageId"] = message_id or str(uuid.uuid4())
    record["receiptHandle"] = f"handle-{record['messageId']}"
    record["body"] = body
    record["md5OfBody"] = hashlib.md5(body.encode()).hexdigest()
    record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    if sender_id is not None:
        record["attributes"]["SenderId"] = sender_id
    return record


def sqs_event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def task_body(**fields: Any) -> str:
    message = {"app": "contracts", "algorithm": "ocr", "input": {"document": "doc-1"}}
    message.update(fields)
    return json.dumps(message)


def schedule_event(name: str = "dispatch") -> dict[str, Any]:
    return sample_event(name)


def api_event(
    path: str,
    body: str | None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> dict[str, Any]:
    """A REST API (payload 1.0) proxy event for a callback or heartbeat request."""
    event = sample_event("callback")
    parts = path.strip("/").split("/")
    resource = "/tasks/{task_id}/" + parts[-1] if len(parts) == 3 else path
    event["resource"] = resource
    event["path"] = path
    event["httpMethod"] = method
    event["headers"] = dict(headers or {})
    event["multiValueHeaders"] = {key: [value] for key, value in event["headers"].items()}
    event["pathParameters"] = {"task_id": parts[1]} if len(parts) == 3 else None
    event["requestContext"]["resourcePath"] = resource
    event["requestContext"]["httpMethod"] = method
    event["requestContext"]["path"] = f"/{event['requestContext'].get('stage', 'dev')}{path}"
    event["requestContext"]["requestId"] = str(uuid.uuid4())
    event["body"] = body
    event["isBase64Encoded"] = False
    return event


def response_headers(answer: dict[str, Any]) -> dict[str, str]:
    """A proxy integration answer's headers, whichever of the two shapes it used."""
    headers = {key: str(value) for key, value in (answer.get("headers") or {}).items()}
    for key, values in (answer.get("multiValueHeaders") or {}).items():
        headers[key] = ", ".join(str(value) for value in values)
    return headers


def http_api_event(rest: dict[str, Any]) -> dict[str, Any]:
    """The HTTP API (payload 2.0) twin of a REST proxy event: the same request as API
    Gateway's HTTP API hands it over (events/callback-http.json, status-http.json) -
    lower-case headers and repeated ones joined with commas, repeated query parameters
    joined likewise beside the raw query string, the stage in ``rawPath``, and the
    IAM caller, if any, in ``requestContext.authorizer.iam``."""
    context = rest["requestContext"]
    identity = context.get("identity") or {}
    event = sample_event("status-http" if identity.get("userArn") else "callback-http")
    method = rest["httpMethod"]
    route_key = f"{method} {rest['resource']}"
    headers: dict[str, str] = {}
    for name, values in (rest.get("multiValueHeaders") or {}).items():
        key = name.lower()
        headers[key] = ",".join([*([headers[key]] if key in headers else []), *values])
    pairs = [
        (name, value)
        for name, values in (rest.get("multiValueQueryStringParameters") or {}).items()
        for value in values
    ]
    event["routeKey"] = route_key
    event["rawPath"] = context["path"]
    event["rawQueryString"] = urlencode(pairs, quote_via=quote)
    event["headers"] = headers
    event.pop("queryStringParameters", None)
    if pairs:
        event["queryStringParameters"] = {
            name: ",".join(values)
            for name, values in (rest.get("multiValueQueryStringParameters") or {}).items()
        }
    event.pop("pathParameters", None)
    if rest.get("pathParameters"):
        event["pathParameters"] = dict(rest["pathParameters"])
    http = event["requestContext"]["http"]
    http["method"] = method
    http["path"] = context["path"]
    event["requestContext"]["routeKey"] = route_key
    event["requestContext"]["requestId"] = context["requestId"]
    event["requestContext"]["stage"] = context["stage"]
    if identity.get("userArn"):
        iam = event["requestContext"]["authorizer"]["iam"]
        iam["userArn"] = identity["userArn"]
        iam["accountId"] = identity.get("accountId")
    event.pop("body", None)
    if rest.get("body") is not None:
        event["body"] = rest["body"]
    event["isBase64Encoded"] = bool(rest.get("isBase64Encoded"))
    return event
