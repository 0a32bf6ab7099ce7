"""The rate limit holds however many functions dispatch at once: 8 processes dispatch
one algorithm's large backlog for 20 s against a limit of 20 requests a second with a
burst of 5, and the algorithm service, which counts what reaches it, never sees more
than ``burst + 20 T`` requests in any interval of ``T`` seconds, while at least 90% of
what the limit allows is used."""

from __future__ import annotations

import json
import multiprocessing
import uuid
from datetime import timedelta
from typing import Any

from baton.records import NewTask

from tests.support.algorithm_service import AlgorithmService
from tests.support.aws import AwsResources
from tests.support.dispatchers import dispatch_for, record_arrivals
from tests.support.runtime import TOKEN_SECRET, RuntimeFactory
from tests.support.services import REDIS_URL

PROCESSES = 8
SECONDS = 20.0
RATE, PER, BURST = 20, 1.0, 5
JITTER_SECONDS = 0.25
"""What a request may gain on its way from the moment it took its request from the
limit (confirm.lua, just before the send) to the service, on this two-core machine that
the 8 dispatching processes, MariaDB, Redis and the service share: a process can be put
aside between the two. The bound is checked with this much slack in T; the test prints
what its worst interval needed (0.02-0.07 s in runs of its own)."""


def test_eight_dispatchers_never_exceed_the_rate_limit(
    make_runtime: RuntimeFactory,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clean_database: str,
    key_prefix: str,
) -> None:
    # Given an algorithm with room for everything but a rate limit, and a backlog of
    # twice what the limit lets through in the run; its endpoint records what arrives,
    # in a process of its own (the test process's threads must not delay it)
    context = multiprocessing.get_context("spawn")
    ports, stop, recorded = context.Queue(), context.Event(), context.Queue()
    recorder = context.Process(target=record_arrivals, args=(ports, stop, recorded))
    recorder.start()
    port = ports.get(timeout=60)
    registry = {
        "llm": {
            "endpoint": f"http://127.0.0.1:{port}/llm",
            "max_concurrency": 10_000,
            "timeout_seconds": 3600,
            "rate_limit": {"requests": RATE, "per_seconds": PER, "burst": BURST},
        }
    }
    runtime = make_runtime(algorithms=registry)
    now = runtime.clock()
    for n in range(2 * int(BURST + RATE * SECONDS)):
        runtime.repository.add_task(
            NewTask(
                id=str(uuid.uuid4()),
                app="contracts",
                algorithm="llm",
                idempotency_key=f"page-{n}",
                priority=0,
                input={"page": n, "test": {"outcome": "silent"}},
                metadata={},
                timeout_seconds=3600,
                max_attempts=1,
                not_before=now,
                created_at=now + timedelta(milliseconds=n),
            )
        )
    environ = {
        "BATON_DATABASE_URL": clean_database,
        "BATON_REDIS_URL": REDIS_URL,
        "BATON_RESULT_BUCKET": aws.bucket,
        "BATON_NOTIFICATION_TOPIC_ARN": aws.topic_arn,
        "BATON_CALLBACK_BASE_URL": "http://127.0.0.1:9",
        "BATON_TOKEN_SECRET": TOKEN_SECRET,
        "BATON_ALGORITHMS": json.dumps(registry),
        "BATON_KEY_PREFIX": key_prefix,
        "BATON_DISPATCH_BATCH_SIZE": "10",
    }

    # When 8 processes dispatch it at once for 20 s
    go = context.Event()
    ready = [context.Event() for _ in range(PROCESSES)]
    workers: list[Any] = [
        context.Process(target=dispatch_for, args=(environ, "llm", SECONDS, flag, go))
        for flag in ready
    ]
    for worker in workers:
        worker.start()
    for flag in ready:
        assert flag.wait(120), "a dispatcher did not start"
    go.set()
    for worker in workers:
        worker.join(SECONDS + 60)
        assert worker.exitcode == 0

    # Then in no interval of T seconds did more than burst + rate * T requests arrive
    stop.set()
    arrivals = sorted(recorded.get(timeout=30))
    recorder.join(30)
    needed = 0.0  # the slack in T that the worst interval needed
    for first, start in enumerate(arrivals):
        for last in range(first, len(arrivals)):
            count = last - first + 1
            needed = max(needed, (count - BURST) * PER / RATE - (arrivals[last] - start))
    print(f"{len(arrivals)} requests; the worst interval needed {needed:.3f} s of slack")
    assert needed <= JITTER_SECONDS, f"the worst interval needed {needed:.3f} s of slack"

    # And the limit was used: at least 90% of what it allows over the run
    span = arrivals[-1] - arrivals[0]
    assert span >= SECONDS - 2
    assert len(arrivals) >= 0.9 * (BURST + RATE / PER * span), (len(arrivals), span)
