"""How long a task with a free slot waits before its algorithm hears of it.

Measured in one run, against the real Redis and MariaDB on this machine and moto on
loopback, through the real handlers:

- fast path: the intake invocation itself promotes and dispatches;
- timer path (the baseline, the original design): the task waits for the next
  scheduled promote + dispatch. The processing part is measured here by invoking
  both right after the submit; the wait for the tick is uniform over the schedule's
  period (rate(1 minute): median 30 s), which is added to the measured medians.

Also: end-to-end throughput of one algorithm at its cap with 50 ms jobs, against
the ceiling cap / job time. The algorithm service is built on the client SDK
(tests.support.sdk_algorithm_service): it verifies each signed dispatch request,
uploads with a checksum and calls back, as a real one does. Here every function runs
as a single instance (as one Lambda container each) and AWS is moto on loopback, so
this is a floor for what the deployed stack does, where callbacks run concurrently.

    python -m bench.dispatch_latency [--samples 200]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import redis
import sqlalchemy as sa
from baton.runtime import build_runtime, set_runtime
from baton.schema import upgrade_database
from baton.settings import load_settings
from moto.server import ThreadedMotoServer

from tests.support.events import schedule_event, sqs_event, sqs_record, task_body
from tests.support.gateway import CallbackGateway
from tests.support.handlers import Handlers
from tests.support.sdk_algorithm_service import SdkAlgorithmService

os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "1")
os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")

MYSQL = os.environ.get("BATON_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
REDIS = os.environ.get("BATON_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TICK_WAIT_MEDIAN_S = 30.0  # rate(1 minute): the next tick is uniform over [0, 60 s)


@contextmanager
def stack(
    fast_path: bool, cap: int
) -> Iterator[tuple[Handlers, SdkAlgorithmService, Callable[[], None]]]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    run = uuid.uuid4().hex[:8]
    database = f"baton_bench_{run}"
    server = sa.create_engine(MYSQL, isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE `{database}`")
    url = f"{MYSQL}/{database}?charset=utf8mb4"
    upgrade_database(url)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
    session = boto3.session.Session(region_name="eu-west-1")
    bucket = f"bench-{run}"
    session.client("s3").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    topic = session.client("sns").create_topic(Name=f"bench-{run}")["TopicArn"]
    handlers = Handlers()
    # No heartbeat: a 50 ms job has no need of one, and the figures stay comparable.
    service = SdkAlgorithmService(default_run_seconds=0.05, default_heartbeats=0).start()
    gateway = CallbackGateway(handlers).start()
    client = redis.Redis.from_url(REDIS)
    prefix = f"baton-bench-{run}"
    registry = {
        "ocr": {"endpoint": service.endpoint("ocr"), "max_concurrency": cap, "timeout_seconds": 60}
    }
    settings = load_settings(
        {
            "BATON_DATABASE_URL": url,
            "BATON_REDIS_URL": REDIS,
            "BATON_RESULT_BUCKET": bucket,
            "BATON_NOTIFICATION_TOPIC_ARN": topic,
            "BATON_CALLBACK_BASE_URL": gateway.base_url,
            "BATON_TOKEN_SECRET": "bench-token-secret-of-at-least-32-chars",
            "BATON_ALGORITHMS": json.dumps(registry),
            "BATON_KEY_PREFIX": prefix,
            "BATON_FAST_PATH": str(fast_path).lower(),
        }
    )
    runtime = build_runtime(settings, redis_client=client, boto_session=session)
    set_runtime(runtime)
    service.secrets["ocr"] = [one.secret for one in runtime.config.signing_keys.secrets_of("ocr")]

    def tick() -> None:
        handlers.invoke("promote", schedule_event("promote"))
        handlers.invoke("dispatch", schedule_event("dispatch"))

    try:
        yield handlers, service, tick
    finally:
        service.stop()
        gateway.stop()
        set_runtime(None)
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
        moto.stop()
        with server.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE `{database}`")


def submit_to_dispatch_ms(fast_path: bool, samples: int) -> list[float]:
    latencies = []
    with stack(fast_path, cap=4) as (handlers, service, tick):
        for n in range(samples):
            seen = len(service.requests)
            body = task_body(idempotency_key=f"lat-{n}")
            started = time.perf_counter()
            handlers.invoke("intake", sqs_event(sqs_record(body)))
            if not fast_path:
                tick()
            while len(service.requests) == seen:
                time.sleep(0.0002)
            latencies.append((time.perf_counter() - started) * 1000)
            service.wait_idle()
    return latencies


def throughput(tasks: int, cap: int) -> float:
    with stack(True, cap) as (handlers, service, _tick):
        bodies = [task_body(idempotency_key=f"tp-{n}") for n in range(tasks)]
        started = time.perf_counter()
        for start in range(0, tasks, 10):
            handlers.invoke(
                "intake", sqs_event(*(sqs_record(b) for b in bodies[start : start + 10]))
            )
        while len(service.callbacks) < tasks:
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
        assert service.max_in_flight["ocr"] <= cap
    return tasks / elapsed


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q * 100) - 1]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=200)
    args = parser.parse_args(argv)

    fast = submit_to_dispatch_ms(True, args.samples)
    timer = submit_to_dispatch_ms(False, args.samples)
    fast_median, timer_processing = statistics.median(fast), statistics.median(timer)
    timer_median = timer_processing + TICK_WAIT_MEDIAN_S * 1000
    rate = throughput(args.tasks, cap=4)
    figures = {
        "samples": args.samples,
        "fast_path_ms": {"median": fast_median, "p95": quantile(fast, 0.95)},
        "timer_path_processing_ms": {"median": timer_processing, "p95": quantile(timer, 0.95)},
        "timer_path_expected_median_ms": timer_median,
        "speedup_median": timer_median / fast_median,
        "throughput_tasks_per_s": rate,
        "throughput_ceiling_tasks_per_s": 4 / 0.05,
    }
    print(f"submit -> dispatch, {args.samples} samples each (median / p95)")
    print(f"  fast path            {fast_median:8.1f} ms / {figures['fast_path_ms']['p95']:.1f} ms")
    print(
        f"  timer path, work     {timer_processing:8.1f} ms / "
        f"{figures['timer_path_processing_ms']['p95']:.1f} ms"
    )
    print(f"  timer path, + tick   {timer_median:8.1f} ms (median wait 30 s at rate(1 minute))")
    print(f"  ratio timer / fast   {figures['speedup_median']:8.0f}x")
    print(
        f"throughput at cap 4, 50 ms jobs: {rate:.1f} tasks/s "
        f"({rate / figures['throughput_ceiling_tasks_per_s']:.0%} of the 80 tasks/s ceiling)"
    )
    return figures


if __name__ == "__main__":
    main()
