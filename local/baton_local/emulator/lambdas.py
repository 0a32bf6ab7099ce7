"""Functions run like Lambda: each instance of a function is a worker process of its
own (spawned, or forked from a process with the libraries of ``preload`` imported)
serving one event at a time, and a function scales out
to more instances as its events need them (``FunctionPool``). A worker's
``os.environ`` is exactly the function's environment plus what the Lambda runtime
itself sets; it imports the handler from the function's code directory at cold start
and calls it per event with a Lambda context. A timed-out or crashed worker is
replaced (the next event gets a cold start).

This module is imported by the workers: it keeps its imports to the standard library."""

from __future__ import annotations

import contextlib
import importlib
import json
import multiprocessing
import os
import queue
import resource
import secrets
import signal
import sys
import threading
import time
import traceback
import types
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

INIT_TIMEOUT_SECONDS = 60.0  # a cold start on a busy laptop (Lambda allows 10 s)
STOP_GRACE_SECONDS = 3.0


@dataclass(frozen=True)
class FunctionSpec:
    """Everything a worker needs, resolved by the parent (picklable)."""

    logical_id: str
    name: str
    arn: str
    code_dir: str
    handler: str
    timeout: float
    memory_mb: int
    environment: dict[str, str]
    log_path: str
    log_format: str = "Text"


@dataclass
class Invocation:
    """One finished invocation, as the emulator records it."""

    function: str
    source: str
    request_id: str
    ok: bool
    result: Any
    duration_ms: float
    error: dict[str, Any] | None = None
    kind: str = "invoke"
    """What invoked it: "invoke", "schedule", "sqs", "api" or "custom resource"."""
    outcome: str = ""
    """The outcome in words, when its source has some ("3 ok, 1 rejected", "200")."""

    @property
    def error_text(self) -> str:
        if self.error is None:
            return ""
        return f"{self.error.get('errorType', 'Error')}: {self.error.get('errorMessage', '')}"


class PoolStopped(Exception):
    """The function is shutting down; the event was not delivered."""


# -- the worker process -------------------------------------------------------------------


class LambdaContext:
    """The context object of the Python runtime (``awslambdaric``): memory is a string
    there too."""

    function_version = "$LATEST"
    client_context = None
    identity = None

    def __init__(self, spec: FunctionSpec, request_id: str, deadline: float) -> None:
        self.function_name = spec.name
        self.memory_limit_in_mb = str(spec.memory_mb)
        self.invoked_function_arn = spec.arn
        self.aws_request_id = request_id
        self.log_group_name = spec.environment.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = spec.environment.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def _load_handler(handler: str) -> Callable[[Any, Any], Any]:
    """``app.lambda_handler`` or ``path/to/module.function``, as the runtime reads it."""
    module_path, _, attribute = handler.rpartition(".")
    if not module_path or not attribute:
        raise ValueError(f"Bad handler '{handler}': not enough values to unpack")
    module = importlib.import_module(module_path.replace("/", "."))
    function = getattr(module, attribute, None)
    if not callable(function):
        raise AttributeError(f"Handler '{attribute}' missing on module '{module_path}'")
    return function  # type: ignore[no-any-return]


def _error_payload(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_exception(exc)[1:],
    }


class _Platform:
    """The runtime's own log lines (START / END / REPORT, or their JSON events)."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec
        self.json = spec.log_format.upper() == "JSON"

    def _emit(self, kind: str, record: dict[str, Any], text: str) -> None:
        if self.json:
            now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            line = json.dumps({"time": now, "type": f"platform.{kind}", "record": record})
        else:
            line = text
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def start(self, request_id: str) -> None:
        self._emit(
            "start",
            {"requestId": request_id, "version": "$LATEST"},
            f"START RequestId: {request_id} Version: $LATEST",
        )

    def report(self, request_id: str, duration_ms: float, status: str) -> None:
        memory = _peak_memory_mb()
        metrics = {
            "durationMs": round(duration_ms, 2),
            "billedDurationMs": int(duration_ms) + 1,
            "memorySizeMB": self.spec.memory_mb,
            "maxMemoryUsedMB": memory,
        }
        self._emit(
            "runtimeDone",
            {"requestId": request_id, "status": status},
            f"END RequestId: {request_id}",
        )
        self._emit(
            "report",
            {"requestId": request_id, "metrics": metrics, "status": status},
            f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
            f"Billed Duration: {metrics['billedDurationMs']} ms\t"
            f"Memory Size: {self.spec.memory_mb} MB\tMax Memory Used: {memory} MB",
        )


def _peak_memory_mb() -> int:
    """This process's peak resident memory (``ru_maxrss`` would include the parent's:
    Linux carries it across exec)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) // 1024


