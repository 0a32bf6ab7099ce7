"""The algorithm service of the chaos run: one HTTP server on loopback (threads, in the
parent process) serving every algorithm, flaky the way real services are.

Each task message carries its plan in ``input.chaos``: ``plan`` lists one behaviour per
dispatch the service receives for the task (the last one repeats), ``run`` the work
time, ``dup`` whether to call back twice (``"seq"``: again after the first answer,
``"twin"``: two at once), ``late`` how long after the deadline a ``slow`` callback comes.

Behaviours: ``ok`` (202, work, upload the result, call back "succeeded"), ``fail``
(call back "failed"), ``503`` and ``400`` (answer the dispatch so), ``slow`` (202, then
upload and call back only after the attempt's deadline: Baton must have timed it out,
so the late callback gets 409 and changes nothing), ``silent`` (202, work for ``hold``
seconds, far past the timeout, and never call back), ``beat`` (202, work past the
timeout while sending heartbeats, then call back; a heartbeat answered 409 stops it).

Cancels: an algorithm may be served with a cancel URL per endpoint
(``<endpoint>/cancel``). A cancel request is verified and parsed with
``parse_cancel_request``; one for an attempt the service never had is answered 404 and
remembered, so that a dispatch of that attempt arriving later is answered 202 and not
worked on. An ``honest`` algorithm stops the attempt's work and answers 200 every time;
a ``flaky`` one refuses some cancel requests (503, or the connection dropped without an
answer) and keeps working meanwhile, and refuses every one for a share of its attempts
(``stubborn``), which then run on past the grace, until their own end. Whatever Baton
does, the service keeps working on an attempt until its work ends or its cancel is
acknowledged: ``Receipt.stopped`` is when, the service's true load.

It is built on the client SDK, as a real service is: each dispatch request is verified
and parsed with ``Dispatch.from_request`` (a forged or altered one is answered 401 and
counted), the result goes up with ``attempt.upload_result`` (with its checksum), and
heartbeats and callbacks are ``attempt.heartbeat``, ``succeed`` and ``fail``, with the
SDK's retries of 5xx (honouring ``Retry-After``) and connection errors.

An algorithm may be served on several paths, one per endpoint (``/vision/1``,
``/vision/2``): the algorithm is the request's own ``algorithm``, the endpoint the path.
A flaky endpoint answers a share of its requests 503 with ``Retry-After`` (``busy``),
whatever the task's plan, which it does not move on: a server that is full, not a task
that fails.

Each callback or heartbeat goes to a random worker's gateway (any Lambda instance
serves any request): the attempt is re-pointed at it, and its retries stay there. Every
dispatch received and every callback's final answer is recorded with wall-clock times
(the workers' clocks are the same system clock) for the checks.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from baton_sdk import Attempt, BatonError, Dispatch, InvalidSignature, parse_cancel_request
from baton_sdk._http import RetryPolicy
from baton_sdk.contracts import CallbackAnswer

ACCEPTING = ("ok", "fail", "slow", "silent", "beat")
BUSY = "busy"  # a flaky endpoint's 503 with Retry-After
BUSY_RETRY_AFTER = 1
AFTER_CANCEL = "after_cancel"  # a dispatch whose cancel came first: 202, no work
HONEST, FLAKY = "honest", "flaky"  # how an algorithm's service answers cancel requests
NO_ANSWER = 0  # a cancel request whose connection is dropped without an answer


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
    stopped: float | None = None  # when its work stopped (done, refused or cancelled)
    cancelled: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def key(self) -> tuple[str, int]:
        return self.task_id, self.attempt

    def stop(self, moment: float) -> None:
        if self.stopped is None:
            self.stopped = moment

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "cancelled"}


@dataclass
class CancelReceipt:
    """One cancel request as the service saw it, and its answer (0: none)."""

    task_id: str
    attempt: int
    algorithm: str
    reason: str
    received: float
    answer: int
    known: bool  # the service had the attempt


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


class _Stopping(Exception):
    """The run is over: a retry loop stops instead of sleeping."""


class ChaosAlgorithmService:
    def __init__(self, seed: int, callback_retries: int = 50) -> None:
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._lock = threading.Lock()
        # About 40 s of patience: backoff from 0.1 s doubling to at most 1 s, as before.
        self._callback_retries = callback_retries
        self._active = 0
        self._idle = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self.gateways: list[str] = []
        self.secrets: dict[str, Sequence[str]] = {}
        """Per algorithm, the ``whsec_`` secrets its dispatch requests verify with."""
        self.forged: list[str] = []
        self.receipts: list[Receipt] = []
        self.callbacks: list[CallbackResult] = []
        self.seen: Counter[str] = Counter()
        self.heartbeats: Counter[int] = Counter()
        self.uploads_failed = 0
        self.callback_tries = 0
        self.flaky: dict[str, float] = {}  # endpoint URL -> share of requests answered busy
        self.cancel_modes: dict[str, str] = {}  # algorithm -> HONEST or FLAKY
        self.cancel_refusals = 0.35  # of a flaky service's cancel requests refused
        self.stubborn_share = 0.2  # of a flaky service's attempts whose cancels all are
        self.cancels: list[CancelReceipt] = []
        self._by_key: dict[tuple[str, int], Receipt] = {}
        self._cancelled_first: set[tuple[str, int]] = set()
        self._stubborn: dict[tuple[str, int], bool] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> ChaosAlgorithmService:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:  # the run is over: every attempt's work stops now
            for receipt in self.receipts:
                receipt.cancelled.set()
        self.server.shutdown()
        self.server.server_close()

    def endpoint(self, algorithm: str, number: int | None = None) -> str:
        """The URL of an algorithm's endpoint (``number``: one of several)."""
        host, port = self.server.server_address[:2]
        path = algorithm if number is None else f"{algorithm}/{number}"
        return f"http://{host!s}:{port}/{path}"

    def cancel_url(self, endpoint: str) -> str:
        """The cancel URL of an endpoint (see ``endpoint``)."""
        return f"{endpoint}/cancel"

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
                body = self.rfile.read(length)
                path = self.path.strip("/")
                algorithm = path.split("/")[0]  # /vision/2: an endpoint of vision
                if path.endswith("/cancel"):
                    status = service._cancel(algorithm, body, dict(self.headers.items()))
                    if status == NO_ANSWER:
                        self.close_connection = True
                        return
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                try:
                    secrets = service.secrets.get(algorithm)
                    if not secrets:
                        raise InvalidSignature(f"no secret for {algorithm!r}")
                    attempt = Dispatch.from_request(body, dict(self.headers.items()), secrets)
                except BatonError as exc:
                    with service._lock:
                        service.forged.append(f"{algorithm}: {exc}")
                    self.send_response(401 if isinstance(exc, InvalidSignature) else 422)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                receipt = service._receive(path, attempt)
                self.send_response(receipt.answer)
                if receipt.behaviour == BUSY:
                    self.send_header("Retry-After", str(BUSY_RETRY_AFTER))
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}' if receipt.answer < 300 else b'{"error": "no"}')
                receipt.answered = time.time()
                if receipt.answer < 300 and receipt.behaviour != AFTER_CANCEL:
                    service._spawn(service._work, receipt, attempt)
                else:
                    receipt.stop(receipt.answered)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def _receive(self, path: str, attempt: Attempt) -> Receipt:
        received = time.time()
        plan = attempt.input["chaos"]["plan"]
        task_id = attempt.task_id
        host, port = self.server.server_address[:2]
        endpoint = f"http://{host!s}:{port}/{path}"
        with self._rng_lock:
            busy = self._rng.random() < self.flaky.get(endpoint, 0.0)
        with self._lock:
            if (task_id, attempt.number) in self._cancelled_first:
                behaviour = AFTER_CANCEL
            elif busy:
                behaviour = BUSY
            else:
                nth = self.seen[task_id]
                self.seen[task_id] += 1
                behaviour = plan[min(nth, len(plan) - 1)]
            receipt = Receipt(
                task_id=task_id,
                attempt=attempt.number,
                algorithm=attempt.algorithm,
                behaviour=behaviour,
                received=received,
                deadline=attempt.deadline.timestamp(),
                endpoint=endpoint,
                cost=attempt.cost,
                answer=503
                if behaviour == BUSY
                else 202
                if behaviour in (*ACCEPTING, AFTER_CANCEL)
                else int(behaviour),
            )
            self.receipts.append(receipt)
            self._by_key[receipt.key] = receipt
        return receipt

    # -- the cancel endpoint ----------------------------------------------------------------

    def _cancel(self, algorithm: str, body: bytes, headers: dict[str, str]) -> int:
        """The answer to one cancel request: the work stops before a 2xx goes out."""
        received = time.time()
        try:
            secrets = self.secrets.get(algorithm)
            if not secrets:
                raise InvalidSignature(f"no secret for {algorithm!r}")
            cancel = parse_cancel_request(body, headers, secrets)
        except BatonError as exc:
            with self._lock:
                self.forged.append(f"{algorithm} cancel: {exc}")
            return 401 if isinstance(exc, InvalidSignature) else 422
        key = (cancel.task_id, cancel.attempt)
        mode = self.cancel_modes.get(cancel.algorithm, HONEST)
        with self._rng_lock:
            stubborn = self._stubborn.setdefault(key, self._rng.random() < self.stubborn_share)
            refuse = mode == FLAKY and (stubborn or self._rng.random() < self.cancel_refusals)
            refusal = self._rng.choice((503, NO_ANSWER))
        with self._lock:
            receipt = self._by_key.get(key)
            if receipt is None:
                # Not seen yet: its dispatch, if it comes, is not worked on.
                self._cancelled_first.add(key)
                answer = 404
            elif refuse:
                answer = refusal
            else:
                receipt.stop(received)
                receipt.cancelled.set()
                answer = 200
            self.cancels.append(
                CancelReceipt(
                    cancel.task_id,
                    cancel.attempt,
                    cancel.algorithm,
                    cancel.reason,
                    received,
                    answer,
                    receipt is not None,
                )
            )
        return answer

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

    def _work(self, receipt: Receipt, attempt: Attempt) -> None:
        try:
            self._do_work(receipt, attempt)
        finally:
            receipt.stop(time.time())

    def _working(self, receipt: Receipt, seconds: float) -> bool:
        """Work for ``seconds``; False if the attempt was cancelled (or the run ended)
        meanwhile: its work stops there."""
        if receipt.cancelled.wait(max(0.0, seconds)):
            return False
        return not self._stopping.is_set()

    def _do_work(self, receipt: Receipt, attempt: Attempt) -> None:
        chaos = attempt.input["chaos"]
        behaviour = receipt.behaviour
        if behaviour == "silent":
            self._working(receipt, float(chaos.get("hold", 0.0)))
            return
        if behaviour == "slow":
            if not self._working(receipt, receipt.deadline + float(chaos["late"]) - time.time()):
                return
        elif behaviour == "beat":
            if not self._work_with_heartbeats(receipt, attempt, float(chaos["timeout"])):
                return
        elif not self._working(receipt, float(chaos["run"])):
            return
        succeeded = behaviour != "fail"
        if succeeded:
            self._upload(attempt)
        receipt.reported = time.time()
        receipt.stop(receipt.reported)
        dup = chaos.get("dup")
        if dup == "twin":
            self._spawn(self._call_back, receipt, attempt, succeeded, True)
        self._call_back(receipt, attempt, succeeded, False)
        if dup == "seq":
            with self._rng_lock:
                pause = self._rng.uniform(0.0, 0.3)
            time.sleep(pause)
            self._call_back(receipt, attempt, succeeded, True)

    def _work_with_heartbeats(self, receipt: Receipt, attempt: Attempt, timeout: float) -> bool:
        """Work 1.6 timeouts long, reporting progress every third of a timeout; False if
        the work stopped early (cancelled, or a heartbeat answered 409: the attempt is
        over, as the contract tells the service)."""
        ends = time.time() + 1.6 * timeout
        progress = 0
        while time.time() < ends:
            if not self._working(receipt, min(timeout / 3, max(0.0, ends - time.time()))):
                return False
            progress = min(99, progress + 20)
            status = 200
            try:
                answer = self._via_a_gateway(attempt, attempts=3).heartbeat(progress=progress)
            except _Stopping:
                return False
            except BatonError as exc:
                status = exc.status or 0  # 409: the attempt ended; 0: no answer
            else:
                # the attempt now ends later
                receipt.deadline = max(receipt.deadline, answer.deadline.timestamp())
            with self._lock:
                self.heartbeats[status] += 1
            if status == 409:
                return False
        return True

    def _upload(self, attempt: Attempt) -> None:
        policy = RetryPolicy(attempts=6, base_seconds=0.05, max_seconds=2.0, sleep=self._sleep)
        uploader = Attempt(attempt.request, retry=policy, timeout=15.0)
        try:
            uploader.upload_result(
                json.dumps({"task_id": attempt.task_id, "attempt": attempt.number}).encode(),
                "application/json",
            )
        except _Stopping:
            return
        except BatonError:
            with self._lock:
                self.uploads_failed += 1

    def _call_back(
        self, receipt: Receipt, attempt: Attempt, succeeded: bool, duplicate: bool
    ) -> None:
        result = CallbackResult(
            task_id=receipt.task_id,
            attempt=receipt.attempt,
            status="succeeded" if succeeded else "failed",
            duplicate=duplicate,
            sent=time.time(),
            deadline=receipt.deadline,
        )
        tries = [1]
        via = self._via_a_gateway(attempt, self._callback_retries, tries)
        try:
            answer: CallbackAnswer = (
                via.succeed()
                if succeeded
                else via.fail("unreadable", "the document is not readable")
            )
        except _Stopping:
            result.final = 0
        except BatonError as exc:
            # 409 (ended: its code says why), 401; or None: the retries ran out on no answer
            result.final = exc.status or 0
            result.code = exc.code
        else:
            result.final = 200
            result.applied = answer.applied
        result.answers = [result.final]
        result.times = [time.time()]  # when the final answer came
        with self._lock:
            self.callbacks.append(result)
            self.callback_tries += tries[0]

    def _via_a_gateway(
        self, attempt: Attempt, attempts: int, tries: list[int] | None = None
    ) -> Attempt:
        """The attempt, its callback URL at a random worker's gateway, retrying with
        backoff from 0.1 s doubling to at most 1 s (``tries[0]`` counts the tries)."""
        with self._rng_lock:
            gateway = self._rng.choice(self.gateways)
        tail = attempt.request.callback.url.split("/tasks/", 1)[1]
        callback = attempt.request.callback.model_copy(update={"url": f"{gateway}/tasks/{tail}"})

        def sleep(seconds: float) -> None:
            if tries is not None:
                tries[0] += 1
            self._sleep(seconds)

        policy = RetryPolicy(attempts=attempts, base_seconds=0.1, max_seconds=1.0, sleep=sleep)
        return Attempt(
            attempt.request.model_copy(update={"callback": callback}), retry=policy, timeout=15.0
        )

    def _sleep(self, seconds: float) -> None:
        if self._stopping.wait(seconds):
            raise _Stopping
