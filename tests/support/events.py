"""Events in the real AWS shapes, built from the samples in events/."""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any

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