def _trace_header() -> str:
    return (
        f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};"
        f"Parent={secrets.token_hex(8)};Sampled=0;Lineage=1:{secrets.token_hex(4)}:0"
    )


def worker_main(spec: FunctionSpec, connection: Connection) -> None:
    """The body of a worker process: become the function's sandbox, then serve events."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the emulator, which stops us
    os.environ.clear()
    os.environ.update(spec.environment)
    time.tzset()
    log = open(spec.log_path, "ab", buffering=0)  # noqa: SIM115 - the process's stdout from now on
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    os.chdir(spec.code_dir)
    sys.path.insert(0, spec.code_dir)
    try:
        handler = _load_handler(spec.handler)
    except Exception as exc:  # reported to the caller like Lambda's init error
        error_type = "Runtime.ImportModuleError" if isinstance(exc, ImportError) else None
        payload = _error_payload(exc, error_type)
        sys.stderr.write(json.dumps(payload) + "\n")
        connection.send(("init_error", payload))
        return
    connection.send(("ready", None))
    platform = _Platform(spec)
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if message is None:
            # Lambda freezes and drops a sandbox: no interpreter teardown to wait for.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        request_id, event_json, deadline = message
        os.environ["_X_AMZN_TRACE_ID"] = _trace_header()
        platform.start(request_id)
        started = time.perf_counter()
        reply: tuple[str, Any]
        try:
            result = handler(json.loads(event_json), LambdaContext(spec, request_id, deadline))
            try:
                reply = ("ok", json.dumps(result))
            except (TypeError, ValueError) as exc:
                reply = ("error", _error_payload(exc, "Runtime.MarshalError"))
        except Exception as exc:  # an error of the function is its answer
            reply = ("error", _error_payload(exc))
            sys.stderr.write(json.dumps({**reply[1], "requestId": request_id}) + "\n")
        duration_ms = (time.perf_counter() - started) * 1000
        platform.report(request_id, duration_ms, "success" if reply[0] == "ok" else "error")
        connection.send(reply)


# -- the parent side ----------------------------------------------------------------------

_SPAWN_LOCK = threading.Lock()
_PRELOAD: list[str] = []


def preload(modules: list[str]) -> None:
    """Modules imported once, by the process every instance is forked from, so that an
    instance's cold start imports only its handler's own code. Only libraries that read
    no environment at import time belong here: they are imported before an instance
    has its function's environment. Takes effect for instances started afterwards."""
    with _SPAWN_LOCK:
        for module in modules:
            if module not in _PRELOAD:
                _PRELOAD.append(module)


def _context() -> multiprocessing.context.SpawnContext | multiprocessing.context.ForkServerContext:
    # Without anything to preload, a fresh interpreter per instance, as Lambda starts one.
    if not _PRELOAD or "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(_PRELOAD))
    return context


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """A spawned process re-imports the parent's ``__main__`` (a script without an
    ``if __name__ == "__main__"`` guard would run again in every worker). A Lambda
    sandbox runs only its handler, so the worker is started with ``__main__`` hidden."""
    with _SPAWN_LOCK:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            if main is not None:
                sys.modules["__main__"] = main


