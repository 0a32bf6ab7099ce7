"""What one task costs: statements, round trips, CPU, log bytes, cold starts and dollars.

The whole lifecycle runs through the real handlers (functions/<name>/app.py, invoked
in-process one event at a time per function, as one Lambda instance each): a producer
sends N task messages (default 500) to the intake queue, a real SQS queue on moto,
which runs as a server in a process of its own; the event source mapping receives
them in batches of 10 and invokes intake, whose fast path stores and dispatches them
to a no-op algorithm service on loopback (bench.cost_service, another process), which
uploads a result and calls back at once through a loopback API Gateway into the
callback function. Redis and MariaDB are the real servers on this machine, on a
database of the run's own, created and dropped by it. Each batch's callbacks are
awaited before the next batch is received, so every task finds a free slot.

Counted per task, after a warm-up that is not counted:

- SQL statements by kind, commits, rollbacks and pings, in the process (SQLAlchemy's
  cursor events and the dialect's commit, rollback and ping calls, on Baton's engine
  alone: these are the database round trips), and on the server (``SHOW GLOBAL
  STATUS`` deltas, InnoDB handler commits and fsyncs included). The server is shared
  with whatever else runs on this machine, so its figures are an upper bound; the
  client's are Baton's own.
- Redis commands and round trips, in the process (the client's ``execute_command``,
  and a pipeline's ``execute``: one round trip for its whole stack), and on the server
  (``INFO commandstats``, which also counts the commands Lua scripts run; shared too).
- AWS calls by operation (botocore's ``before-call`` event): Baton's own, the event
  source mapping's (Lambda's poller, billed as SQS requests) and the producer's.
- Handler invocations, each handler's CPU (``time.thread_time`` of the thread that
  runs it, and of the pool threads it sends dispatch requests from) and wall time;
  the whole process's CPU beside it (handlers, the loopback gateway, the event source
  mapping and the counters: moto and the service run in processes of their own).
- Log bytes at the default level (INFO): every line Powertools' Logger writes, and
  the metrics' EMF lines, as they reach stdout (CloudWatch ingests them as is).
- Latency: submit (the start of the intake invocation that carries the message) ->
  the dispatch request's arrival at the service, and the callback invocation, p50/p95.

Then one tick of each scheduled function on an idle system (the fixed cost of the
timers), and the cold start of each handler: import plus first invocation in a fresh
python3.12 interpreter (medians of ``--cold-samples``), against the layers built by
the same Makefile targets as ``sam build`` runs (the dependency layer's wheels for this
machine's architecture instead of arm64, so that they load here), bytecode not
writable as on Lambda's read-only /opt, with the packages whose import time dominates
(``-X importtime``, self time summed per top-level package).

Dollars per million tasks come from these figures at the list prices of PRICES (the
README's performance section shows the same table). Lambda duration at 512 MB: a
function gets 512/1769 of a vCPU, so its CPU time stretches by 1769/512, while the
time it waits on the network does not.

    python -m bench.cost [--tasks 500] [--cold-samples 5] [--no-cold-start] [--json]
"""

from __future__ import annotations

import os

# Set before Baton's modules are imported: Powertools reads them when its Logger and
# Metrics are built. The default level of the template (LogLevel) is INFO; metrics on,
# so that their EMF lines are counted; no X-Ray daemon here, so no tracing.
os.environ["POWERTOOLS_LOG_LEVEL"] = "INFO"
os.environ["POWERTOOLS_SERVICE_NAME"] = "baton"
os.environ["POWERTOOLS_METRICS_NAMESPACE"] = "Baton"
os.environ["POWERTOOLS_TRACE_DISABLED"] = "1"
os.environ.pop("POWERTOOLS_METRICS_DISABLED", None)
os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")

import argparse
import hashlib
import io
import json
import logging
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore
import pymysql
import redis
import sqlalchemy as sa
from baton.observability import logger as baton_logger
from baton.runtime import Runtime, build_runtime, connect_redis, set_runtime
from baton.schema import upgrade_database
from baton.settings import load_settings

from bench.chaos import MotoServer
from tests.support.events import (
    api_event,
    schedule_event,
    sqs_event,
    sqs_record,
    task_body,
)
from tests.support.gateway import CallbackGateway
from tests.support.handlers import FUNCTION_NAMES, ROOT, FakeLambdaContext, Handlers

