"""The algorithm service of the cost benchmark: a no-op one, in a process of its own so
that its CPU is not counted as Baton's. It answers each dispatch request 202 at once,
then uploads a small result to the presigned URL and calls back "succeeded" with the
attempt's token, without any work in between.

Paths: ``/noop`` (the above) and ``/hold`` (202 and the upload, but no callback: the
request is kept for the benchmark, which sends that callback itself from a fresh
interpreter to time a cold start of the callback function). ``GET /stats`` answers
what it saw: the monotonic time each dispatch arrived (by the task's ``input.ref``
and the attempt) (``time.monotonic`` is one
clock for every process on Linux), the callbacks' HTTP statuses, and the held
requests.

    python -m bench.cost_service  # prints its port on the first line of stdout
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import urllib3

RESULT = b'{"words": 42}'
CALLBACK_TRIES = 5


class NoopService:
    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.callback_statuses: Counter[int] = Counter()
        self.held: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._http = urllib3.PoolManager(maxsize=32)

    def receive(self, path: str, request: dict[str, Any]) -> None:
        with self._lock:
            ref = request["input"].get("ref", request["task_id"])
            self.arrivals[f"{ref}:{request['attempt']}"] = time.monotonic()
        threading.Thread(target=self._finish, args=(path, request), daemon=True).start()

    def _finish(self, path: str, request: dict[str, Any]) -> None:
        upload = self._http.request("PUT", request["result"]["upload_url"], body=RESULT)
        if path == "hold":
            with self._lock:
                self.held.append(request)
            return
        for _ in range(CALLBACK_TRIES):
            answer = self._http.request(
                "POST",
                request["callback"]["url"],
                body=json.dumps({"attempt": request["attempt"], "status": "succeeded"}).encode(),
                headers={
                    "Authorization": f"Bearer {request['callback']['token']}",
                    "Content-Type": "application/json",
                },
                retries=False,
            )
            if answer.status < 500:
                break
            # as a real service does (the SDK's retries): a 503 says when to come back
            time.sleep(min(1.0, float(answer.headers.get("Retry-After", "0.2"))))
        with self._lock:
            self.callback_statuses[answer.status if upload.status == 200 else -upload.status] += 1

    def stats(self) -> bytes:
        with self._lock:
            return json.dumps(
                {
                    "arrivals": self.arrivals,
                    "callback_statuses": dict(self.callback_statuses),
                    "held": self.held,
                }
            ).encode()


def serve() -> None:
    service = NoopService()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Baton's dispatch client expects

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.wfile.flush()
            service.receive(self.path.strip("/"), json.loads(raw))

        def do_GET(self) -> None:
            body = service.stats()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    serve()
