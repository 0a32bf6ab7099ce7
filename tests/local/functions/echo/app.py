"""A test function behind the emulated REST API: it answers with what it received."""

import base64
import json
import os
from typing import Any


def handler(event: Any, context: Any) -> Any:
    path = event["path"]
    if path.endswith("/boom"):
        raise ValueError("boom")
    if path.endswith("/binary"):
        return {
            "statusCode": 200,
            "headers": {"Content-Type": "application/octet-stream"},
            "body": base64.b64encode(b"\x00\x01\xfe\xff").decode(),
            "isBase64Encoded": True,
        }
    return {
        "statusCode": 201,
        "headers": {"Content-Type": "application/json", "X-Echo": "yes"},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
        "body": json.dumps(
            {
                "event": event,
                "function": context.function_name,
                "callback_base_url": os.environ.get("CALLBACK_BASE_URL"),
            }
        ),
    }