MYSQL = os.environ.get("BATON_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
REDIS = os.environ.get("BATON_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REGION = os.environ["AWS_DEFAULT_REGION"]
TOKEN_SECRET = "bench-token-secret-of-at-least-32-chars"
CAP = 64  # room for a whole batch: every task finds a free slot
BATCH = 10  # the event source mapping's batch size (template: BatchSize)
MEMORY_MB = 512  # template: Globals.Function.MemorySize
FULL_VCPU_MB = 1769  # Lambda gives a function one vCPU at 1,769 MB, a share below
SCHEDULED = ("promote", "dispatch", "sweep", "reconcile")
TICKS_PER_MONTH = 60 * 24 * 30  # rate(1 minute)

# List prices, us-east-1, USD (eu-west-1 is the same for these but CloudWatch Logs,
# $0.57/GB there). Free tiers left out. The README's performance section shows this table.
PRICES: dict[str, tuple[float, str]] = {
    "lambda_gb_second_arm64": (0.0000133334, "Lambda duration, per GB-second, arm64"),
    "lambda_request": (0.20 / 1e6, "Lambda, per request"),
    "api_gateway_rest_request": (3.50 / 1e6, "API Gateway REST API, per request"),
    "api_gateway_http_request": (1.00 / 1e6, "API Gateway HTTP API, per request (512 KB)"),
    "sqs_request": (0.40 / 1e6, "SQS standard, per request (64 KB)"),
    "logs_ingested_gb": (0.50, "CloudWatch Logs, standard ingestion, per GB"),
    "s3_get_head_request": (0.0004 / 1e3, "S3 Standard GET/HEAD, per request"),
    "s3_put_request": (0.005 / 1e3, "S3 Standard PUT, per request (the result: not counted)"),
    "sns_publish": (0.50 / 1e6, "SNS publish, per request (any design pays: not counted)"),
    "elasticache_ecpu": (0.0034 / 1e6, "ElastiCache Serverless (Redis OSS), per ECPU"),
    "xray_trace": (5.00 / 1e6, "X-Ray, per trace recorded"),
    "step_functions_transition": (0.025 / 1e3, "Step Functions Standard, per transition"),
}
XRAY_SAMPLED = 0.05  # the default sampling rule past its 1 request/s reservoir
STEP_FUNCTIONS_TRANSITIONS = 5  # the least a callback workflow takes (start to end)

# Lambda's own lines per invocation in the JSON log format (platform.start and
# platform.report), at their typical size with tracing on: an estimate, they are
# not written here. The template's PlatformLogLevel (WARN by default) leaves them
# out: they are counted only as what INFO would add.
PLATFORM_LINES = (
    '{"time":"2026-12-01T10:00:00.000Z","type":"platform.start","record":{"requestId":'
    '"6d68ca91-49c9-448d-89b8-7ca3e6dc66aa","version":"$LATEST"}}',
    '{"time":"2026-12-01T10:00:00.050Z","type":"platform.report","record":{"requestId":'
    '"6d68ca91-49c9-448d-89b8-7ca3e6dc66aa","metrics":{"durationMs":48.21,'
    '"billedDurationMs":49,"memorySizeMB":512,"maxMemoryUsedMB":121},"tracing":{"spanId":'
    '"6a1c3e1f9a2b4c5d","type":"X-Amzn-Trace-Id","value":"Root=1-674c3a10-'
    '2b8f2a6e3c1d4e5f6a7b8c9d;Parent=6a1c3e1f9a2b4c5d;Sampled=1"},"status":"success"}}',
)
PLATFORM_BYTES_PER_INVOCATION = sum(len(line) + 1 for line in PLATFORM_LINES)

# What Baton aims at per task (medians), and what must not grow.
GOALS = {
    "sql_statements": 12,
    "db_commits": 4,
    "handler_cpu_ms": 15,
    "cold_start_ms": 500,
    "submit_to_dispatch_p50_ms": 15,
    "callback_p50_ms": 25,
    "log_bytes": 700,
    "usd_per_million": 2.00,
    "redis_round_trips": 4.3,
}


# -- counting ---------------------------------------------------------------------------


class Meter:
    """Everything counted in the process while a window is open."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.sql: Counter[str] = Counter()
            self.connects = 0
            self.redis_commands: Counter[str] = Counter()
            self.redis_round_trips = 0
            self.aws: dict[str, Counter[str]] = defaultdict(Counter)
            self.invocations: Counter[str] = Counter()
            self.cpu_ms: dict[str, float] = defaultdict(float)
            self.wall_ms: dict[str, list[float]] = defaultdict(list)
            self.log_bytes = 0
            self.log_lines = 0
            self.emf_bytes = 0
            self.emf_lines = 0
            self.stderr_bytes = 0
            self.log_messages: Counter[str] = Counter()
            self.warnings: list[str] = []
            self.db_errors: Counter[str] = Counter()

    def count_sql(self, kind: str) -> None:
        with self._lock:
            self.sql[kind] += 1

    def count_connect(self) -> None:
        with self._lock:
            self.connects += 1

    def count_redis(self, names: list[str]) -> None:
        with self._lock:
            self.redis_round_trips += 1
            self.redis_commands.update(names)

    def count_db_error(self, error: str) -> None:
        with self._lock:
            self.db_errors[error] += 1

    def count_aws(self, caller: str, operation: str) -> None:
        with self._lock:
            self.aws[caller][operation] += 1

    def count_invocation(self, name: str, cpu_ms: float, wall_ms: float) -> None:
        with self._lock:
            self.invocations[name] += 1
            self.cpu_ms[name] += cpu_ms
            self.wall_ms[name].append(wall_ms)

    def count_output(self, line: str, stderr: bool) -> None:
        size = len(line.encode()) + 1
        with self._lock:
            if stderr:
                self.stderr_bytes += size
            elif '"_aws"' in line:
                self.emf_bytes += size
                self.emf_lines += 1
            else:
                self.log_bytes += size
                self.log_lines += 1
                try:
                    record = json.loads(line)
                except ValueError:
                    record = {"message": "(not JSON)", "level": "?"}
                self.log_messages[str(record.get("message"))[:60]] += size
                if record.get("level") not in ("INFO", "DEBUG") and len(self.warnings) < 5:
                    self.warnings.append(line[:600])


class CountingStream(io.TextIOBase):
    """Stands in for stdout or stderr: counts each line, writes nothing."""

    def __init__(self, meter: Meter, stderr: bool) -> None:
        self._meter, self._stderr = meter, stderr
        self._partial = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
        for line in lines:
            self._meter.count_output(line, self._stderr)
        return len(text)


SQL_KINDS = ("SELECT", "INSERT", "UPDATE", "DELETE")


class _Trace:
    lines: list[str] | None = None  # --trace-sql: every round trip, with what it served


def _trace(text: str) -> None:
    if _Trace.lines is not None:
        where = getattr(_invocation, "name", None) or threading.current_thread().name
        _Trace.lines.append(f"{where:<12} {' '.join(text.split())[:200]}")


def instrument_engine(engine: sa.Engine, meter: Meter, *, driver: bool = True) -> None:
    """Count every round trip Baton's engine makes: statements, commits, rollbacks
    (the pool's reset of a returned connection included), pings, new connections."""

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _statement(*args: Any) -> None:
        statement = str(args[2]).lstrip()
        kind = statement.split(None, 1)[0].upper() if statement else ""
        meter.count_sql(kind if kind in SQL_KINDS else "other")
        _trace(statement)

    @sa.event.listens_for(engine, "connect")
    def _connect(*_args: Any) -> None:
        meter.count_connect()

    @sa.event.listens_for(engine, "handle_error")
    def _error(context: sa.engine.ExceptionContext) -> None:
        meter.count_db_error(str(context.original_exception)[:160])

    # Counted on the driver's connections, whoever calls them: the dialect, or the
    # pool's own reset and idle check (baton.database), for all engines at once. The
    # benchmark's own probes (SHOW GLOBAL STATUS, autocommit) call none of these.
    if not driver:
        return
    for method, kind in (("commit", "COMMIT"), ("rollback", "ROLLBACK"), ("ping", "ping")):
        original = getattr(pymysql.connections.Connection, method)

        def counted(
            self: Any, *args: Any, _original: Any = original, _kind: str = kind, **kw: Any
        ) -> Any:
            meter.count_sql(_kind)
            _trace(_kind)
            return _original(self, *args, **kw)

        setattr(pymysql.connections.Connection, method, counted)


@contextmanager
def instrument_redis(pool: redis.ConnectionPool, meter: Meter) -> Iterator[None]:
    """Count the commands and round trips of the clients on ``pool`` (Baton's)."""
    plain = redis.Redis.execute_command
    pipelined = redis.client.Pipeline.execute
    immediate = redis.client.Pipeline.immediate_execute_command

    def execute_command(self: redis.Redis, *args: Any, **options: Any) -> Any:
        if self.connection_pool is pool:
            meter.count_redis([str(args[0]).upper()])
        return plain(self, *args, **options)  # type: ignore[no-untyped-call]

    def execute(self: redis.client.Pipeline, raise_on_error: bool = True) -> Any:
        if self.connection_pool is pool and self.command_stack:
            names = [str(command[0][0]).upper() for command in self.command_stack]
            meter.count_redis(
                [*(["MULTI", "EXEC"] if self.__dict__.get("transaction") else []), *names]
            )
        return pipelined(self, raise_on_error)

    def immediate_execute_command(self: redis.client.Pipeline, *args: Any, **options: Any) -> Any:
        # a pipeline's SCRIPT EXISTS / SCRIPT LOAD before its scripts run
        if self.connection_pool is pool:
            meter.count_redis([str(args[0]).upper()])
        return immediate(self, *args, **options)  # type: ignore[no-untyped-call]

    redis.Redis.execute_command = execute_command  # type: ignore[method-assign]
    redis.client.Pipeline.execute = execute  # type: ignore[method-assign]
    redis.client.Pipeline.immediate_execute_command = immediate_execute_command  # type: ignore[method-assign]
    try:
        yield
    finally:
        redis.Redis.execute_command = plain  # type: ignore[method-assign]
        redis.client.Pipeline.execute = pipelined  # type: ignore[method-assign]
        redis.client.Pipeline.immediate_execute_command = immediate  # type: ignore[method-assign]


def count_aws_calls(session: boto3.session.Session, caller: str, meter: Meter) -> None:
    """Count each API call of the clients this session makes from now on."""

    def before_call(model: Any, **_kwargs: Any) -> None:
        meter.count_aws(caller, f"{model.service_model.service_name}:{model.name}")

    session.events.register("before-call", before_call)


_invocation = threading.local()


@contextmanager
def worker_cpu_attributed() -> Iterator[None]:
    """Count the CPU of work a handler hands to a thread pool (dispatch requests and
    cancel requests go out from one) as the handler's: each task submitted while an
    invocation runs reports its thread's CPU to that invocation."""
    original = ThreadPoolExecutor.submit

    def submit(self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kw: Any) -> Any:
        sink: list[float] | None = getattr(_invocation, "sink", None)
        if sink is None:
            return original(self, fn, *args, **kw)
        name = f"{getattr(_invocation, 'name', '?')}/pool"

        def timed(*inner: Any, **inner_kw: Any) -> Any:
            _invocation.name = name
            started = time.thread_time()
            try:
                return fn(*inner, **inner_kw)
            finally:
                sink.append(time.thread_time() - started)

        return original(self, timed, *args, **kw)

    ThreadPoolExecutor.submit = submit  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        ThreadPoolExecutor.submit = original  # type: ignore[method-assign]


class MeteredHandlers(Handlers):
    """The handlers, each invocation timed: the CPU of its thread and of the pool
    threads it used, and the wall clock."""

    def __init__(self, meter: Meter) -> None:
        super().__init__()
        self.meter = meter
        self.callbacks_done = 0
        self.callbacks_applied = 0
        self.callback_answers: Counter[int] = Counter()
        self._done = threading.Condition()

    def invoke(self, name: str, event: dict[str, Any]) -> Any:
        with self._locks[name]:
            wall, cpu = time.perf_counter(), time.thread_time()
            workers: list[float] = []
            _invocation.sink, _invocation.name = workers, name
            status = 0
            try:
                answer = self._modules[name].lambda_handler(event, _context(name))
                if name == "callback":
                    status = int(answer["statusCode"])
                return answer
            finally:
                _invocation.sink = _invocation.name = None
                cpu_ms = (time.thread_time() - cpu + sum(workers)) * 1000
                self.meter.count_invocation(name, cpu_ms, (time.perf_counter() - wall) * 1000)
                if name == "callback":
                    with self._done:
                        self.callbacks_done += 1
                        self.callbacks_applied += status == 200
                        self.callback_answers[status] += 1
                        self._done.notify_all()

    def wait_callbacks(self, count: int, timeout: float = 60) -> None:
        with self._done:
            if not self._done.wait_for(lambda: self.callbacks_applied >= count, timeout):
                raise TimeoutError(f"{self.callbacks_applied} of {count} callbacks applied")


def _context(name: str) -> Any:
    return FakeLambdaContext(function_name=f"baton-{name}")


def server_status(connection: pymysql.connections.Connection[Any]) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute("SHOW GLOBAL STATUS")
        rows = cursor.fetchall()
    return {str(name): int(value) for name, value in rows if str(value).isdigit()}


def redis_status(client: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
    calls["total_commands_processed"] = int(client.info("stats")["total_commands_processed"])
    return calls


STATUS_KEYS = (
    "Questions",
    "Com_select",
    "Com_insert",
    "Com_update",
    "Com_delete",
    "Com_commit",
    "Com_rollback",
    "Handler_commit",
    "Innodb_data_fsyncs",
    "Innodb_os_log_fsyncs",
)


# -- the environment ----------------------------------------------------------------------


class ServiceProcess:
    """bench.cost_service in a process of its own."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.cost_service"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.base_url = f"http://127.0.0.1:{int(self._process.stdout.readline())}"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base_url}/stats", timeout=10) as answer:
            loaded: dict[str, Any] = json.load(answer)
            return loaded

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(10)


@dataclass
class Stack:
    run: str
    database_url: str
    moto: MotoServer
    service: ServiceProcess
    handlers: MeteredHandlers
    gateway: CallbackGateway
    runtime: Runtime
    env: dict[str, str]
    outside: boto3.session.Session
    queue_url: str
    meter: Meter
    redis_pool: redis.ConnectionPool
    cleanup: list[Callable[[], None]] = field(default_factory=list)


@contextmanager
def stack(meter: Meter) -> Iterator[Stack]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    run = uuid.uuid4().hex[:8]
    cleanup: list[Callable[[], None]] = []
    try:
        database = f"baton_bench_cost_{run}"
        server = sa.create_engine(MYSQL, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        with server.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE `{database}`")

        def drop_database() -> None:
            with server.connect() as connection:
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS `{database}`")

        cleanup.append(drop_database)
        url = f"{MYSQL}/{database}?charset=utf8mb4"
        upgrade_database(url)
        log_dir = Path(tempfile.mkdtemp(prefix="baton-bench-cost-"))
        cleanup.append(lambda: shutil.rmtree(log_dir, ignore_errors=True))
        moto = MotoServer(log_dir / "moto.log")
        cleanup.append(moto.stop)
        os.environ["AWS_ENDPOINT_URL"] = moto.endpoint
        service = ServiceProcess()
        cleanup.append(service.stop)

        outside = boto3.session.Session(region_name=REGION)
        count_aws_calls(outside, "outside", meter)
        bucket, prefix = f"bench-cost-{run}", f"baton-bench-cost-{run}"
        outside.client("s3").create_bucket(
            Bucket=bucket,
            CreateBucketConfiguration={"LocationConstraint": REGION},  # type: ignore[typeddict-item]
        )
        topic = outside.client("sns").create_topic(Name=f"bench-cost-{run}")["TopicArn"]
        queue_url = outside.client("sqs").create_queue(QueueName=f"bench-cost-{run}")["QueueUrl"]

        handlers = MeteredHandlers(meter)
        gateway = CallbackGateway(handlers).start()
        cleanup.append(gateway.stop)
        registry = {
            "ocr": {"endpoint": f"{service.base_url}/noop", "max_concurrency": CAP},
            "hold": {"endpoint": f"{service.base_url}/hold", "max_concurrency": CAP},
        }
        env = {
            "BATON_DATABASE_URL": url,
            "BATON_REDIS_URL": REDIS,
            "BATON_RESULT_BUCKET": bucket,
            "BATON_NOTIFICATION_TOPIC_ARN": topic,
            "BATON_CALLBACK_BASE_URL": gateway.base_url,
            "BATON_TOKEN_SECRET": TOKEN_SECRET,
            "BATON_ALGORITHMS": json.dumps(registry),
            "BATON_KEY_PREFIX": prefix,
        }
        baton_session = boto3.session.Session(region_name=REGION)
        count_aws_calls(baton_session, "baton", meter)
        client = connect_redis(REDIS, cluster=False)
        assert isinstance(client, redis.Redis)
        runtime = build_runtime(load_settings(env), redis_client=client, boto_session=baton_session)
        instrument_engine(runtime.repository._sessions.kw["bind"], meter)
        instrument_engine(runtime.repository._reads.kw["bind"], meter, driver=False)
        set_runtime(runtime)
        cleanup.append(lambda: set_runtime(None))

        def forget_keys() -> None:
            for key in client.scan_iter(match=f"{prefix}:*", count=1000):
                client.delete(key)

        cleanup.append(forget_keys)
        yield Stack(
            run=run,
            database_url=url,
            moto=moto,
            service=service,
            handlers=handlers,
            gateway=gateway,
            runtime=runtime,
            env=env,
            outside=outside,
            queue_url=queue_url,
            meter=meter,
            redis_pool=client.connection_pool,
            cleanup=cleanup,
        )
    finally:
        for step in reversed(cleanup):
            try:
                step()
            except Exception as exc:
                print(f"cleanup: {exc!r}", file=sys.stderr)


# -- the lifecycle ------------------------------------------------------------------------


@dataclass
class Window:
    """What one counted stretch of the run saw."""

    meter: Meter
    seconds: float
    process_cpu_ms: float
    server: dict[str, int]
    redis_server: dict[str, int]


@contextmanager
def quiet(meter: Meter) -> Iterator[None]:
    """Baton's log lines and EMF metrics (stdout), and stderr, counted by ``meter``
    instead of written."""
    handlers = [
        h
        for h in logging.getLogger(baton_logger.service).handlers
        if isinstance(h, logging.StreamHandler)
    ]
    streams = [h.stream for h in handlers]
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = CountingStream(meter, False), CountingStream(meter, True)
    for handler in handlers:
        handler.setStream(sys.stdout)
    try:
        yield
    finally:
        for handler, stream in zip(handlers, streams, strict=True):
            handler.setStream(stream)
        sys.stdout, sys.stderr = stdout, stderr


@contextmanager
def window(
    meter: Meter, status: Callable[[], dict[str, int]], rstatus: Callable[[], dict[str, int]]
) -> Iterator[list[Window]]:
    """Counts from a clean slate while the block runs; yields a list it fills at the end."""
    out: list[Window] = []
    before_server, before_redis = status(), rstatus()
    meter.reset()
    started, cpu = time.perf_counter(), time.process_time()
    try:
        with quiet(meter):
            yield out
    finally:
        seconds, cpu_ms = time.perf_counter() - started, (time.process_time() - cpu) * 1000
        after_server, after_redis = status(), rstatus()
        server = {k: after_server.get(k, 0) - before_server.get(k, 0) for k in STATUS_KEYS}
        server["Questions"] -= 1  # the SHOW GLOBAL STATUS of the reading itself
        redis_delta = {k: v - before_redis.get(k, 0) for k, v in after_redis.items()}
        redis_delta = {k: v for k, v in redis_delta.items() if v}
        out.append(Window(meter, seconds, cpu_ms, server, redis_delta))


def send_tasks(stack: Stack, refs: list[str], algorithm: str = "ocr") -> None:
    sqs = stack.outside.client("sqs")
    for start in range(0, len(refs), BATCH):
        entries = [
            {
                "Id": str(n),
                "MessageBody": task_body(
                    algorithm=algorithm, idempotency_key=ref, input={"document": "doc", "ref": ref}
                ),
            }
            for n, ref in enumerate(refs[start : start + BATCH])
        ]
        sqs.send_message_batch(QueueUrl=stack.queue_url, Entries=entries)  # type: ignore[arg-type]


def pump(stack: Stack, tasks: int, submitted: dict[str, float]) -> None:
    """The event source mapping: receive up to 10, invoke intake, delete what it took;
    then wait for the batch's callbacks before the next receive."""
    sqs = stack.outside.client("sqs")
    expected = stack.handlers.callbacks_applied
    taken = 0
    while taken < tasks:
        messages = sqs.receive_message(
            QueueUrl=stack.queue_url, MaxNumberOfMessages=BATCH, AttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            continue
        event = sqs_event(*(sqs_record(m["Body"], message_id=m["MessageId"]) for m in messages))
        now = time.monotonic()
        for message in messages:
            submitted[json.loads(message["Body"])["idempotency_key"]] = now
        answer = stack.handlers.invoke("intake", event)
        if answer["batchItemFailures"]:
            raise RuntimeError(f"intake refused {answer['batchItemFailures']}")
        sqs.delete_message_batch(
            QueueUrl=stack.queue_url,
            Entries=[
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)
            ],
        )
        taken += len(messages)
        expected += len(messages)
        stack.handlers.wait_callbacks(expected)


def lifecycle(stack: Stack, tasks: int, warmup: int) -> tuple[Window, dict[str, list[float]]]:
    database = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    probe = redis.Redis.from_url(REDIS)
    submitted: dict[str, float] = {}
    warm = [f"warm-{stack.run}-{n}" for n in range(warmup)]
    send_tasks(stack, warm)
    pump(stack, warmup, submitted)
    refs = [f"task-{stack.run}-{n}" for n in range(tasks)]
    if _Trace.lines is not None:
        _Trace.lines.clear()
    with window(stack.meter, lambda: server_status(database), lambda: redis_status(probe)) as out:
        send_tasks(stack, refs)  # the producer's requests are SQS requests of the design too
        pump(stack, tasks, submitted)
    database.close()
    arrivals = stack.service.stats()["arrivals"]
    latencies = [(arrivals[f"{ref}:1"] - submitted[ref]) * 1000 for ref in refs]
    return out[0], {"submit_to_dispatch_ms": latencies}


def ticks(stack: Stack) -> Window:
    database = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    probe = redis.Redis.from_url(REDIS)
    if _Trace.lines is not None:
        _Trace.lines.clear()
    with window(stack.meter, lambda: server_status(database), lambda: redis_status(probe)) as out:
        for name in SCHEDULED:
            stack.handlers.invoke(name, schedule_event(name))
    database.close()
    return out[0]


# -- cold starts --------------------------------------------------------------------------

# Run by a fresh interpreter in the function's folder (Lambda's /var/task); the event
# on stdin. Import, then the first invocation, timed from inside.
CHILD = r"""
import json, sys, time
event = json.loads(sys.stdin.read())
started, cpu = time.perf_counter(), time.process_time()
import app
imported, imported_cpu = time.perf_counter(), time.process_time()

class Context:
    function_name = "baton-" + sys.argv[1]
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:" + function_name
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    log_stream_name = "cold"

    def get_remaining_time_in_millis(self):
        return 60000

answer = app.lambda_handler(event, Context())
done, done_cpu = time.perf_counter(), time.process_time()
print("BENCH-COLD " + json.dumps({"import_ms": (imported - started) * 1000,
      "invoke_ms": (done - imported) * 1000, "cpu_ms": (done_cpu - cpu) * 1000,
      "answer": str(answer)[:300]}), flush=True)
"""
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six")
IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)$")


def find_python312() -> str:
    """The runtime's interpreter: $PYTHON312, python3.12 on PATH, or pyenv's."""
    candidates = [os.environ.get("PYTHON312", ""), "python3.12"]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted(str(p) for p in pyenv.glob("3.12*/bin/python3.12"))
    for candidate in filter(None, candidates):
        try:
            version = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
        except OSError:
            continue
        if version == "True":
            return candidate
    raise RuntimeError("no python3.12 found (set PYTHON312): the cold start needs the runtime's")


def _make(target: str, makefile: str, artifacts: Path, *variables: str) -> None:
    subprocess.run(
        ["make", "-s", "-f", makefile, target, f"ARTIFACTS_DIR={artifacts}", *variables],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


def build_layers(cache: Path, python312: str) -> list[Path]:
    """The layers by their Makefile targets, as ``sam build`` runs them (BatonLayer
    afresh, DependenciesLayer once per lock, its wheels for this machine), and the
    packages the Lambda runtime provides (copied from this environment and compiled,
    as the runtime image has them); the sys.path entries after the function's folder."""
    machine = {"x86_64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}[platform.machine()]
    flags = (
        f"--platform manylinux2014_{machine} --implementation cp --python-version 3.12 "
        "--only-binary=:all:"
    )
    baton = cache / "BatonLayer"
    shutil.rmtree(baton, ignore_errors=True)
    _make("build-BatonLayer", "shared/Makefile", baton, f"RUNTIME_PYTHON={python312}")
    lock = (ROOT / "layers/dependencies/requirements.txt").read_bytes()
    recipe = (ROOT / "layers/dependencies/Makefile").read_bytes()
    key = hashlib.sha256(lock + recipe + flags.encode()).hexdigest()[:12]
    dependencies = cache / f"DependenciesLayer-{key}"
    if not dependencies.is_dir():
        building = cache / f"building-{key}"
        shutil.rmtree(building, ignore_errors=True)
        _make(
            "build-DependenciesLayer",
            "layers/dependencies/Makefile",
            building,
            f"TARGET_FLAGS={flags}",
            f"RUNTIME_PYTHON={python312}",
        )
        building.rename(dependencies)
    runtime = cache / f"runtime-{boto3.__version__}-{botocore.__version__}"
    if not runtime.is_dir():
        building = cache / "building-runtime"
        shutil.rmtree(building, ignore_errors=True)
        site = Path(boto3.__file__).parents[1]
        for name in RUNTIME_PROVIDED:
            source = site / name
            if source.is_dir():
                shutil.copytree(
                    source, building / name, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                building.mkdir(parents=True, exist_ok=True)
                shutil.copy2(site / f"{name}.py", building / f"{name}.py")
        subprocess.run(
            [python312, "-m", "compileall", "-q", "-j", "0", str(building)],
            check=True,
            capture_output=True,
        )
        building.rename(runtime)
    return [baton / "python", dependencies / "python", runtime]


def bytecode_files(paths: list[Path]) -> int:
    return sum(1 for path in paths[:2] for _ in path.rglob("*.cpython-312.pyc"))


def cold_events(stack: Stack, samples: int) -> dict[str, list[dict[str, Any]]]:
    """Each handler's first event, one per sample: a fresh task for intake, the
    callback of a held attempt (uploaded, not called back) for callback, the schedule
    event for the timers."""
    refs = [f"held-{stack.run}-{n}" for n in range(samples)]
    records = [
        sqs_record(task_body(algorithm="hold", idempotency_key=r, input={"ref": r})) for r in refs
    ]
    for start in range(0, samples, BATCH):
        stack.handlers.invoke("intake", sqs_event(*records[start : start + BATCH]))
    deadline = time.monotonic() + 30
    while len(held := stack.service.stats()["held"]) < samples:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(held)} of {samples} held dispatches arrived")
        time.sleep(0.1)
    callbacks = [
        api_event(
            f"/tasks/{request['task_id']}/callback",
            json.dumps({"attempt": request["attempt"], "status": "succeeded"}),
            {
                "Authorization": f"Bearer {request['callback']['token']}",
                "Content-Type": "application/json",
            },
        )
        for request in held
    ]
    intake = [
        sqs_event(
            sqs_record(
                task_body(idempotency_key=f"cold-{stack.run}-{n}", input={"ref": f"cold-{n}"})
            )
        )
        for n in range(samples)
    ]
    events = {"intake": intake, "callback": callbacks}
    for name in SCHEDULED:
        events[name] = [schedule_event(name) for _ in range(samples)]
    return events


def run_child(
    python312: str,
    name: str,
    path: list[Path],
    env: dict[str, str],
    event: dict[str, Any],
    *flags: str,
) -> tuple[dict[str, Any], str, float]:
    child_env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": os.pathsep.join(str(p) for p in path),
        # /opt and /var/task are read-only on Lambda: nothing compiled is kept
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
        "POWERTOOLS_SERVICE_NAME": "baton",
        "POWERTOOLS_METRICS_NAMESPACE": "Baton",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "POWERTOOLS_TRACE_DISABLED": "1",
        **env,
    }
    started = time.perf_counter()
    done = subprocess.run(
        [python312, "-S", *flags, "-c", CHILD, name],
        cwd=ROOT / "functions" / name,
        env=child_env,
        input=json.dumps(event),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    wall = (time.perf_counter() - started) * 1000
    marked = [line for line in done.stdout.splitlines() if line.startswith("BENCH-COLD ")]
    if done.returncode or not marked:
        raise RuntimeError(
            f"cold start of {name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        )
    return json.loads(marked[-1].removeprefix("BENCH-COLD ")), done.stderr, wall


def import_profile(stderr: str, top: int = 6) -> list[tuple[str, float]]:
    """Self import time summed per top-level package, largest first (ms)."""
    per_package: dict[str, float] = defaultdict(float)
    for line in stderr.splitlines():
        if matched := IMPORT_LINE.match(line):
            per_package[matched.group(4).split(".")[0]] += int(matched.group(1)) / 1000
    ranked = sorted(per_package.items(), key=lambda item: -item[1])[:top]
    return [(name, round(ms, 1)) for name, ms in ranked]


def without_bytecode(cache: Path, path: list[Path]) -> list[Path]:
    """A copy of the layers (the first two entries) with their bytecode taken out: the
    layers as they were built before they shipped it."""
    stripped = []
    for n, layer in enumerate(path[:2]):
        copy = cache / f"without-bytecode-{n}" / "python"
        shutil.rmtree(copy.parent, ignore_errors=True)
        shutil.copytree(layer, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        stripped.append(copy)
    return [*stripped, *path[2:]]


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    totals = [r["import_ms"] + r["invoke_ms"] for r in runs]
    return {
        "import_ms": round(statistics.median(r["import_ms"] for r in runs), 1),
        "first_invocation_ms": round(statistics.median(r["invoke_ms"] for r in runs), 1),
        "total_ms": round(statistics.median(totals), 1),
        "total_range_ms": [round(min(totals), 1), round(max(totals), 1)],
        "cpu_ms": round(statistics.median(r["cpu_ms"] for r in runs), 1),
    }


def cold_starts(stack: Stack, samples: int, layers: Path | None, compare: bool) -> dict[str, Any]:
    python312 = find_python312()
    cache = ROOT / ".aws-sam" / "bench-cold-start"
    cache.mkdir(parents=True, exist_ok=True)
    if layers is None:
        path = build_layers(cache, python312)
    else:
        path = [layers / "BatonLayer" / "python", layers / "DependenciesLayer" / "python"]
        path.append(build_layers(cache, python312)[2])
    events = cold_events(stack, samples + 1)
    interpreter = []
    for _ in range(samples):
        started = time.perf_counter()
        subprocess.run([python312, "-S", "-B", "-c", "pass"], check=True)
        interpreter.append((time.perf_counter() - started) * 1000)
    results: dict[str, Any] = {
        "python": python312,
        "bytecode_files": bytecode_files(path),
        "interpreter_start_ms": statistics.median(interpreter),
        "functions": {},
    }
    stripped = without_bytecode(cache, path) if compare else None
    for name in FUNCTION_NAMES:
        runs, before = [], []
        for event in events[name][:samples]:
            runs.append(run_child(python312, name, path, stack.env, event)[0])
            if stripped is not None:  # interleaved: both see the same load on the machine
                before.append(run_child(python312, name, stripped, stack.env, event)[0])
        _, stderr, _ = run_child(
            python312, name, path, stack.env, events[name][samples], "-X", "importtime"
        )
        results["functions"][name] = _summary(runs) | {
            "top_imports_ms": import_profile(stderr),
            "answer": runs[-1]["answer"][:120],
        }
        if before:
            results["functions"][name]["without_bytecode"] = _summary(before)
    return results


# -- figures and dollars ----------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def per(count: float, tasks: int) -> float:
    return round(count / tasks, 3)


def figures_of(w: Window, tasks: int) -> dict[str, Any]:
    m = w.meter
    sql = {
        kind: per(m.sql[kind], tasks)
        for kind in (*SQL_KINDS, "COMMIT", "ROLLBACK", "other", "ping")
    }
    statements = sum(v for k, v in sql.items() if k != "ping")
    aws = {
        caller: {op: per(n, tasks) for op, n in sorted(ops.items())}
        for caller, ops in m.aws.items()
    }
    billed_ms: dict[str, float] = {}
    for name, walls in m.wall_ms.items():
        # CPU stretched to the function's share of a vCPU; waits as they are; 1 ms rounding
        billed_ms[name] = (
            sum(walls) + m.cpu_ms[name] * (FULL_VCPU_MB / MEMORY_MB - 1) + 0.5 * len(walls)
        )
    return {
        "tasks": tasks,
        "seconds": round(w.seconds, 2),
        "sql": sql,
        "sql_statements": round(statements, 3),
        "db_round_trips": round(statements + sql["ping"], 3),
        "db_commits": sql["COMMIT"],
        "db_connections_opened": m.connects,
        "server_sql": {k: per(v, tasks) for k, v in w.server.items()},
        "redis_commands": per(sum(m.redis_commands.values()), tasks),
        "redis_round_trips": per(m.redis_round_trips, tasks),
        "redis_by_command": {k: per(v, tasks) for k, v in m.redis_commands.most_common()},
        "redis_server_calls": per(w.redis_server.get("total_commands_processed", 0), tasks),
        "redis_server_by_command": {
            k: per(v, tasks)
            for k, v in sorted(w.redis_server.items(), key=lambda kv: -kv[1])
            if k != "total_commands_processed"
        },
        "aws_calls": aws,
        "invocations": {k: per(v, tasks) for k, v in sorted(m.invocations.items())},
        "handler_cpu_ms": round(sum(m.cpu_ms.values()) / tasks, 2),
        "handler_cpu_ms_by_function": {k: round(v / tasks, 2) for k, v in sorted(m.cpu_ms.items())},
        "cpu_ms_per_invocation": {
            k: round(m.cpu_ms[k] / n, 2) for k, n in sorted(m.invocations.items())
        },
        "wall_ms_per_invocation": {
            k: {"p50": round(statistics.median(v), 2), "p95": round(pct(v, 0.95), 2)}
            for k, v in sorted(m.wall_ms.items())
        },
        "billed_ms_estimate": round(sum(billed_ms.values()) / tasks, 2),
        "process_cpu_ms": round(w.process_cpu_ms / tasks, 2),
        "log_bytes": per(m.log_bytes, tasks),
        "log_lines": per(m.log_lines, tasks),
        "emf_bytes": per(m.emf_bytes, tasks),
        "stderr_bytes": per(m.stderr_bytes, tasks),
        "platform_log_bytes_estimate": per(
            sum(m.invocations.values()) * PLATFORM_BYTES_PER_INVOCATION, tasks
        ),
        "log_bytes_by_message": {k: per(v, tasks) for k, v in m.log_messages.most_common(8)},
    }


def dollars(f: dict[str, Any], callback_requests: float) -> dict[str, float]:
    """USD per million tasks, by item, from the per-task figures."""
    price = {key: value for key, (value, _label) in PRICES.items()}
    calls: dict[str, dict[str, float]] = f["aws_calls"]
    baton, outside = calls.get("baton", {}), calls.get("outside", {})
    sqs = sum(n for op, n in (baton | outside).items() if op.startswith("sqs:"))
    s3_reads = sum(n for op, n in baton.items() if op in ("s3:HeadObject", "s3:GetObject"))
    invocations = sum(f["invocations"].values())
    # Lambda's own lines are off at the template's default PlatformLogLevel (WARN).
    log_bytes = f["log_bytes"] + f["emf_bytes"] + f["stderr_bytes"]
    million = 1e6
    items = {
        "lambda_requests": invocations * price["lambda_request"] * million,
        "lambda_duration": f["billed_ms_estimate"]
        / 1000
        * MEMORY_MB
        / 1024
        * price["lambda_gb_second_arm64"]
        * million,
        "api_gateway_rest": callback_requests * price["api_gateway_rest_request"] * million,
        "sqs": sqs * price["sqs_request"] * million,
        "logs": log_bytes * million / 1e9 * price["logs_ingested_gb"],
        "s3_head_get": s3_reads * price["s3_get_head_request"] * million,
        "elasticache": f["redis_commands"] * price["elasticache_ecpu"] * million,
        "xray": invocations * XRAY_SAMPLED * price["xray_trace"] * million,
    }
    items = {k: round(v, 3) for k, v in items.items()}
    items["total"] = round(sum(items.values()), 2)
    items["total_with_http_api"] = round(
        items["total"]
        - items["api_gateway_rest"]
        + callback_requests * price["api_gateway_http_request"] * million,
        2,
    )
    items["not_counted_sns_publish"] = round(
        baton.get("sns:Publish", 0) * price["sns_publish"] * million, 3
    )
    items["not_counted_result_put"] = round(1 * price["s3_put_request"] * million, 3)
    items["step_functions_standard"] = round(
        STEP_FUNCTIONS_TRANSITIONS * price["step_functions_transition"] * million, 2
    )
    return items


def monthly_timers(tick: dict[str, Any]) -> float:
    """USD per month of the scheduled functions at idle (rate(1 minute))."""
    lambda_request, _ = PRICES["lambda_request"]
    gb_second, _ = PRICES["lambda_gb_second_arm64"]
    per_tick = (
        len(SCHEDULED) * lambda_request
        + tick["billed_ms_estimate"] / 1000 * MEMORY_MB / 1024 * gb_second
    )
    return round(float(per_tick) * TICKS_PER_MONTH, 2)


# -- output -----------------------------------------------------------------------------------


def _goal(value: float, key: str) -> str:
    bound = GOALS[key]
    return f"(goal <= {bound:g}{'' if value <= bound else ', not met'})"


def _line(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<34} {value:>12}  {note}".rstrip())


def report(result: dict[str, Any]) -> None:
    f, cost = result["per_task"], result["usd_per_million_tasks"]
    print(
        f"cost of one task: {f['tasks']} tasks in SQS batches of {BATCH}, "
        f"{f['seconds']} s; per task:"
    )
    print("database (client: Baton's engine)")
    sql = f["sql"]
    _line(
        "SQL statements", f"{f['sql_statements']:.2f}", _goal(f["sql_statements"], "sql_statements")
    )
    _line("  SELECT / INSERT / UPDATE / DELETE", " / ".join(f"{sql[k]:.2f}" for k in SQL_KINDS))
    _line(
        "  COMMIT / ROLLBACK / other",
        f"{sql['COMMIT']:.2f} / {sql['ROLLBACK']:.2f} / {sql['other']:.2f}",
        _goal(sql["COMMIT"], "db_commits"),
    )
    _line("pings", f"{sql['ping']:.2f}")
    _line(
        "round trips",
        f"{f['db_round_trips']:.2f}",
        f"(+{f['db_connections_opened']} connections in all)",
    )
    s = f["server_sql"]
    print("database (server: SHOW GLOBAL STATUS deltas, shared with other clients)")
    _line("Questions", f"{s['Questions']:.2f}")
    _line(
        "Com_select/insert/update/delete",
        " / ".join(f"{s['Com_' + k]:.2f}" for k in ("select", "insert", "update", "delete")),
    )
    _line("Com_commit / Com_rollback", f"{s['Com_commit']:.2f} / {s['Com_rollback']:.2f}")
    _line("Handler_commit", f"{s['Handler_commit']:.2f}")
    _line(
        "Innodb_data_fsyncs / os_log_fsyncs",
        f"{s['Innodb_data_fsyncs']:.2f} / {s['Innodb_os_log_fsyncs']:.2f}",
    )
    print("redis")
    _line(
        "round trips (client)",
        f"{f['redis_round_trips']:.2f}",
        _goal(f["redis_round_trips"], "redis_round_trips"),
    )
    top = ", ".join(f"{k} {v:g}" for k, v in list(f["redis_by_command"].items())[:6])
    _line("commands (client)", f"{f['redis_commands']:.2f}", top)
    top = ", ".join(f"{k} {v:g}" for k, v in list(f["redis_server_by_command"].items())[:6])
    _line("commands (server, scripts' inner)", f"{f['redis_server_calls']:.2f}", top)
    print("aws calls")
    for caller, operations in sorted(f["aws_calls"].items()):
        for operation, n in operations.items():
            _line(f"{caller} {operation}", f"{n:.3f}")
    print("lambda")
    for name, n in f["invocations"].items():
        wall = f["wall_ms_per_invocation"][name]
        _line(
            f"{name} invocations",
            f"{n:.3f}",
            f"CPU {f['cpu_ms_per_invocation'][name]:.1f} ms, "
            f"wall p50 {wall['p50']:.1f} / p95 {wall['p95']:.1f} ms each",
        )
    by_function = ", ".join(f"{k} {v:.1f}" for k, v in f["handler_cpu_ms_by_function"].items())
    _line(
        "handler CPU ms",
        f"{f['handler_cpu_ms']:.2f}",
        f"{_goal(f['handler_cpu_ms'], 'handler_cpu_ms')} {by_function}",
    )
    _line(
        "process CPU ms",
        f"{f['process_cpu_ms']:.2f}",
        "(handlers + loopback gateway + event source + counters)",
    )
    _line("billed ms at 512 MB (estimate)", f"{f['billed_ms_estimate']:.1f}")
    print("latency")
    lat = result["latency_ms"]
    _line(
        "submit -> dispatch p50 / p95",
        f"{lat['submit_to_dispatch']['p50']:.1f} / {lat['submit_to_dispatch']['p95']:.1f}",
        _goal(lat["submit_to_dispatch"]["p50"], "submit_to_dispatch_p50_ms"),
    )
    _line(
        "callback invocation p50 / p95",
        f"{lat['callback']['p50']:.1f} / {lat['callback']['p95']:.1f}",
        _goal(lat["callback"]["p50"], "callback_p50_ms"),
    )
    print("logs (default level INFO)")
    _line(
        "Baton's lines: bytes / lines",
        f"{f['log_bytes']:.0f} / {f['log_lines']:.2f}",
        _goal(f["log_bytes"], "log_bytes"),
    )
    _line("EMF metrics bytes", f"{f['emf_bytes']:.0f}")
    _line(
        "Lambda platform lines (estimate)",
        f"{f['platform_log_bytes_estimate']:.0f}",
        "(at PlatformLogLevel INFO; the default, WARN, writes none)",
    )
    for message, size in f["log_bytes_by_message"].items():
        _line(f"  {message[:32]}", f"{size:.0f}")
    answers = ", ".join(f"{k}: {v}" for k, v in sorted(result["callback_answers"].items()))
    _line("callback answers", answers)
    for warning in result["warnings"]:
        print(f"  warning: {warning[:300]}")
    for error, count in result.get("database_errors", {}).items():
        print(f"  database error x{count}: {error}")
    print("usd per million tasks (list prices; PRICES)")
    for item, usd in cost.items():
        _line(item, f"{usd:.3f}", _goal(usd, "usd_per_million") if item == "total" else "")
    tick = result["per_tick"]
    print("timers at idle, one tick of promote + dispatch + sweep + reconcile")
    _line(
        "SQL statements / round trips",
        f"{tick['sql_statements']:.0f} / {tick['db_round_trips']:.0f}",
    )
    _line("redis round trips", f"{tick['redis_round_trips']:.0f}")
    _line("handler CPU ms", f"{tick['handler_cpu_ms']:.1f}")
    _line("usd per month", f"{result['timers_usd_per_month']:.2f}")
    cold = result.get("cold_start")
    if cold:
        print(
            f"cold start: import + first invocation, fresh {Path(cold['python']).name} "
            f"(median of {result['cold_samples']}; "
            f"{cold['bytecode_files']} .pyc files in the layers; "
            f"interpreter start {cold['interpreter_start_ms']:.0f} ms not included)"
        )
        for name, c in cold["functions"].items():
            imports = ", ".join(f"{k} {v:.0f}" for k, v in c["top_imports_ms"])
            _line(
                f"{name}",
                f"{c['total_ms']:.0f} ms",
                f"import {c['import_ms']:.0f} + first {c['first_invocation_ms']:.0f} "
                f"{_goal(c['total_ms'], 'cold_start_ms')}, CPU {c['cpu_ms']:.0f}; "
                f"self import ms: {imports}",
            )
            if "without_bytecode" in c:
                w = c["without_bytecode"]
                _line(
                    "  without the bytecode",
                    f"{w['total_ms']:.0f} ms",
                    f"import {w['import_ms']:.0f} + first {w['first_invocation_ms']:.0f}, "
                    f"CPU {w['cpu_ms']:.0f}",
                )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=20, help="tasks run first, not counted")
    parser.add_argument(
        "--cold-samples", type=int, default=5, help="fresh interpreters per handler"
    )
    parser.add_argument("--no-cold-start", action="store_true")
    parser.add_argument(
        "--layers",
        type=Path,
        help="a folder with BatonLayer/python and DependenciesLayer/python (e.g. .aws-sam/build "
        "on an arm64 machine) instead of the layers built for this machine",
    )
    parser.add_argument(
        "--compare-without-bytecode",
        action="store_true",
        help="also time each cold start with the layers' bytecode taken out, interleaved",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--trace-sql",
        type=Path,
        help="write every database round trip of the counted run to this file, each with "
        "the handler it served",
    )
    args = parser.parse_args(argv)
    _Trace.lines = [] if args.trace_sql else None
    started = time.perf_counter()
    meter = Meter()
    load = os.getloadavg()[0]
    # What Baton writes outside the counted windows (the warm-up, the cold starts'
    # preparation) is dropped: only the figures are printed.
    with (
        quiet(Meter()),
        worker_cpu_attributed(),
        stack(meter) as s,
        instrument_redis(s.redis_pool, meter),
    ):
        run, latencies = lifecycle(s, args.tasks, args.warmup)
        if args.trace_sql and _Trace.lines is not None:
            args.trace_sql.write_text("\n".join(_Trace.lines) + "\n")
            _Trace.lines = None
        per_task = figures_of(run, args.tasks)
        callbacks = per_task["invocations"].get("callback", 0.0)
        walls = run.meter.wall_ms["callback"]
        result: dict[str, Any] = {
            "per_task": per_task,
            "callback_answers": dict(s.handlers.callback_answers),
            "warnings": run.meter.warnings,
            "database_errors": dict(run.meter.db_errors),
            "latency_ms": {
                "submit_to_dispatch": {
                    "p50": round(statistics.median(latencies["submit_to_dispatch_ms"]), 2),
                    "p95": round(pct(latencies["submit_to_dispatch_ms"], 0.95), 2),
                },
                "callback": {
                    "p50": round(statistics.median(walls), 2),
                    "p95": round(pct(walls, 0.95), 2),
                },
            },
            "usd_per_million_tasks": dollars(per_task, callbacks),
            "prices": {key: {"usd": value, "per": label} for key, (value, label) in PRICES.items()},
            "goals": GOALS,
        }
        result["per_tick"] = figures_of(ticks(s), 1)
        result["timers_usd_per_month"] = monthly_timers(result["per_tick"])
        if not args.no_cold_start:
            result["cold_samples"] = args.cold_samples
            result["cold_start"] = cold_starts(
                s, args.cold_samples, args.layers, args.compare_without_bytecode
            )
    result["run_seconds"] = round(time.perf_counter() - started, 1)
    result["load_average"] = [round(load, 1), round(os.getloadavg()[0], 1)]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)
        print(
            f"(run: {result['run_seconds']} s; load average {result['load_average'][0]} at the "
            f"start, {result['load_average'][1]} at the end, on {os.cpu_count()} cores)"
        )
    return result


if __name__ == "__main__":
    main()
