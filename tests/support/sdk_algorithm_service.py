"""An algorithm service on loopback built on the client SDK alone, the way a real one
is written: each dispatch request is verified and parsed with ``Dispatch.from_request``
(the algorithm's ``whsec_`` secrets, as ``baton algorithm secret`` prints them), a
forged one answered 401; an accepted one is answered 202 at once and worked on in the
background: heartbeats, the result uploaded with its SHA-256 checksum
(``attempt.upload_result``), and ``attempt.succeed`` or ``attempt.fail``, with the SDK's
own retries.

Each task's ``input.test`` steers it: ``outcome`` (``succeeded``, the default, or
``failed``), ``run_seconds`` (default ``default_run_seconds``) and ``heartbeats`` (how
many to send before the upload; default ``default_heartbeats``, 1).

tests.support.algorithm_service stays the raw-HTTP service (no SDK): the tests keep
one path through every contract that does not go through the SDK.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from baton_sdk import Attempt, BatonError, Dispatch, InvalidSignature, Upload
from baton_sdk.contracts import CallbackAnswer, DispatchRequest, HeartbeatAnswer


@dataclass(frozen=True)
class Outcome:
    """What one attempt did, as the SDK reported it."""

    request: DispatchRequest
    upload: Upload | None
    heartbeats: list[HeartbeatAnswer]
    answer: CallbackAnswer | None
    error: BatonError | None = None
    data: bytes = b""


@dataclass
class SdkAlgorithmService:
    secrets: dict[str, Sequence[str]] = field(default_factory=dict)
    """Per algorithm (the endpoint's path), the secrets its requests verify with."""
    default_run_seconds: float = 0.02
    default_heartbeats: int = 1
    server: ThreadingHTTPServer | None = None
    requests: list[DispatchRequest] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    max_in_flight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> SdkAlgorithmService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = service._receive(self.path.strip("/"), body, dict(self.headers.items()))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.wait_idle()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def endpoint(self, algorithm: str) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/{algorithm}"

    @property
    def callbacks(self) -> list[Outcome]:
        """The attempts that called back (the raw service's name, for the benchmarks)."""
        with self._lock:
            return [outcome for outcome in self.outcomes if outcome.answer is not None]

    def wait_idle(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                self._workers = [w for w in self._workers if w.is_alive()]
                workers = list(self._workers)
            if not workers:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("algorithm workers still running")
            for worker in workers:
                worker.join(max(0.0, deadline - time.monotonic()))

    # -- behaviour ------------------------------------------------------------------------

    def _receive(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        secrets = self.secrets.get(path)
        if not secrets:
            with self._lock:
                self.refused.append(f"no secret for {path!r}")
            return 401
        try:
            attempt = Dispatch.from_request(body, headers, secrets)
        except InvalidSignature as exc:
            with self._lock:
                self.refused.append(str(exc))
            return 401
        except BatonError as exc:
            with self._lock:
                self.refused.append(str(exc))
            return 422
        with self._lock:
            self.requests.append(attempt.request)
            self.in_flight[path] += 1
            self.max_in_flight[path] = max(self.max_in_flight[path], self.in_flight[path])
            worker = threading.Thread(target=self._work, args=(path, attempt), daemon=True)
            self._workers.append(worker)
        worker.start()
        return 202

    def _work(self, path: str, attempt: Attempt) -> None:
        directives: dict[str, Any] = attempt.input.get("test", {})
        beats: list[HeartbeatAnswer] = []
        upload: Upload | None = None
        answer: CallbackAnswer | None = None
        error: BatonError | None = None
        data = b""
        succeeded = directives.get("outcome", "succeeded") == "succeeded"
        working = True
        try:
            time.sleep(float(directives.get("run_seconds", self.default_run_seconds)))
            for n in range(int(directives.get("heartbeats", self.default_heartbeats))):
                beats.append(attempt.heartbeat(progress=min(99, 50 + n), message="working"))
            if succeeded:
                data = json.dumps({"task_id": attempt.task_id, "words": 42}).encode()
                upload = attempt.upload_result(data, "application/json")
            # The work is over once the report goes out (as the raw service counts it).
            self._done(path)
            working = False
            if succeeded:
                answer = attempt.succeed()
            else:
                answer = attempt.fail("unreadable", "the document is not readable")
        except BatonError as exc:
            error = exc
        finally:
            if working:
                self._done(path)
        with self._lock:
            self.outcomes.append(Outcome(attempt.request, upload, beats, answer, error, data))

    def _done(self, path: str) -> None:
        with self._lock:
            self.in_flight[path] -= 1
