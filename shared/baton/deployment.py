"""The schema custom resource: ``sam deploy`` applies the migrations before the
functions that need them run (the stack makes the schedules depend on it)."""

from __future__ import annotations

import json
from typing import Any

import urllib3

from baton.observability import logger
from baton.runtime import fetch_secret
from baton.schema import current_revision, upgrade_database
from baton.settings import load_settings, resolve_database_url


def handle_schema_resource(event: dict[str, Any], context: Any) -> None:
    status, reason, data = "SUCCESS", "", {}
    try:
        if event["RequestType"] in ("Create", "Update"):
            url = resolve_database_url(load_settings(), fetch_secret)
            upgrade_database(url)
            data = {"Revision": current_revision(url) or ""}
            logger.info("schema upgraded", revision=data["Revision"])
    except Exception as exc:
        logger.exception("schema upgrade failed")
        status, reason = "FAILED", f"{type(exc).__name__}: see log stream {context.log_stream_name}"
    _respond(event, context, status, reason, data)


def _respond(
    event: dict[str, Any], context: Any, status: str, reason: str, data: dict[str, str]
) -> None:
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason or f"see log stream {context.log_stream_name}",
            "PhysicalResourceId": event.get("PhysicalResourceId") or "baton-schema",
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "Data": data,
        }
    ).encode()
    urllib3.PoolManager().request(
        "PUT",
        event["ResponseURL"],
        body=body,
        headers={"Content-Type": "", "Content-Length": str(len(body))},
        retries=urllib3.Retry(total=5, backoff_factor=1),
    )