class Worker:
    """One sandbox of a function: a process, started on demand (or ahead, to prewarm)."""

    def __init__(self, spec: FunctionSpec, index: int) -> None:
        self.spec = spec
        self.index = index
        self._process: multiprocessing.process.BaseProcess | None = None
        self._connection: Connection | None = None
        self._ready = False
        self.busy = False
        self.stopped = False

    def start(self) -> None:
        if self.stopped or (self._process is not None and self._process.is_alive()):
            return
        self._discard()
        context = _context()
        parent_end, child_end = context.Pipe(duplex=True)
        process = context.Process(
            target=worker_main,
            args=(self.spec, child_end),
            name=f"lambda-{self.spec.logical_id}-{self.index}",
            daemon=True,
        )
        with _main_module_hidden():
            process.start()
        child_end.close()
        self._process, self._connection, self._ready = process, parent_end, False

    def invoke(self, request_id: str, event_json: str) -> tuple[bool, Any, dict[str, Any] | None]:
        """(ok, result, error) of one event; the worker is replaced after a timeout or crash."""
        self.busy = True
        try:
            return self._invoke(request_id, event_json)
        finally:
            self.busy = False

    def _invoke(self, request_id: str, event_json: str) -> tuple[bool, Any, dict[str, Any] | None]:
        init_error = self.warm()
        if init_error is not None:
            return False, None, init_error
        connection, process = self._connection, self._process
        timeout = self.spec.timeout
        try:
            if connection is None:
                raise EOFError
            connection.send((request_id, event_json, time.time() + timeout))
            if not connection.poll(timeout + 0.5):
                self._append_log(f"{request_id} Task timed out after {timeout:.2f} seconds")
                self._discard()
                message = f"Task timed out after {timeout:.2f} seconds"
                return False, None, {"errorType": "Sandbox.Timedout", "errorMessage": message}
            status, payload = connection.recv()
        except (EOFError, OSError):
            code = process.exitcode if process is not None else None
            self._discard()
            message = (
                f"RequestId: {request_id} Error: Runtime exited with error: exit status {code}"
            )
            return False, None, {"errorType": "Runtime.ExitError", "errorMessage": message}
        if status == "ok":
            return True, json.loads(payload), None
        return False, None, dict(payload)

    def warm(self) -> dict[str, Any] | None:
        """Start the process and wait for its cold start; the init error, if any (the
        worker is then dropped: the next event starts a fresh one, as Lambda does)."""
        self.start()
        if self._connection is None:
            return {"errorType": "Runtime.ExitError", "errorMessage": "the sandbox was stopped"}
        if self._ready:
            return None
        init_error = self._await_ready()
        if init_error is not None:
            self._discard()
        return init_error

    def _await_ready(self) -> dict[str, Any] | None:
        connection = self._connection
        try:
            if connection is None:
                raise EOFError
            if not connection.poll(INIT_TIMEOUT_SECONDS):
                return {
                    "errorType": "Runtime.InitTimeout",
                    "errorMessage": "cold start took too long",
                }
            status, payload = connection.recv()
        except (EOFError, OSError):
            return {"errorType": "Runtime.ExitError", "errorMessage": "Runtime exited during init"}
        if status == "init_error":
            return dict(payload)
        self._ready = True
        return None

    def _append_log(self, line: str) -> None:
        with contextlib.suppress(OSError), open(self.spec.log_path, "a") as log:
            log.write(line + "\n")

    def _discard(self) -> None:
        if self._connection is not None:
            self._connection.close()
        if self._process is not None and self._process.is_alive():
            self._process.kill()
            self._process.join(STOP_GRACE_SECONDS)
        self._process, self._connection, self._ready = None, None, False

    def stop(self) -> None:
        self.stopped = True
        if self.busy:
            self._discard()
            return
        if self._ready and self._process is not None and self._connection is not None:
            with contextlib.suppress(OSError, BrokenPipeError):
                self._connection.send(None)
            self._process.join(STOP_GRACE_SECONDS)
        self._discard()  # a worker still in its cold start is simply killed


@dataclass
class _AsyncEvent:
    event: Any
    source: str
    key: str | None
    retries_left: int
    kind: str = "event"


