"""A loopback stand-in for API Gateway in front of the callback function: each HTTP
request becomes a REST API (payload 1.0) proxy event, the handler's answer becomes
the HTTP response."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.events import api_event, response_headers
from tests.support.handlers import Handlers

STAGE = "test"


class CallbackGateway:
    def __init__(self, handlers: Handlers) -> None:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                gateway._forward(self)

            def do_GET(self) -> None:
                gateway._forward(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._handlers = handlers
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.requests = 0

    def start(self) -> CallbackGateway:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/{STAGE}"

    def _forward(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length", "0"))
        body = request.rfile.read(length).decode() if length else None
        path = request.path.removeprefix(f"/{STAGE}")
        event = api_event(path, body, dict(request.headers.items()), method=request.command)
        self.requests += 1
        try:
            answer = self._handlers.invoke("callback", event)
        except BaseException:
            answer = {"statusCode": 502, "body": '{"message": "Internal server error"}'}
        payload = answer.get("body") or ""
        request.send_response(int(answer["statusCode"]))
        for name, value in response_headers(answer).items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(payload.encode())))
        request.end_headers()
        request.wfile.write(payload.encode())


def json_body(answer: dict[str, Any]) -> Any:
    return json.loads(answer["body"])
