"""The algorithm service of the chaos run: one HTTP server on loopback (threads, in the
parent process) serving every algorithm, flaky the way real services are.

Each task message carries its plan in ``input.chaos``: ``plan`` lists one behaviour per
dispatch the service receives for the task (the last one repeats), ``run`` the work
time, ``dup`` whether to call back twice (``"seq"``: again after the first answer,
``"twin"``: two at once), ``late`` how long after the deadline a ``slow`` callback comes.

Behaviours: ``ok`` (202, work, upload the result, call back "succeeded"), ``fail``
(call back "failed"), ``503`` and ``400`` (answer the dispatch so), ``slow`` (202, then
upload and call back only after the attempt's deadline: Baton must have timed it out,
so the late callback gets 409 and changes nothing), ``silent`` (202, never call back),
``beat`` (202, work past the timeout while sending heartbeats, then call back).

An algorithm may be served on several paths, one per endpoint (``/vision/1``,
``/vision/2``): the algorithm is the request's own ``algorithm``, the endpoint the path.
A flaky endpoint answers a share of its requests 503 with ``Retry-After`` (``busy``),
whatever the task's plan, which it does not move on: a server that is full, not a task
that fails.

Callbacks go to a random worker's gateway (any Lambda instance serves any request) and
are retried on 5xx and connection errors, with backoff, like a real service. Every
dispatch received and every callback answer is recorded with wall-clock times (the
workers' clocks are the same system clock) for the checks.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import urllib3

ACCEPTING = ("ok", "fail", "slow", "silent", "beat")
BUSY = "busy"  # a flaky endpoint's 503 with Retry-After
BUSY_RETRY_AFTER = 1


@dataclass
class Receipt:
    """One dispatch request as the service saw it."""

    task_id: str
    attempt: int
    algorithm: str
    behaviour: str
    received: float
    deadline: float
    endpoint: str = ""  # the URL it was sent to, as the registry names it
    cost: int = 1
    answer: int = 0
    answered: float = 0.0
    reported: float | None = None  # when the first callback try was sent


@dataclass
class CallbackResult:
    """One callback (or its duplicate), after its retries: the answers it got."""

    task_id: str
    attempt: int
    status: str
    duplicate: bool
    sent: float
    deadline: float
    answers: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # when each answer came
    final: int = 0
    code: str | None = None
    applied: bool | None = None

    @property
    def late(self) -> bool:
        return self.sent > self.deadline


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class ChaosAlgorithmService:
    def __init__(self, seed: int, callback_retry_seconds: float = 40.0) -> None:
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._lock = threading.Lock()
        self._retry_seconds = callback_retry_seconds
        self._http = urllib3.PoolManager(
            maxsize=32, timeout=urllib3.Timeout(connect=2.0, read=15.0), retries=False
        )
        self._active = 0
        self._idle = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self.gateways: list[str] = []
        self.receipts: list[Receipt] = []
        self.callbacks: list[CallbackResult] = []
        self.seen: Counter[str] = Counter()
        self.heartbeats: Counter[int] = Counter()
        self.uploads_failed = 0
        self.callback_tries = 0
        self.flaky: dict[str, float] = {}  # endpoint URL -> share of requests answered busy
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> ChaosAlgorithmService:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def endpoint(self, algorithm: str, number: int | None = None) -> str:
        """The URL of an algorithm's endpoint (``number``: one of several)."""
        host, port = self.server.server_address[:2]
        path = algorithm if number is None else f"{algorithm}/{number}"
        return f"http://{host!s}:{port}/{path}"

    def make_flaky(self, endpoint: str, share: float) -> None:
        """Answer ``share`` of the requests to ``endpoint`` busy (503, Retry-After)."""
        self.flaky[endpoint] = share

    def busy(self) -> int:
        with self._lock:
            return self._active

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._active:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    # -- the dispatch endpoint ----------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                request = json.loads(self.rfile.read(length))
                receipt = service._receive(self.path.strip("/"), request)
                self.send_response(receipt.answer)
                if receipt.behaviour == BUSY:
                    self.send_header("Retry-After", str(BUSY_RETRY_AFTER))
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}' if receipt.answer < 300 else b'{"error": "no"}')
                receipt.answered = time.time()
                if receipt.answer < 300:
                    service._spawn(service._work, receipt, request)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def _receive(self, path: str, request: dict[str, Any]) -> Receipt:
        received = time.time()
        plan = request["input"]["chaos"]["plan"]
        task_id = request["task_id"]
        host, port = self.server.server_address[:2]
        endpoint = f"http://{host!s}:{port}/{path}"
        with self._rng_lock:
            busy = self._rng.random() < self.flaky.get(endpoint, 0.0)
        with self._lock:
            if busy:
                behaviour = BUSY
            else:
                nth = self.seen[task_id]
                self.seen[task_id] += 1
                behaviour = plan[min(nth, len(plan) - 1)]
            receipt = Receipt(
                task_id=task_id,
                attempt=int(request["attempt"]),
                algorithm=str(request["algorithm"]),
                behaviour=behaviour,
                received=received,
                deadline=_timestamp(request["deadline"]),
                endpoint=endpoint,
                cost=int(request.get("cost", 1)),
                answer=503 if busy else 202 if behaviour in ACCEPTING else int(behaviour),
            )
            self.receipts.append(receipt)
        return receipt

    def _spawn(self, target: Any, *args: Any) -> None:
        with self._lock:
            self._active += 1

        def run() -> None:
            try:
                target(*args)
            finally:
                with self._idle:
                    self._active -= 1
                    self._idle.notify_all()

        threading.Thread(target=run, daemon=True).start()

    # -- the work ------------------------------------------------------------------------

    def _work(self, receipt: Receipt, request: dict[str, Any]) -> None:
        chaos = request["input"]["chaos"]
        behaviour = receipt.behaviour
        if behaviour == "silent":
            return
        if behaviour == "slow":
            time.sleep(max(0.0, receipt.deadline + float(chaos["late"]) - time.time()))
        elif behaviour == "beat":
            self._work_with_heartbeats(receipt, request, float(chaos["timeout"]))
        else:
            time.sleep(float(chaos["run"]))
        status = "failed" if behaviour == "fail" else "succeeded"
        if status == "succeeded":
            self._upload(request)
        body: dict[str, Any] = {"attempt": receipt.attempt, "status": status}
        if status == "failed":
            body["error"] = {"code": "unreadable", "message": "the document is not readable"}
        receipt.reported = time.time()
        dup = chaos.get("dup")
        if dup == "twin":
            self._spawn(self._call_back, receipt, request, body, True)
        self._call_back(receipt, request, body, False)
        if dup == "seq":
            with self._rng_lock:
                pause = self._rng.uniform(0.0, 0.3)
            time.sleep(pause)
            self._call_back(receipt, request, body, True)

    def _work_with_heartbeats(
        self, receipt: Receipt, request: dict[str, Any], timeout: float
    ) -> None:
        """Work 1.6 timeouts long, reporting progress every third of a timeout."""
        ends = time.time() + 1.6 * timeout
        progress = 0
        while time.time() < ends and not self._stopping.is_set():
            time.sleep(min(timeout / 3, max(0.0, ends - time.time())))
            progress = min(99, progress + 20)
            extended: dict[str, Any] = {}
            answers = self._post_retrying(
                request,
                "heartbeat",
                {"attempt": receipt.attempt, "progress": progress},
                3.0,
                extended,
            )
            if "deadline" in extended:  # the attempt now ends later
                receipt.deadline = max(receipt.deadline, _timestamp(extended["deadline"]))
            with self._lock:
                self.heartbeats[answers[-1] if answers else 0] += 1

    def _upload(self, request: dict[str, Any]) -> None:
        body = json.dumps({"task_id": request["task_id"], "attempt": request["attempt"]}).encode()
        for pause in (0.05, 0.2, 0.5, 1.0, 2.0):
            try:
                answer = self._http.request("PUT", request["result"]["upload_url"], body=body)
                if answer.status < 300:
                    return
            except urllib3.exceptions.HTTPError:
                pass
            time.sleep(pause)
        with self._lock:
            self.uploads_failed += 1

    def _call_back(
        self, receipt: Receipt, request: dict[str, Any], body: dict[str, Any], duplicate: bool
    ) -> None:
        result = CallbackResult(
            task_id=receipt.task_id,
            attempt=receipt.attempt,
            status=body["status"],
            duplicate=duplicate,
            sent=time.time(),
            deadline=receipt.deadline,
        )
        answer: dict[str, Any] = {}
        answers = self._post_retrying(
            request, "callback", body, self._retry_seconds, answer, result.times
        )
        if isinstance(answer.get("error"), dict):
            result.code = answer["error"].get("code")
        if "applied" in answer:
            result.applied = bool(answer["applied"])
        result.answers = answers
        result.final = answers[-1] if answers else 0
        with self._lock:
            self.callbacks.append(result)

    def _post_retrying(
        self,
        request: dict[str, Any],
        path: str,
        body: dict[str, Any],
        patience: float,
        answer: dict[str, Any],
        times: list[float] | None = None,
    ) -> list[int]:
        """POST to a random gateway until an answer below 500 or ``patience`` runs out;
        the statuses of every try, and the final answer's JSON body into ``answer``."""
        tail = request["callback"]["url"].split("/tasks/", 1)[1].rsplit("/", 1)[0]
        headers = {
            "Authorization": f"Bearer {request['callback']['token']}",
            "Content-Type": "application/json",
        }
        payload = json.dumps(body).encode()
        answers: list[int] = []
        give_up = time.monotonic() + patience
        pause = 0.1
        while True:
            with self._rng_lock:
                gateway = self._rng.choice(self.gateways)
            with self._lock:
                self.callback_tries += 1
            try:
                response = self._http.request(
                    "POST", f"{gateway}/tasks/{tail}/{path}", body=payload, headers=headers
                )
            except urllib3.exceptions.HTTPError:
                answers.append(0)  # no connection, or no answer
                if times is not None:
                    times.append(time.time())
            else:
                answers.append(response.status)
                if times is not None:
                    times.append(time.time())
                if response.status < 500:
                    with contextlib.suppress(ValueError):
                        answer.update(json.loads(response.data or b"{}"))
                    return answers
            if time.monotonic() + pause > give_up or self._stopping.is_set():
                return answers
            time.sleep(pause)
            pause = min(1.0, pause * 2)
