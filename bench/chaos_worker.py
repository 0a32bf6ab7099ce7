"""One worker process of the chaos run: a whole Baton deployment's worth of Lambda
instances in one process, started with multiprocessing 'spawn'.

- intake: polls the real intake queue (moto), turns what it receives into the SQS event
  Lambda would send, and deletes only the records the invocation did not report as
  failed; nothing at all if the invocation died (SQS redelivers after the visibility
  timeout, as it does for a Lambda that crashed);
- promote, dispatch, sweep, reconcile: on a fast schedule with jitter;
- callback: an API Gateway stand-in on loopback (tests.support.gateway) in front of
  one callback instance; a dead invocation answers 502.

The runtime is built from settings like a cold start. Crash points fire at random
(``inject_faults`` with a random decider: ``crash_rate`` at most points,
``rare_crash_rate`` at those reached only by cancels, drains and retries, so that a
short run reaches them too); an ``InjectedCrash`` ends only the
invocation it happened in, like a Lambda instance dying.

``operator_main`` is the operator at a console: another process with the same settings,
running the retries the parent asks for (``retry_task`` by id or by key,
``bulk_retry``), under the same faults, and answering what each did.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

SCHEDULED = ("promote", "dispatch", "sweep", "reconcile")


@dataclass(frozen=True)
class WorkerSpec:
    index: int
    seed: int
    crash_rate: float
    rare_crash_rate: float
    environ: dict[str, str]  # BATON_* settings, the callback base URL added by the worker
    aws_endpoint: str
    intake_queue_url: str
    tick: tuple[float, float]
    reconcile_tick: tuple[float, float]
    admission_lease_seconds: float
    publish_claim_seconds: float
    log_path: str
    log_level: str = "INFO"


@dataclass
class WorkerStats:
    index: int
    invocations: Counter[str] = field(default_factory=Counter)
    crashes: Counter[str] = field(default_factory=Counter)  # by function
    crash_points: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # "function: ExceptionType"
    answers: Counter[int] = field(default_factory=Counter)  # callback API status codes
    actions: Counter[str] = field(default_factory=Counter)  # what scheduled runs reported
    received: int = 0  # SQS messages received (deliveries)
    deleted: int = 0
    batch_failures: int = 0


def _process_setup(spec: WorkerSpec) -> None:
    """Before anything of Baton is imported: logs to a file, AWS to moto."""
    log = os.open(spec.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": spec.aws_endpoint,
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "chaos",
            "AWS_SECRET_ACCESS_KEY": "chaos",
            "POWERTOOLS_TRACE_DISABLED": "1",
            "POWERTOOLS_METRICS_DISABLED": "1",
            "POWERTOOLS_SERVICE_NAME": "baton",
            "POWERTOOLS_LOG_LEVEL": spec.log_level,
        }
    )


def worker_main(spec: WorkerSpec, reports: Any, stop: Any) -> None:
    """Entry point of a spawned worker; talks to the parent over ``reports`` only."""
    _process_setup(spec)
    import warnings

    warnings.filterwarnings("ignore", message="No application metrics to publish")
    try:
        stats = _run(spec, reports, stop)
    except BaseException:
        traceback.print_exc()
        reports.put(("failed", spec.index, traceback.format_exc()))
        raise
    reports.put(("stats", spec.index, stats))


def _run(spec: WorkerSpec, reports: Any, stop: Any) -> WorkerStats:
    import boto3
    from baton import faults
    from baton.faults import InjectedCrash, inject_faults
    from baton.runtime import build_runtime, set_runtime
    from baton.settings import load_settings

    from tests.support.events import schedule_event, sqs_record
    from tests.support.gateway import CallbackGateway
    from tests.support.handlers import Handlers

    _shrink_time(spec)

    stats = WorkerStats(spec.index)
    stats_lock = threading.Lock()
    printed: Counter[str] = Counter()

    class WorkerHandlers(Handlers):
        """The handlers, one invocation at a time per function like one Lambda instance
        each (the callback API must be: Powertools keeps the current request in a
        process-wide attribute, so two at once in one process would swap requests);
        counts what happens to each call."""

        def invoke(self, name: str, event: dict[str, Any]) -> Any:
            with stats_lock:
                stats.invocations[name] += 1
            try:
                answer = super().invoke(name, event)
            except InjectedCrash as crash:
                with stats_lock:
                    stats.crashes[name] += 1
                print(f"{time.time():.3f} crash {name} at {crash.point}", flush=True)
                raise
            except Exception as exc:
                kind = f"{name}: {type(exc).__name__}"
                with stats_lock:
                    stats.errors[kind] += 1
                    printed[kind] += 1
                    first = printed[kind] <= 3
                if first:
                    print(f"{time.time():.3f} error in {name}", flush=True)
                    traceback.print_exc()
                raise
            with stats_lock:
                if name == "callback":
                    stats.answers[int(answer["statusCode"])] += 1
                elif name != "intake":
                    _count_actions(stats.actions, name, answer)
            return answer

    handlers = WorkerHandlers()
    gateway = CallbackGateway(handlers).start()
    environ = dict(spec.environ, BATON_CALLBACK_BASE_URL=gateway.base_url)
    set_runtime(build_runtime(load_settings(environ)))
    sqs = boto3.session.Session().client("sqs")
    reports.put(("ready", spec.index, gateway.base_url))

    def intake_loop() -> None:
        while not stop.is_set():
            try:
                messages = sqs.receive_message(
                    QueueUrl=spec.intake_queue_url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=1,
                    AttributeNames=["All"],
                ).get("Messages", [])
            except Exception:  # moto busy: poll again, as the event source mapping does
                traceback.print_exc()
                time.sleep(0.2)
                continue
            if not messages:
                continue
            records = []
            for message in messages:
                # The sender SQS recorded, as Lambda's event carries it: intake
                # accepts a message only from its app's senders.
                record = sqs_record(
                    message["Body"],
                    message["MessageId"],
                    int(message["Attributes"]["ApproximateReceiveCount"]),
                    sender_id=message["Attributes"]["SenderId"],
                )
                record["receiptHandle"] = message["ReceiptHandle"]
                records.append(record)
            with stats_lock:
                stats.received += len(records)
            try:
                answer = handlers.invoke("intake", {"Records": records})
            except BaseException:  # died: SQS redelivers the whole batch
                continue
            failed = {item["itemIdentifier"] for item in answer.get("batchItemFailures", [])}
            done = [r for r in records if r["messageId"] not in failed]
            with stats_lock:
                stats.batch_failures += len(failed)
            if done:
                try:
                    sqs.delete_message_batch(
                        QueueUrl=spec.intake_queue_url,
                        Entries=[
                            {"Id": str(n), "ReceiptHandle": r["receiptHandle"]}
                            for n, r in enumerate(done)
                        ],
                    )
                except Exception:
                    traceback.print_exc()
                    continue
                with stats_lock:
                    stats.deleted += len(done)

    def scheduled_loop(name: str, tick: tuple[float, float], rng: random.Random) -> None:
        while not stop.wait(rng.uniform(*tick)):
            try:
                handlers.invoke(name, schedule_event(name))
            except BaseException:
                continue  # counted by the handlers; the next tick tries again

    rng = random.Random(spec.seed * 7919 + spec.index)
    threads = [threading.Thread(target=intake_loop, name="intake", daemon=True)]
    for name in SCHEDULED:
        tick = spec.reconcile_tick if name == "reconcile" else spec.tick
        threads.append(
            threading.Thread(
                target=scheduled_loop,
                args=(name, tick, random.Random(rng.random())),
                name=name,
                daemon=True,
            )
        )
    with inject_faults(crash_decider(spec)):
        for thread in threads:
            thread.start()
        while not stop.wait(0.5):
            pass
        for thread in threads:
            thread.join(30)
        # Callbacks still being answered finish under the same faults.
        time.sleep(0.2)
    stats.crash_points = Counter(faults.fired)
    gateway.stop()
    set_runtime(None)
    print(f"{time.time():.3f} worker {spec.index} stopped: {json.dumps(stats.__dict__)}")
    return stats


RARE_CRASH_POINTS = frozenset(
    ("retry.after_reset", "cancel.after_end", "cancel.after_ack", "cancel.after_keep")
)
"""Reached only by retries, cancels and drains: each crash there comes after a commit,
so the next try moves on. Not the republish points: every delivery of a duplicate of a
final task passes them again, and at a high rate a batch holding a few would never get
through."""


def crash_decider(spec: WorkerSpec) -> Any:
    """Crash at a point every task passes with ``crash_rate``, at one of
    ``RARE_CRASH_POINTS`` with ``rare_crash_rate``."""
    rng = random.Random(spec.seed + spec.index)
    lock = threading.Lock()
    rare = RARE_CRASH_POINTS

    def decide(name: str) -> bool:
        with lock:
            return rng.random() < (spec.rare_crash_rate if name in rare else spec.crash_rate)

    return decide


def _shrink_time(spec: WorkerSpec) -> None:
    """Time runs ~20x faster here than in production (backoff 0.2 s for 5 s, a tick of
    a second for a minute): the admission lease and the publish claim, module constants
    sized for minute timers, shrink the same way."""
    from baton import repository, scheduling

    # The constant is an int in baton.scheduling (inferred from `= 60`); every use of it
    # (a timedelta) takes a float as well, and the shrunken lease needs one.
    scheduling.ADMISSION_LEASE_SECONDS = spec.admission_lease_seconds - float(  # type: ignore[assignment]
        spec.environ["BATON_DISPATCH_TIMEOUT_SECONDS"]
    )
    repository.PUBLISH_CLAIM_SECONDS = int(spec.publish_claim_seconds)


@dataclass
class RetryAnswer:
    """What one retry request did: ``done`` the tasks surely retried, ``maybe`` those
    that may have been (the retry died or failed at a moment that leaves it unknown),
    ``refused`` why nothing was done."""

    request: Any
    done: list[str] = field(default_factory=list)
    maybe: list[str] = field(default_factory=list)
    refused: str | None = None
    crashed_at: str | None = None


def operator_main(spec: WorkerSpec, requests: Any, answers: Any, stop: Any) -> None:
    """The operator: retries what ``requests`` carries (``("one", TaskRef fields)`` or
    ``("bulk", BulkRetry fields)``), one at a time, and puts a ``RetryAnswer`` for each
    on ``answers``; at the end, ``("stats", crash points fired)``."""
    _process_setup(spec)
    import queue as queues

    from baton import faults
    from baton.errors import BatonError
    from baton.faults import InjectedCrash, inject_faults
    from baton.retrying import (
        BulkRetry,
        TaskRef,
        bulk_retry,
        find_task,
        preview_bulk_retry,
        retry_task,
    )
    from baton.runtime import build_runtime
    from baton.settings import load_settings

    _shrink_time(spec)
    runtime = build_runtime(load_settings(dict(spec.environ)))
    answers.put(("ready", spec.index, None))
    with inject_faults(crash_decider(spec)):
        while not stop.is_set():
            try:
                request = requests.get(timeout=0.5)
            except queues.Empty:
                continue
            kind, fields = request
            answer = RetryAnswer(request)
            candidates: list[str] = []
            try:
                if kind == "one":
                    ref = TaskRef(**fields)
                    candidates = [find_task(runtime, ref).id]
                    task, _previous = retry_task(runtime, ref)
                    answer.done = [task.id]
                else:
                    bulk = BulkRetry(**fields)
                    # What it will take (oldest ended first): if it dies half way, these
                    # may or may not have been retried.
                    preview = preview_bulk_retry(runtime, bulk)
                    candidates = [t["task_id"] for t in preview.tasks]
                    report = bulk_retry(runtime, bulk)
                    answer.done = [t["task_id"] for t in report.tasks]
                    answer.refused = None if report.retried else f"nothing: {report.skipped}"
            except InjectedCrash as crash:
                # Every crash point on these paths comes after the retry's commit; a
                # bulk one may have committed part of its batches.
                answer.crashed_at = crash.point
                if kind == "one":
                    answer.done = candidates or answer.done
                else:
                    answer.maybe = candidates
                print(f"{time.time():.3f} crash operator at {crash.point}", flush=True)
            except BatonError as exc:  # refused: nothing done
                answer.refused = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # the database away: it may or may not have happened
                answer.refused = f"{type(exc).__name__}: {exc}"[:300]
                answer.maybe = candidates
                traceback.print_exc()
            answers.put(("answer", spec.index, answer))
    answers.put(("stats", spec.index, Counter(faults.fired)))


def _count_actions(actions: Counter[str], name: str, answer: Any) -> None:
    """Add up the numbers a scheduled handler reported (leases recovered, repairs...)."""
    reports = answer.get("algorithms", [answer]) if isinstance(answer, dict) else []
    for report in reports:
        for key, value in report.items():
            if isinstance(value, bool):
                actions[f"{name}.{key}"] += int(value)
            elif isinstance(value, int):
                actions[f"{name}.{key}"] += value
