"""A test function for the emulator: it writes one ``RECORD`` line per invocation to its
log (the event, its environment and its context) and answers as the event asks.

SQS records whose body is ``{"fail": true}`` are reported as batch item failures; a body
``{"raise": true}`` makes the whole invocation fail; an event ``{"sleep": N}`` (or a
record whose body has it) takes N s. ``started`` is when the handler began (epoch s)."""

import json
import os
import time
from typing import Any


def handler(event: Any, context: Any) -> Any:
    record = {
        "started": time.time(),
        "event": event,
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "pid": os.getpid(),
        "context": {
            "function_name": context.function_name,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "invoked_function_arn": context.invoked_function_arn,
            "aws_request_id": context.aws_request_id,
            "log_stream_name": context.log_stream_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
        },
    }
    print("RECORD " + json.dumps(record), flush=True)
    if isinstance(event, dict) and "sleep" in event:
        time.sleep(event["sleep"])
    failures = []
    for item in event.get("Records", []) if isinstance(event, dict) else []:
        body = json.loads(item["body"]) if item["body"].startswith("{") else {}
        if body.get("raise"):
            raise RuntimeError("asked to raise")
        time.sleep(float(body.get("sleep", 0)))
        if body.get("fail"):
            failures.append({"itemIdentifier": item["messageId"]})
    return {"batchItemFailures": failures}
