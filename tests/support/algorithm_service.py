"""A fake algorithm service on loopback that behaves like the real ones: it accepts a
dispatch request, works for a while, uploads its result to the presigned URL and
calls back with its token. Each task's ``input.test`` steers it:

- ``dispatch_status``: list of answers to successive dispatches of the task (default 202)
- ``outcome``: ``succeeded`` (default), ``failed``, ``silent`` (never calls back),
  ``no_upload`` (calls back "succeeded" without uploading)
- ``outcomes``: the outcome of attempt 1, 2, ... (the last one for any later attempt)
- ``run_seconds``: how long the work takes (default 0.02)
- ``retry_after``: the Retry-After header sent with a refusal
- ``outcome: until_cancelled``: it works until Baton's cancel request for the attempt
  arrives (then stops, silently), or for ``run_seconds`` (default 30), after which it
  calls back "succeeded", late
- ``cancel_status``: answers to successive cancel requests of an attempt (default 200;
  0 drops the connection without an answer); a 2xx or 404 stops the work

Cancel requests come to ``<endpoint>/cancel`` (``cancel_url``); one for an attempt it
never had is answered 404. ``true_cost_in_flight`` counts an attempt's cost from the
moment its request arrives until its work stops (finished, or cancelled), whatever
Baton counts: the load the service really carries.

It reads the contract raw (JSON and HTTP by hand, no SDK): it is the outside view that
a bug shared by Baton and the SDK cannot hide from (tests.support.sdk_algorithm_service
is the service built on the SDK). It records every request (its exact bytes and headers
too, in ``deliveries``, with the moment it arrived), every callback answer, and the
most tasks it ever had in flight per path (an algorithm's endpoint): from receiving a
request to sending its callback; and per algorithm the most cost in flight. A path can
be made to refuse every request for a while (``refuse``), as a failing server does.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import urllib3


@dataclass
class CallbackRecord:
    task_id: str
    attempt: int
    status: str
    http_status: int
    answer: dict[str, Any]


@dataclass(frozen=True)
class Delivery:
    """A dispatch request as it came over the wire: the bytes its signature covers."""

    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class AlgorithmService:
    server: ThreadingHTTPServer | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    callbacks: list[CallbackRecord] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    max_in_flight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    dispatch_count: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    running_tasks: set[str] = field(default_factory=set)
    overlaps: list[str] = field(default_factory=list)
    arrivals: list[tuple[float, str]] = field(default_factory=list)  # (monotonic, path)
    cost_in_flight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    max_cost_in_flight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    refusals: dict[str, tuple[float, int, int | None]] = field(default_factory=dict)
    # (monotonic, path, tasks in flight there once this one is in) for each accepted task
    accepted_at: list[tuple[float, str, int]] = field(default_factory=list)
    cancels: list[Delivery] = field(default_factory=list)
    true_cost_in_flight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    max_true_cost_in_flight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    stopped_by_cancel: list[tuple[str, int]] = field(default_factory=list)
    _cancelled: dict[tuple[str, int], threading.Event] = field(default_factory=dict)
    _cancel_count: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    _directives: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    _costs: dict[tuple[str, int], int] = field(default_factory=dict)
    _stopped: set[tuple[str, int]] = field(default_factory=set)
    default_run_seconds: float = 0.02
    callback_tries: int = 3
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)
    _http: urllib3.PoolManager = field(default_factory=lambda: urllib3.PoolManager(maxsize=16))

    def start(self) -> AlgorithmService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                request = json.loads(raw)
                path = self.path.strip("/")
                if path.endswith("/cancel"):
                    status = service._cancel(raw, dict(self.headers.items()), request)
                    if status == 0:  # no answer at all: the connection just closes
                        self.close_connection = True
                        return
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                    return
                with service._lock:
                    service.deliveries.append(Delivery(path, raw, dict(self.headers.items())))
                status, retry_after = service._accept(path, request)
                self.send_response(status)
                if status >= 300 and retry_after is not None:
                    self.send_header("Retry-After", str(retry_after))
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}' if status < 300 else b'{"error": "refused"}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        with self._lock:  # a service shutting down stops its work
            for cancelled in self._cancelled.values():
                cancelled.set()
        self.wait_idle()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def refuse(
        self, path: str, seconds: float, status: int = 503, retry_after: int | None = None
    ) -> None:
        """Answer every request to ``path`` with ``status`` for ``seconds`` from now."""
        with self._lock:
            self.refusals[path] = (time.monotonic() + seconds, status, retry_after)

    def arrivals_at(self, path: str) -> list[float]:
        with self._lock:
            return [moment for moment, at in self.arrivals if at == path]

    def endpoint(self, algorithm: str) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/{algorithm}"

    def cancel_url(self, algorithm: str) -> str:
        return f"{self.endpoint(algorithm)}/cancel"

    def _cancel(self, raw: bytes, headers: dict[str, str], request: dict[str, Any]) -> int:
        key = (str(request["task_id"]), int(request["attempt"]))
        with self._lock:
            self.cancels.append(Delivery("cancel", raw, headers))
            directives = self._directives.get(key)
            if directives is None:
                return 404
            nth = self._cancel_count[key]
            self._cancel_count[key] += 1
            answers = directives.get("cancel_status", [200])
            status = int(answers[min(nth, len(answers) - 1)])
            stops = directives.get("outcome") == "until_cancelled"
            # A 404 says "not running here" (lost in a restart): nothing runs on either way.
            acknowledged = 200 <= status < 300 or status == 404
            if stops and acknowledged and not self._cancelled[key].is_set():
                # It stops as it acknowledges: the load is gone before Baton hears so.
                self._cancelled[key].set()
                if key not in self._stopped:
                    self._stopped.add(key)
                    self.true_cost_in_flight[str(request["algorithm"])] -= int(
                        self._costs.get(key, 1)
                    )
        return status

    def wait_idle(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                workers = [w for w in self._workers if w.is_alive()]
                self._workers = workers
            if not workers:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("algorithm workers still running")
            for worker in workers:
                worker.join(max(0.0, deadline - time.monotonic()))

    # -- behaviour ------------------------------------------------------------------------

    def _accept(self, path: str, request: dict[str, Any]) -> tuple[int, int | None]:
        """The answer to one dispatch (status, Retry-After); an accepted task is worked on."""
        directives = request.get("input", {}).get("test", {})
        task_id = request["task_id"]
        with self._lock:
            now = time.monotonic()
            self.arrivals.append((now, path))
            self.requests.append(request)
            refused_until, refusal, refusal_retry = self.refusals.get(path, (0.0, 0, None))
            if now < refused_until:
                return refusal, refusal_retry
            nth = self.dispatch_count[task_id]
            self.dispatch_count[task_id] += 1
            answers = directives.get("dispatch_status", [202])
            status = int(answers[min(nth, len(answers) - 1)])
            if status >= 300:
                return status, directives.get("retry_after")
            if task_id in self.running_tasks:
                self.overlaps.append(task_id)
            self.running_tasks.add(task_id)
            self.in_flight[path] += 1
            self.max_in_flight[path] = max(self.max_in_flight[path], self.in_flight[path])
            self.accepted_at.append((now, path, self.in_flight[path]))
            algorithm, cost = str(request["algorithm"]), int(request.get("cost", 1))
            self.cost_in_flight[algorithm] += cost
            self.max_cost_in_flight[algorithm] = max(
                self.max_cost_in_flight[algorithm], self.cost_in_flight[algorithm]
            )
            self.true_cost_in_flight[algorithm] += cost
            self.max_true_cost_in_flight[algorithm] = max(
                self.max_true_cost_in_flight[algorithm], self.true_cost_in_flight[algorithm]
            )
            key = (str(task_id), int(request["attempt"]))
            self._directives[key] = directives
            self._costs[key] = cost
            self._cancelled[key] = threading.Event()
            worker = threading.Thread(
                target=self._work, args=(path, request, directives), daemon=True
            )
            self._workers.append(worker)
        worker.start()
        return status, None

    def _finish(self, path: str, request: dict[str, Any]) -> None:
        with self._lock:
            self.in_flight[path] -= 1
            self.cost_in_flight[str(request["algorithm"])] -= int(request.get("cost", 1))
            key = (str(request["task_id"]), int(request["attempt"]))
            if key not in self._stopped:
                self._stopped.add(key)
                self.true_cost_in_flight[str(request["algorithm"])] -= int(request.get("cost", 1))
            self.running_tasks.discard(request["task_id"])

    def _work(self, algorithm: str, request: dict[str, Any], directives: dict[str, Any]) -> None:
        outcome = directives.get("outcome", "succeeded")
        if outcome == "until_cancelled":
            key = (str(request["task_id"]), int(request["attempt"]))
            with self._lock:
                cancelled = self._cancelled[key]
            if cancelled.wait(float(directives.get("run_seconds", 30))):
                with self._lock:
                    self.stopped_by_cancel.append(key)
                self._finish(algorithm, request)
                return
            outcome = "succeeded"
        else:
            time.sleep(float(directives.get("run_seconds", self.default_run_seconds)))
        by_attempt = directives.get("outcomes")
        if by_attempt and outcome != "until_cancelled":
            outcome = by_attempt[min(int(request["attempt"]), len(by_attempt)) - 1]
        if outcome == "silent":
            self._finish(algorithm, request)
            return
        if outcome == "succeeded":
            upload = self._http.request(
                "PUT",
                request["result"]["upload_url"],
                body=json.dumps({"task_id": request["task_id"], "words": 42}).encode(),
            )
            assert upload.status == 200, upload.data
        self._finish(algorithm, request)
        body: dict[str, Any] = {
            "attempt": request["attempt"],
            "status": "failed" if outcome == "failed" else "succeeded",
        }
        if outcome == "failed":
            body["error"] = {"code": "unreadable", "message": "the document is not readable"}
        self.call_back(request, body)

    def call_back(
        self, request: dict[str, Any], body: dict[str, Any], path: str = "callback"
    ) -> CallbackRecord:
        url = request["callback"]["url"]
        if path != "callback":
            url = url.rsplit("/", 1)[0] + "/" + path
        # Like a real service: a 5xx or a dropped connection is tried again.
        for _ in range(self.callback_tries - 1):
            try:
                response = self._post(url, body, request["callback"]["token"])
            except urllib3.exceptions.HTTPError:
                continue
            if response.status < 500:
                break
        else:
            response = self._post(url, body, request["callback"]["token"])
        record = CallbackRecord(
            task_id=request["task_id"],
            attempt=int(request["attempt"]),
            status=str(body.get("status", path)),
            http_status=response.status,
            answer=json.loads(response.data or b"{}"),
        )
        with self._lock:
            self.callbacks.append(record)
        return record

    def _post(self, url: str, body: dict[str, Any], token: str) -> Any:
        return self._http.request(
            "POST",
            url,
            body=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            retries=False,
        )

    def requests_for(self, task_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["task_id"] == task_id]

    def deliveries_for(self, task_id: str) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if json.loads(d.body)["task_id"] == task_id]
