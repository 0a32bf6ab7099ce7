"""An HTTP proxy on loopback in front of the callback gateway that fails on cue, as the
network between an algorithm service and API Gateway does: each request takes the next
step of ``plan`` (then ``pass`` for good):

- ``pass``: forwarded, and the answer relayed;
- ``503``: answered 503 with ``Retry-After`` (never forwarded), as Baton's own answer
  when a dependency is briefly down;
- ``drop``: forwarded (Baton applies it) and the connection then closed without an
  answer, so the caller cannot know whether it arrived.

It records, per request, the path, the step taken and the status relayed (None: none).
"""

from __future__ import annotations

import http.client
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

Step = Literal["pass", "503", "drop"]


@dataclass
class FaultyProxy:
    upstream: str
    """Base URL of what it fronts (the gateway's, with its stage)."""
    retry_after: str = "1"
    plan: deque[Step] = field(default_factory=deque)
    log: list[tuple[str, Step, int | None]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FaultyProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                proxy._serve(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def base_url(self) -> str:
        """The upstream's base URL with this proxy's host and port."""
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}{urlsplit(self.upstream).path}"

    def then(self, *steps: Step) -> FaultyProxy:
        with self._lock:
            self.plan.extend(steps)
        return self

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length", "0")))
        with self._lock:
            step: Step = self.plan.popleft() if self.plan else "pass"
        # Each request is recorded before its answer goes out: the caller may act on the
        # answer (and a test read the log) before this thread gets to run again.
        if step == "503":
            self._record(request.path, step, 503)
            payload = b'{"error": {"code": "unavailable", "message": "try again"}}'
            request.send_response(503)
            request.send_header("Retry-After", self.retry_after)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(payload)))
            request.end_headers()
            request.wfile.write(payload)
            return
        status, headers, answer = self._forward(request, body)
        if step == "drop":
            # Baton has it; the caller gets no answer at all.
            request.close_connection = True
            self._record(request.path, step, None)
            return
        self._record(request.path, step, status)
        request.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                request.send_header(name, value)
        request.send_header("Content-Length", str(len(answer)))
        request.end_headers()
        request.wfile.write(answer)

    def _forward(
        self, request: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        upstream = urlsplit(self.upstream)
        connection = http.client.HTTPConnection(upstream.hostname or "", upstream.port, timeout=30)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
            connection.request("POST", request.path, body=body, headers=headers)
            answer = connection.getresponse()
            return answer.status, answer.getheaders(), answer.read()
        finally:
            connection.close()

    def _record(self, path: str, step: Step, status: int | None) -> None:
        with self._lock:
            self.log.append((path, step, status))
