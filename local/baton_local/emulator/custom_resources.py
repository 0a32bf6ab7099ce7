"""Custom resources backed by a function of the template, run once at start-up, and the
loopback server where they answer (their ``ResponseURL``)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from baton_local.emulator.functions import LambdaService
from baton_local.emulator.stack import Created, Stack
from baton_local.emulator.template import TemplateError, is_intrinsic, stringify


class ResponseServer:
    """Where custom resources answer (their ResponseURL): PUT /<request id>."""

    def __init__(self) -> None:
        self.responses: dict[str, dict[str, Any]] = {}
        self._arrived: dict[str, threading.Event] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request_id = self.path.strip("/").split("/")[-1]
                try:
                    server.responses[request_id] = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    server.responses[request_id] = {
                        "Status": "FAILED",
                        "Reason": "response is not JSON",
                    }
                server._arrived.setdefault(request_id, threading.Event()).set()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="cfn-responses",
            daemon=True,
        ).start()

    def url(self, request_id: str) -> str:
        self._arrived.setdefault(request_id, threading.Event())
        return f"http://127.0.0.1:{self.server.server_address[1]}/cloudformation/{request_id}"

    def wait(self, request_id: str, timeout: float) -> dict[str, Any] | None:
        self._arrived.setdefault(request_id, threading.Event()).wait(timeout)
        return self.responses.get(request_id)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _stringified(value: Any) -> Any:
    """Custom resource properties arrive as strings, as CloudFormation sends them."""
    if isinstance(value, dict):
        return {k: _stringified(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringified(v) for v in value]
    if isinstance(value, bool | int | float):
        return stringify(value, "custom resource property")
    return value


class CustomResourceProvider:
    """``AWS::CloudFormation::CustomResource`` / ``Custom::*`` backed by a function of the
    template: invoked with a Create event whose ResponseURL the emulator serves; FAILED
    (or no answer) fails start-up. No Delete is sent at stop: the local stack is thrown
    away."""

    ANSWER_GRACE_SECONDS = 5.0

    def __init__(self, service: LambdaService, responses: Callable[[], ResponseServer]) -> None:
        self.service = service
        self.responses = responses

    def validate(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> None:
        token = resource["Properties"].get("ServiceToken")
        where = f"{logical_id} ({resource['Type']})"
        if token is None:
            raise TemplateError(f"{where}: ServiceToken is required")
        if not is_intrinsic(token) and ":function:" not in str(token):
            raise TemplateError(
                f"{where}: only custom resources backed by a function of this template are emulated"
            )

    def create(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> Created:
        where = f"{logical_id} ({resource['Type']})"
        properties = stack.properties(logical_id)
        token = str(properties["ServiceToken"])
        function = self.service.find(token)
        if function is None:
            raise TemplateError(f"{where}: ServiceToken {token} is not a function of this template")
        server = self.responses()
        request_id = str(uuid.uuid4())
        event = {
            "RequestType": "Create",
            "ServiceToken": token,
            "ResponseURL": server.url(request_id),
            "StackId": stack.template.stack_id,
            "RequestId": request_id,
            "LogicalResourceId": logical_id,
            "ResourceType": resource["Type"],
            "ResourceProperties": _stringified(properties),
        }
        invocation = self.service.invoke(
            function, event, f"custom resource {logical_id}", kind="custom resource"
        )
        answer = server.wait(request_id, self.ANSWER_GRACE_SECONDS)
        if answer is None:
            detail = f": {invocation.error_text}" if not invocation.ok else ""
            raise TemplateError(f"{where}: {function} sent no response{detail}")
        if answer.get("Status") != "SUCCESS":
            log = self.service.log_path(function)
            raise TemplateError(f"{where}: FAILED: {answer.get('Reason', '')} (log: {log})")
        data = answer.get("Data") or {}
        physical_id = answer.get("PhysicalResourceId") or f"{logical_id}-{request_id[:8]}"
        return Created(physical_id, {str(k): v for k, v in data.items()})