@dataclass
class FunctionPool:
    """A function's instances and its asynchronous event queue, scaled as Lambda scales
    a function: an event goes to an idle instance (the one used last, so that a quiet
    function keeps one warm), else to a new instance while fewer than ``concurrency``
    exist (a process of its own, with its own cold start), else it waits for one to
    become free. Instances are never started ahead but by ``prewarm``.

    ``invoke`` is a synchronous (RequestResponse) invocation. ``invoke_async`` is an
    Event invocation (schedules): queued, retried on error ``retry_attempts`` times
    after ``retry_delays`` (scaled) like Lambda's async retries; an event whose ``key``
    is already waiting is dropped (timers that fire faster than the function runs do
    not pile up). ``peak`` is the most instances ever busy at once."""

    spec: FunctionSpec
    concurrency: int
    record: Callable[[Invocation], None]
    retry_attempts: int = 2
    retry_delays: tuple[float, float] = (60.0, 120.0)
    peak: int = 0
    _instances: list[Worker] = field(default_factory=list)
    _idle: list[Worker] = field(default_factory=list)
    _busy: int = 0
    _warming: int = 0
    _available: threading.Condition = field(default_factory=threading.Condition)
    _async: queue.Queue[_AsyncEvent | None] = field(default_factory=queue.Queue)
    _waiting_keys: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)
    _timers: list[threading.Timer] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.concurrency = max(1, self.concurrency)
        # As many async consumers as instances may run: Lambda's internal queue feeds
        # the function at its concurrency, not one event at a time.
        for index in range(self.concurrency):
            thread = threading.Thread(
                target=self._serve_async, name=f"async-{self.spec.logical_id}-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    @property
    def instances(self) -> int:
        """Instances started so far (at most ``concurrency``)."""
        with self._available:
            return len(self._instances)

    def prewarm(self, instances: int = 1) -> None:
        """Start up to ``instances`` instances now and wait for their cold starts (an
        event arriving meanwhile waits for one rather than starting yet another: the
        instance already starting is ready sooner)."""
        for _ in range(min(instances, self.concurrency)):
            with self._available:
                if self._stopping.is_set() or len(self._instances) >= min(
                    instances, self.concurrency
                ):
                    return
                worker = self._new_instance()
                self._warming += 1
            try:
                worker.warm()
            finally:
                with self._available:
                    self._warming -= 1
                    self._idle.append(worker)
                    self._available.notify_all()

    def invoke(
        self,
        event: Any,
        source: str,
        *,
        kind: str = "invoke",
        describe: Callable[[Invocation], str] | None = None,
    ) -> Invocation:
        """One synchronous invocation; ``describe`` words its outcome for the console
        before it is recorded (an SQS batch's "3 ok, 1 rejected")."""
        worker = self._acquire()
        try:
            request_id = str(uuid.uuid4())
            started = time.perf_counter()
            ok, result, error = worker.invoke(request_id, json.dumps(event))
            invocation = Invocation(
                function=self.spec.logical_id,
                source=source,
                request_id=request_id,
                ok=ok,
                result=result,
                duration_ms=(time.perf_counter() - started) * 1000,
                error=error,
                kind=kind,
            )
        finally:
            self._release(worker)
        if describe is not None:
            invocation.outcome = describe(invocation)
        self.record(invocation)
        return invocation

    def invoke_async(
        self, event: Any, source: str, key: str | None = None, kind: str = "event"
    ) -> bool:
        """Queue an Event invocation; False when an event with this key is still waiting."""
        with self._lock:
            if self._stopping.is_set() or (key is not None and key in self._waiting_keys):
                return False
            if key is not None:
                self._waiting_keys.add(key)
        self._async.put(_AsyncEvent(event, source, key, self.retry_attempts, kind))
        return True

    def _new_instance(self) -> Worker:
        worker = Worker(self.spec, len(self._instances))
        self._instances.append(worker)
        return worker

    def _acquire(self) -> Worker:
        with self._available:
            while not self._stopping.is_set():
                if self._idle:
                    worker = self._idle.pop()
                elif self._warming == 0 and len(self._instances) < self.concurrency:
                    worker = self._new_instance()
                else:
                    self._available.wait(0.2)
                    continue
                self._busy += 1
                self.peak = max(self.peak, self._busy)
                return worker
        raise PoolStopped(self.spec.logical_id)

    def _release(self, worker: Worker) -> None:
        with self._available:
            self._busy -= 1
            self._idle.append(worker)
            self._available.notify()

    def _serve_async(self) -> None:
        while True:
            item = self._async.get()
            if item is None:
                return
            with self._lock:
                if item.key is not None:
                    self._waiting_keys.discard(item.key)
            try:
                invocation = self.invoke(item.event, item.source, kind=item.kind)
            except PoolStopped:
                return
            if not invocation.ok and item.retries_left > 0:
                attempt = self.retry_attempts - item.retries_left
                delay = self.retry_delays[min(attempt, len(self.retry_delays) - 1)]
                retry = _AsyncEvent(
                    item.event, f"{item.source} (retry)", None, item.retries_left - 1, item.kind
                )
                timer = threading.Timer(delay, self._async.put, args=(retry,))
                timer.daemon = True
                self._timers.append(timer)
                timer.start()

    def stop(self) -> None:
        """Idle instances leave at once; busy or still cold ones are killed (their event
        fails, as when Lambda tears a sandbox down)."""
        self._stopping.set()
        with self._available:
            self._available.notify_all()
            instances = list(self._instances)
        for timer in self._timers:
            timer.cancel()
        for _ in self._threads:
            self._async.put(None)
        for worker in instances:
            worker.stop()
        for thread in self._threads:
            thread.join(1)
