"""Chaos run: thousands of tasks through the real handlers while everything that can go
wrong does, at once; then the invariants (README, "How it keeps its promises"): one
final state per task and one notification per outcome, the cap, never running twice,
one row per idempotency key, late callbacks refused without effect, timeouts only after
deadlines, cancels that end their task once (an early one before any dispatch), and
the algorithm service's true load within the caps where Baton answers for it.

- several worker processes ('spawn'), each a whole deployment's worth of Lambda
  instances: intake polling the real intake SQS queue (moto server on loopback, shared),
  promote/dispatch/sweep/reconcile on a fast schedule with jitter, a callback API;
  each invocation dies at a random crash point with probability ``--crash-rate``;
- duplicate SQS deliveries (messages sent twice, and redelivered after a short
  visibility timeout when an invocation dies or fails a record);
- an algorithm service (threads, loopback) with caps, flaky answers (503 then 202,
  400), failures, silent and slow attempts whose callback comes after the timeout
  (it must get 409 and change nothing), heartbeats, duplicate callbacks, callbacks to
  any worker, retried on 5xx;
- the fleet mix: several business apps in an app registry (weights, a quota, their
  SQS senders), tasks of cost 1 to 3, and an algorithm on two endpoints of different
  caps (below their sum), the smaller one flaky (busy 503 with Retry-After);
- Redis flushed mid-run (every key of the run's prefix at once), the database
  unreachable for a few seconds (a TCP proxy in this process closes its listener and
  cuts every open connection) and slow for a few more (the proxy delays every packet;
  the last flush lands in that window);
- the business app's cancel messages on the intake queue, by key or by id, some time
  after a task was sent (it may be waiting, running or final by then), and some by key
  before their task's message (sent once the cancel is kept: the task must end
  cancelled, never dispatched); task messages with queue and total timeouts short
  enough to fire; an operator (a process of its own) retrying some failed and timed-out
  tasks while the run goes on, one by id or key, or a few at once (a bulk retry);
- cancel URLs: some algorithms' endpoints have one, with a short grace; the service of
  one acknowledges every cancel, another's refuses some (503, no answer) and all of a
  share of its attempts, which then drain until the grace. The service works on every
  attempt until its work ends or its cancel is acknowledged, whatever Baton counts.

Checks (caps, per algorithm, per endpoint and per app quota, in cost units), printed
with what was injected; the exit status is non-zero if one fails:

    python -m bench.chaos [--tasks 2000] [--workers 3] [--seed 1] [--crash-rate 0.05]

Each run has its own database (created and dropped), Redis key prefix (deleted at the
end) and moto server, so runs never see each other's data. docs/reliability.md, "Chaos
run", has the figures of the last long run and what the run found.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import itertools
import json
import logging
import math
import multiprocessing
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any, Final

import boto3
import redis
import sqlalchemy as sa
from baton.faults import KNOWN_CRASH_POINTS
from baton.schema import upgrade_database
from baton.signing import SigningKeyring
from baton.tokens import TokenKeyring
from baton_sdk.contracts import CancelMessage, TaskMessage, derive_idempotency_key, message_body

from bench.chaos_checks import (
    RETRIED,
    CancelSent,
    Check,
    ExecutionRow,
    Limits,
    Notice,
    Retries,
    RunningSample,
    SampledMax,
    SampledSlot,
    TaskRow,
    acknowledges,
    check_callbacks,
    check_cancels,
    check_cap,
    check_not_twice,
    check_notifications,
    check_one_row,
    check_terminal,
    check_timeouts,
    check_true_load,
    short,
)
from bench.chaos_proxy import TcpProxy
from bench.chaos_service import BUSY, FLAKY, HONEST, ChaosAlgorithmService, Receipt
from bench.chaos_worker import RetryAnswer, WorkerSpec, WorkerStats, operator_main, worker_main

MYSQL = os.environ.get("BATON_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
REDIS = os.environ.get("BATON_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REGION: Final = "eu-west-1"  # Final: a literal, as create_bucket's LocationConstraint needs
TOKEN_SECRET = "chaos-token-secret-of-at-least-32-characters"

# What each task asks of the algorithm service, one behaviour per dispatch it receives.
BEHAVIOUR_MIX: tuple[tuple[tuple[str, ...], float], ...] = (
    (("ok",), 0.55),
    (("fail",), 0.07),
    (("503", "ok"), 0.08),
    (("503", "503", "ok"), 0.04),
    (("400",), 0.03),
    (("slow", "ok"), 0.09),
    (("silent",), 0.03),
    (("silent", "ok"), 0.06),
    (("beat",), 0.05),
)

MAX_RETRIES = 2  # the operator's own retries of one task (a bulk one may add more)

FLUSH_SCRIPT = """
local deleted = 0
for _, key in ipairs(redis.call('KEYS', ARGV[1])) do
  deleted = deleted + redis.call('DEL', key)
end
return deleted
"""


def _default_apps() -> dict[str, float]:
    return {"contracts": 3.0, "invoices": 1.0, "forms": 1.0}


def _default_cancel_urls() -> dict[str, tuple[str, int]]:
    return {"vision": (HONEST, 8), "nlp": (FLAKY, 3)}


@dataclass
class ChaosOptions:
    tasks: int = 2000
    workers: int = 3
    seed: int = 1
    crash_rate: float = 0.05
    # At the crash points reached only by cancels, drains and retries
    # (chaos_worker.RARE_CRASH_POINTS): far fewer visits, so a higher rate, or a short
    # run would not reach them.
    rare_crash_rate: float = 0.2
    duplicate_messages: float = 0.2
    duplicate_callbacks: float = 0.2
    flushes: int = 2
    outages: int = 1
    outage_seconds: float = 3.0
    slowdowns: int = 1
    slowdown_seconds: float = 8.0
    slowdown_max_delay: float = 0.08  # per chunk forwarded, either way
    algorithms: dict[str, int] = field(default_factory=lambda: {"ocr": 2, "nlp": 3, "vision": 5})
    # Several endpoints of one algorithm, their caps; the algorithm's own cap (above)
    # is below their sum, so that both limits bind. The last one is flaky.
    endpoints: dict[str, tuple[int, ...]] = field(default_factory=lambda: {"vision": (4, 2)})
    flaky_share: float = 0.1  # of the flaky endpoint's requests answered busy
    apps: dict[str, float] = field(default_factory=_default_apps)  # app -> weight
    # (app, algorithm or "*") -> max_in_flight; the heaviest app, so that it binds
    quotas: dict[tuple[str, str], int] = field(default_factory=lambda: {("contracts", "vision"): 2})
    costs: tuple[tuple[int, float], ...] = ((1, 0.6), (2, 0.25), (3, 0.15))  # (cost, share)
    # algorithm -> (how its service answers cancels, cancel_grace_seconds): its
    # endpoints get a cancel URL; the others have none.
    cancel_urls: dict[str, tuple[str, int]] = field(default_factory=_default_cancel_urls)
    cancels_after: float = 0.08  # of the tasks, cancelled 0.05-2 s after being sent
    cancels_before: float = 0.03  # cancelled by key before their message is sent
    queue_timeouts: float = 0.06  # of the tasks, a queue_timeout_seconds of 1-3
    total_timeouts: float = 0.05  # a total_timeout_seconds of 2-6
    retries: float = 0.7  # of the failed and timed-out outcomes, retried by the operator
    bulk_every: int = 4  # every 4th retry a bulk retry of the same kind (at most 3 tasks)
    hold: tuple[float, float] = (3.0, 6.0)  # how long a silent attempt works
    window: int = 60  # tasks submitted and not yet notified, at most
    settle_seconds: float = 90.0  # every task terminal this long after the last submit
    tick: tuple[float, float] = (0.5, 1.0)
    reconcile_tick: tuple[float, float] = (0.5, 1.0)
    visibility_timeout: int = 2
    admission_lease_seconds: float = 3.0
    publish_claim_seconds: float = 3.0
    sample_interval: float = 0.2
    log_dir: str | None = None
    log_level: str = "INFO"  # of the workers' Powertools logs
    keep_database: bool = False  # for a post-mortem: the database is left behind
    progress: bool = True


@dataclass
class ChaosReport:
    options: ChaosOptions
    checks: list[Check]
    injected: dict[str, Any]
    figures: dict[str, Any]
    crash_points: Counter[str]
    log_dir: str

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def failures(self) -> list[str]:
        return [f"{c.name}: {'; '.join(c.problems[:5])}" for c in self.checks if not c.passed]

    def table(self) -> str:
        o, i, f = self.options, self.injected, self.figures
        lines = [
            f"chaos run: {o.tasks} tasks, {o.workers} workers, seed {o.seed}, "
            f"crash rate {o.crash_rate:.0%}, caps "
            + ", ".join(f"{a}={c}" for a, c in o.algorithms.items()),
            "endpoints "
            + (
                ", ".join(
                    f"{a} {'+'.join(str(c) for c in caps)}" for a, caps in o.endpoints.items()
                )
                or "one per algorithm"
            )
            + f" (the last of each flaky: {o.flaky_share:.0%} busy)",
            "apps "
            + ", ".join(f"{app} (weight {weight:g})" for app, weight in o.apps.items())
            + "; quotas "
            + (", ".join(f"{app} on {alg} {q}" for (app, alg), q in o.quotas.items()) or "none"),
            "costs " + ", ".join(f"{cost}: {share:.0%}" for cost, share in o.costs),
            "cancel URLs "
            + (
                ", ".join(f"{a} ({mode}, grace {g} s)" for a, (mode, g) in o.cancel_urls.items())
                or "none"
            ),
            "",
            f"{'injected':<44} {'count':>10}",
            f"{'-' * 44} {'-' * 10}",
        ]
        rows = [
            ("task messages sent (incl. duplicates)", i["messages_sent"]),
            ("  duplicate messages sent", i["duplicate_messages"]),
            ("  SQS deliveries to intake (incl. redeliveries)", i["deliveries"]),
            ("crashes fired (invocations killed)", sum(self.crash_points.values())),
            (
                "  rate: most points / cancel and retry ones",
                f"{o.crash_rate:.0%} / {o.rare_crash_rate:.0%}",
            ),
        ]
        rows += [(f"  {point}", self.crash_points.get(point, 0)) for point in KNOWN_CRASH_POINTS]
        rows += [
            ("Redis flushes (keys deleted)", f"{i['flushes']} ({i['keys_flushed']})"),
            ("database outages (connections cut)", f"{i['outages']} ({i['connections_cut']})"),
            ("  database unreachable, seconds", f"{i['outage_seconds']:.1f}"),
            (
                f"database slow (0-{o.slowdown_max_delay * 1000:.0f} ms a packet), seconds",
                f"{i['slow_seconds']:.1f}",
            ),
            ("dispatches answered 503 / 400", f"{i['answered_503']} / {i['answered_400']}"),
            ("dispatches answered busy (flaky endpoint)", i["answered_busy"]),
            ("attempts silent / slow (late callback)", f"{i['silent']} / {i['slow']}"),
            ("attempts with heartbeats (heartbeats sent)", f"{i['beat']} ({i['heartbeats']})"),
            ("duplicate callbacks sent", i["duplicate_callbacks"]),
            ("cancels sent after their task (by key / id)", i["cancels_after"]),
            ("cancels sent before their task (kept first)", i["cancels_before"]),
            ("tasks sent with a queue / total timeout", i["timeouts_asked"]),
            ("operator retries asked (one / bulk)", i["retries_asked"]),
            ("  tasks retried (surely / maybe)", i["tasks_retried"]),
            ("  refused (notification not out yet, ...)", i["retries_refused"]),
            ("cancel requests received (by answer)", i["cancel_requests"]),
            ("dispatches after their cancel (no work)", i["after_cancel"]),
        ]
        lines += [f"{name:<44} {value!s:>10}" for name, value in rows]
        lines += ["", f"{'check':<44} {'result':>10}", f"{'-' * 44} {'-' * 10}"]
        for check in self.checks:
            lines.append(f"{check.name:<44} {'ok' if check.passed else 'FAILED':>10}")
            lines.append(f"    {check.detail}")
            lines += [f"    ! {problem}" for problem in check.problems[:8]]
        lines += ["", "figures", "-------"]
        figures = [
            ("run time (first submit -> last terminal)", f"{f['elapsed']:.1f} s"),
            ("throughput", f"{f['tasks_per_second']:.1f} tasks/s"),
            ("final states", ", ".join(f"{k} {v}" for k, v in sorted(f["states"].items()))),
            ("tasks by cost", ", ".join(f"{k}: {v}" for k, v in f["costs"].items())),
            (
                "requests per endpoint (busy)",
                ", ".join(f"{e} {n} ({b})" for e, (n, b) in f["per_endpoint"].items()),
            ),
            ("share of cost-seconds by app:", ""),
            *(
                (
                    f"  {algorithm}",
                    ", ".join(f"{app} {share:.0%}" for app, share in shares.items()),
                )
                for algorithm, shares in f["app_shares"].items()
            ),
            ("callbacks answered 409 after the deadline", f["late_409"]),
            ("callbacks sent after the deadline, applied", f["late_applied"]),
            ("409 answers by code", ", ".join(f"{k} {v}" for k, v in f["conflicts"].items())),
            ("401 answers", f["unauthorized"]),
            ("duplicate publishes (same id)", f["duplicate_publishes"]),
            ("callback API answers", ", ".join(f"{k}: {v}" for k, v in f["api_answers"].items())),
            ("heartbeat answers", ", ".join(f"{k}: {v}" for k, v in f["heartbeats"].items())),
            ("handler errors (not injected)", f["errors"] or "none"),
            ("running-set samples (over a limit: unsent)", f"{f['samples']} ({f['over_cap']})"),
            (
                "most members in a running set",
                ", ".join(f"{a} {n}" for a, n in sorted(f["max_running"].items())),
            ),
            ("attempts timed out (database)", f["timed_out_attempts"]),
            (
                "tasks timed out, by code (outcomes)",
                f"{f['timed_out_tasks']} ({f['timed_out_outcomes']})",
            ),
            ("cancelled tasks", f["cancels"]),
            ("drains: acknowledged / freed at the grace", f["drains"]),
            ("  cancel requests sent by Baton (drain rows)", f["cancel_tries"]),
            ("true max cost in flight / Baton's part (cap):", ""),
            *((f"  {name}", value) for name, value in f["true_load"].items()),
            ("attempts sent while the last one still worked", f["true_overlaps"]),
            ("attempts given up at confirmation (abandoned)", f["abandoned"]),
            ("dispatches with no answer in time (retried)", f["dispatch_timeouts"]),
            ("409 before the deadline (dispatch unanswered)", f["early_409"]),
            ("repairs reported by the runs that lived:", ""),
            ("  sweep: leases taken back", _one(f, "sweep.leases_recovered")),
            ("  sweep: outbox rows republished", _one(f, "sweep.notifications_published")),
            (
                "  reconcile: rebuilt / running added",
                _pair_of(f, "reconcile.rebuilt", "reconcile.running_added"),
            ),
            (
                "  reconcile: ready added / stale freed",
                _pair_of(f, "reconcile.ready_added", "reconcile.stale_released"),
            ),
        ]
        lines += [f"{name:<44} {value!s}" for name, value in figures]
        lines.append("")
        lines.append(f"{'PASSED' if self.passed else 'FAILED'}; logs in {self.log_dir}")
        return "\n".join(lines)


def _one(figures: dict[str, Any], key: str) -> int:
    return int(figures["actions"].get(key, 0))


def _pair_of(figures: dict[str, Any], first: str, second: str) -> str:
    return f"{_one(figures, first)} / {_one(figures, second)}"


# -- the plan ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedTask:
    index: int
    body: str
    duplicate: str | None  # None, "now" (same batch) or "later" (sent again after a while)
    behaviours: tuple[str, ...]
    app: str = ""
    key: str = ""  # its idempotency key, given or derived
    cancel: str | None = None  # None, "before" its message or "after" it
    cancel_by: str = "key"  # "key" or "id" (after only)
    cancel_delay: float = 0.0  # after: seconds after the task was sent
    cancel_running: bool = False  # after: once it runs (then after cancel_delay)

    def cancel_body(self, task_id: str | None = None) -> str:
        target = {"task_id": task_id} if task_id else {"idempotency_key": self.key}
        message = CancelMessage.model_validate(
            {"app": self.app, "cancel": target, "reason": f"chaos {self.cancel}"}
        )
        return message_body(message)


def quota_of(options: ChaosOptions, app: str, algorithm: str) -> int | None:
    """The app's max_in_flight on the algorithm, as the app registry reads it."""
    named = options.quotas.get((app, algorithm))
    return named if named is not None else options.quotas.get((app, "*"))


def largest_cost(options: ChaosOptions, app: str, algorithm: str) -> int:
    """The most a task of the app may cost on the algorithm and still be dispatched:
    within the cap, one endpoint and the app's quota (a task above its app's quota
    would wait for good)."""
    caps = [options.algorithms[algorithm], *options.endpoints.get(algorithm, ())]
    quota = quota_of(options, app, algorithm)
    return min([*caps, quota] if quota is not None else caps)


def plan_tasks(options: ChaosOptions, run: str) -> list[PlannedTask]:
    rng = random.Random(options.seed)
    algorithms = list(options.algorithms)
    weights = [options.algorithms[a] for a in algorithms]
    plans, plan_weights = zip(*BEHAVIOUR_MIX, strict=True)
    costs, cost_weights = zip(*options.costs, strict=True)
    apps = list(options.apps)
    planned = []
    for n in range(options.tasks):
        plan = rng.choices(plans, plan_weights)[0]
        app = rng.choice(apps)
        algorithm = rng.choices(algorithms, weights)[0]
        cost = min(rng.choices(costs, cost_weights)[0], largest_cost(options, app, algorithm))
        timeout = rng.randint(1, 2) if {"slow", "silent", "beat"} & set(plan) else rng.randint(2, 5)
        dup = None
        if rng.random() < options.duplicate_callbacks:
            dup = rng.choice(("seq", "twin"))
        message: dict[str, Any] = {
            "app": app,
            "algorithm": algorithm,
            "input": {
                "document": f"s3://chaos-{run}/doc-{n}.pdf",
                "chaos": {
                    "plan": list(plan),
                    "run": round(rng.uniform(0.05, 0.4), 3),
                    "late": round(rng.uniform(0.8, 1.6), 3),
                    "timeout": timeout,
                    "dup": dup,
                },
            },
            "timeout_seconds": timeout,
            "priority": rng.randint(-2, 2),
            "metadata": {"chaos": n},
        }
        if rng.random() < 0.5:  # else the key is derived from the body
            message["idempotency_key"] = f"chaos-{run}-{n}"
        if rng.random() < 0.3:
            message["max_attempts"] = 4
        if cost > 1 or rng.random() < 0.5:  # else the default cost of 1
            message["cost"] = cost
        if "silent" in plan:
            message["input"]["chaos"]["hold"] = round(rng.uniform(*options.hold), 3)
        if rng.random() < options.queue_timeouts:
            message["queue_timeout_seconds"] = rng.randint(1, 3)
        if rng.random() < options.total_timeouts:
            message["total_timeout_seconds"] = rng.randint(2, 6)
        duplicate = None
        if rng.random() < options.duplicate_messages:
            duplicate = rng.choice(("now", "later"))
        cancel, by, delay, running = None, "key", 0.0, False
        draw = rng.random()
        if draw < options.cancels_before:
            cancel = "before"
            message["idempotency_key"] = f"chaos-{run}-{n}"  # a cancel by key needs one
        elif draw < options.cancels_before + options.cancels_after:
            cancel, by, delay = "after", rng.choice(("key", "id")), rng.uniform(0.05, 2.0)
            # Half of them once the task runs, a moment later: the work an app cancels
            # is the long kind, so it is still running then.
            running = rng.random() < 0.5
            if running:
                delay = rng.uniform(0.0, 0.3)
                message["input"]["chaos"]["run"] = round(rng.uniform(0.4, 0.7) * timeout, 3)
        key = message.get("idempotency_key") or derive_idempotency_key(
            TaskMessage.model_validate(message)
        )
        planned.append(
            PlannedTask(
                n,
                json.dumps(message),
                duplicate,
                plan,
                app,
                key,
                cancel,
                by,
                round(delay, 3),
                running,
            )
        )
    return planned


# -- the environment -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class MotoServer:
    """moto's server in a process of its own, on loopback."""

    def __init__(self, log_path: Path) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._log = log_path.open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2):
                    break
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start; see {log_path}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(10)
        self._log.close()


@dataclass
class Aws:
    session: boto3.session.Session
    endpoint: str
    bucket: str
    topic_arn: str
    intake_url: str
    app_queue_url: str
    sender_id: str  # what SQS records as the SenderId of the producer's messages

    def client(self, name: str) -> Any:
        return self.session.client(name, endpoint_url=self.endpoint)  # type: ignore[call-overload]


def create_aws(endpoint: str, run: str, visibility_timeout: int, apps: list[str]) -> Aws:
    session = boto3.session.Session(
        region_name=REGION, aws_access_key_id="chaos", aws_secret_access_key="chaos"
    )
    s3 = session.client("s3", endpoint_url=endpoint)
    sns = session.client("sns", endpoint_url=endpoint)
    sqs = session.client("sqs", endpoint_url=endpoint)
    bucket = f"baton-chaos-{run}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    topic_arn = sns.create_topic(Name=f"baton-chaos-{run}")["TopicArn"]
    intake_url = sqs.create_queue(
        QueueName=f"baton-chaos-intake-{run}",
        Attributes={"VisibilityTimeout": str(visibility_timeout)},
    )["QueueUrl"]
    app_queue_url = sqs.create_queue(QueueName=f"business-app-{run}")["QueueUrl"]
    app_queue_arn = sqs.get_queue_attributes(QueueUrl=app_queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=app_queue_arn,
        Attributes={
            "RawMessageDelivery": "true",
            "FilterPolicy": json.dumps({"app": apps}),
        },
    )
    return Aws(
        session,
        endpoint,
        bucket,
        topic_arn,
        intake_url,
        app_queue_url,
        _sender_id(sqs, f"baton-chaos-probe-{run}"),
    )


def _sender_id(sqs: Any, name: str) -> str:
    """The SenderId SQS records for this producer's messages (moto gives every caller
    the same one), so that the app registry can name it as each app's sender."""
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    try:
        sqs.send_message(QueueUrl=url, MessageBody="probe")
        (message,) = sqs.receive_message(
            QueueUrl=url, AttributeNames=["SenderId"], WaitTimeSeconds=1
        )["Messages"]
        return str(message["Attributes"]["SenderId"])
    finally:
        sqs.delete_queue(QueueUrl=url)


def fleet_registries(
    options: ChaosOptions, service: ChaosAlgorithmService
) -> tuple[dict[str, Any], Limits]:
    """The algorithm registry on the chaos service (the last of several endpoints made
    flaky), and the limits the checks hold the run to."""
    registry: dict[str, Any] = {}
    endpoints: dict[str, tuple[str, int]] = {}
    draining: set[str] = set()
    for name, cap in options.algorithms.items():
        entry: dict[str, Any] = {
            "max_concurrency": cap,
            "timeout_seconds": 3,
            "max_timeout_seconds": 5,
            "max_attempts": 3,
        }
        cancels = options.cancel_urls.get(name)
        if cancels is not None:
            service.cancel_modes[name] = cancels[0]
            entry["cancel_grace_seconds"] = cancels[1]
        caps = options.endpoints.get(name)
        if caps:
            urls = [service.endpoint(name, number) for number in range(1, len(caps) + 1)]
            entry["endpoints"] = [
                {"url": url, "max_concurrency": own} for url, own in zip(urls, caps, strict=True)
            ]
            if cancels is not None:
                for one in entry["endpoints"]:
                    one["cancel_url"] = service.cancel_url(one["url"])
            if len(urls) > 1 and options.flaky_share > 0:
                service.make_flaky(urls[-1], options.flaky_share)
            endpoints.update((url, (name, own)) for url, own in zip(urls, caps, strict=True))
        else:
            entry["endpoint"] = service.endpoint(name)
            if cancels is not None:
                entry["cancel_url"] = service.cancel_url(entry["endpoint"])
            endpoints[entry["endpoint"]] = (name, cap)
        if cancels is not None:
            draining.update(url for url, (algorithm, _) in endpoints.items() if algorithm == name)
        registry[name] = entry
    quotas = {
        (app, algorithm): quota
        for app in options.apps
        for algorithm in options.algorithms
        if (quota := quota_of(options, app, algorithm)) is not None
    }
    modes = {name: mode for name, (mode, _grace) in options.cancel_urls.items()}
    graces = {name: grace for name, (_mode, grace) in options.cancel_urls.items()}
    limits = Limits(dict(options.algorithms), endpoints, quotas, modes, frozenset(draining), graces)
    return registry, limits


def app_registry(options: ChaosOptions, sender_id: str) -> dict[str, Any]:
    """Every app sends as the one SenderId SQS records for the producer here."""
    registry: dict[str, Any] = {}
    for app, weight in options.apps.items():
        entry: dict[str, Any] = {"senders": [sender_id], "principals": [], "weight": weight}
        quotas = {alg: quota for (name, alg), quota in options.quotas.items() if name == app}
        if quotas:
            entry["max_in_flight"] = quotas
        registry[app] = entry
    return registry


# -- the run --------------------------------------------------------------------------------


class Run:
    """Everything the parent does while the workers run: submit (and cancel), collect,
    retry (through the operator), sample, and inject the flushes and the outage."""

    def __init__(
        self,
        options: ChaosOptions,
        aws: Aws,
        redis_client: redis.Redis,
        prefix: str,
        proxy: TcpProxy,
        log: Path,
        limits: Limits,
        engine: sa.Engine,
    ) -> None:
        self.options = options
        self.engine = engine  # the database directly, not through the proxy
        self.limits = limits
        self.sampled = SampledMax()
        self.aws = aws
        self.redis = redis_client
        self.prefix = prefix
        self.proxy = proxy
        self.log = log
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.notices: list[Notice] = []
        self.notified: set[int] = set()
        self.submitted = 0
        self.messages_sent = 0
        self.first_submit = 0.0
        self.last_submit = 0.0
        self.flushes = 0
        self.keys_flushed = 0
        self.outages = 0
        self.slowdowns = 0
        self.connections_cut = 0
        self.samples = 0
        self.over_cap: list[RunningSample] = []
        self.max_running: Counter[str] = Counter()
        self.errors: list[str] = []
        self.cancels: dict[int, CancelSent] = {}
        self.outcome_ids: dict[str, set[str]] = defaultdict(set)  # task id -> notified ids
        self.retries: dict[str, Retries] = defaultdict(Retries)
        self.retrying = True  # retries are asked for while tasks are being sent
        self._retry_rng = random.Random(options.seed + 2)
        self._to_retry: list[tuple[float, str, int, Notice]] = []  # (due, id, tries, notice)
        self._considered: set[str] = set()
        self._asked_for: Counter[str] = Counter()  # task id -> retries asked for it
        self.retry_busy = False
        self.retries_asked: Counter[str] = Counter()
        self.retries_refused: Counter[str] = Counter()
        self.planned: list[PlannedTask] = []

    # -- producer ------------------------------------------------------------------------

    def submit_all(self, planned: list[PlannedTask], stall_seconds: float) -> bool:
        """Send every task, at most ``window`` unfinished at once, with the cancels of
        the plan. False if it stalled."""
        sqs = self.aws.client("sqs")
        # (when, index, kind, body): a message to send then; kind "cancel" is the cancel
        # of planned[index], its body made when it goes (by id needs the task's id).
        later: list[tuple[float, int, str, str]] = []
        keeping: dict[int, float] = {}  # cancelled first: until when to wait for the keep
        rng = random.Random(self.options.seed + 1)
        position = 0
        last_progress, seen, looked = time.monotonic(), 0, 0.0
        while position < len(planned) or later or keeping:
            batch: list[str] = []
            now = time.monotonic()
            if keeping and now - looked > 0.2:
                looked = now
                kept = self._kept([planned[index] for index in keeping])
                for index, until in list(keeping.items()):
                    if index in kept or now > until:
                        del keeping[index]
                        self.cancels[index].kept_first = index in kept
                        task = planned[index]
                        heapq.heappush(later, (now, index, "task", task.body))
                        if task.duplicate:
                            again = now + rng.uniform(0.0, 3.0)
                            heapq.heappush(later, (again, index, "task", task.body))
            while later and later[0][0] <= now and len(batch) < 10:
                _due, index, kind, body = heapq.heappop(later)
                if kind == "cancel when running":  # body: until when to look
                    task = planned[index]
                    if now < float(body) and self._status(task) in ("pending", "queued", ""):
                        heapq.heappush(later, (now + 0.2, index, kind, body))  # not yet
                    else:
                        heapq.heappush(later, (now + task.cancel_delay, index, "cancel", ""))
                    continue
                batch.append(self._cancel_after(planned[index]) if kind == "cancel" else body)
            with self.lock:
                room = self.options.window - (self.submitted - len(self.notified))
                finished = len(self.notified)
            if finished != seen:
                last_progress, seen = now, finished
            elif now - last_progress > stall_seconds:
                self.errors.append(f"no task finished for {stall_seconds:.0f} s; gave up")
                return False
            while position < len(planned) and room > 0 and len(batch) < 9:
                task = planned[position]
                position += 1
                room -= 1
                with self.lock:
                    self.submitted += 1
                if task.cancel == "before":
                    # The cancel first; the task once the cancel is kept (see above).
                    batch.append(task.cancel_body())
                    self.cancels[task.index] = CancelSent(task.index, "before", "key", time.time())
                    keeping[task.index] = now + 20.0
                    continue
                batch.append(task.body)
                if task.cancel == "after" and task.cancel_running:
                    looking = (now + 0.2, task.index, "cancel when running", str(now + 20.0))
                    heapq.heappush(later, looking)
                elif task.cancel == "after":
                    heapq.heappush(later, (now + task.cancel_delay, task.index, "cancel", ""))
                if task.duplicate == "now":
                    batch.append(task.body)
                elif task.duplicate == "later":
                    again = now + rng.uniform(0.2, 3.0)
                    heapq.heappush(later, (again, task.index, "task", task.body))
            if not batch:
                time.sleep(0.02)
                continue
            self._send(sqs, batch)
        return True

    def _kept(self, tasks: list[PlannedTask]) -> set[int]:
        """Which of these tasks' cancels intake has kept (the database, directly)."""
        wanted = {(task.app, task.key): task.index for task in tasks}
        try:
            with self.engine.connect() as connection:
                rows = connection.exec_driver_sql(
                    "SELECT app, idempotency_key FROM cancel_tombstone"
                ).all()
        except sa.exc.SQLAlchemyError as exc:
            self.errors.append(f"producer: {exc!r}")
            return set()
        return {wanted[(row[0], row[1])] for row in rows if (row[0], row[1]) in wanted}

    def _status(self, task: PlannedTask) -> str:
        """The task's status in the database ('' if not stored yet, or unreadable)."""
        with contextlib.suppress(sa.exc.SQLAlchemyError), self.engine.connect() as connection:
            found = connection.exec_driver_sql(
                "SELECT status FROM task WHERE app = %s AND idempotency_key = %s",
                (task.app, task.key),
            ).scalar_one_or_none()
            return str(found or "")
        return ""

    def _cancel_after(self, task: PlannedTask) -> str:
        """The cancel message of a task already sent: by id if the plan says so and the
        task is stored by now, else by key."""
        task_id = None
        if task.cancel_by == "id":
            with contextlib.suppress(sa.exc.SQLAlchemyError), self.engine.connect() as connection:
                task_id = connection.exec_driver_sql(
                    "SELECT id FROM task WHERE app = %s AND idempotency_key = %s",
                    (task.app, task.key),
                ).scalar_one_or_none()
        by = "id" if task_id else "key"
        self.cancels[task.index] = CancelSent(task.index, "after", by, time.time())
        return task.cancel_body(task_id)

    def _send(self, sqs: Any, bodies: list[str]) -> None:
        entries = [{"Id": str(n), "MessageBody": body} for n, body in enumerate(bodies)]
        for pause in (0.1, 0.3, 1.0, 2.0, 4.0, 0.0):
            try:
                answer = sqs.send_message_batch(QueueUrl=self.aws.intake_url, Entries=entries)
            except Exception:
                time.sleep(pause)
                continue
            failed = {item["Id"] for item in answer.get("Failed", [])}
            entries = [entry for entry in entries if entry["Id"] in failed]
            if not entries:
                break
            time.sleep(pause)
        now = time.time()
        with self.lock:
            self.messages_sent += len(bodies) - len(entries)
            self.first_submit = self.first_submit or now
            self.last_submit = now
        if entries:
            raise RuntimeError(f"moto refused {len(entries)} task messages")

    # -- notifications --------------------------------------------------------------------

    def collect(self) -> None:
        sqs = self.aws.client("sqs")
        while not self.done.is_set():
            try:
                messages = sqs.receive_message(
                    QueueUrl=self.aws.app_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                ).get("Messages", [])
            except Exception as exc:
                self.errors.append(f"collector: {exc!r}")
                time.sleep(0.2)
                continue
            received = time.time()
            for message in messages:
                body = json.loads(message["Body"])
                notice = Notice(
                    task_id=body["task_id"],
                    index=int(body["metadata"]["chaos"]),
                    notification_id=body["notification_id"],
                    status=body["status"],
                    received=received,
                    error_code=(body.get("error") or {}).get("code"),
                    app=body["app"],
                    algorithm=body["algorithm"],
                    idempotency_key=body.get("idempotency_key") or "",
                )
                with self.lock:
                    self.notices.append(notice)
                    self.notified.add(notice.index)
                    self.outcome_ids[notice.task_id].add(notice.notification_id)
                    self._consider_retry(notice)
            if messages:
                with contextlib.suppress(Exception):
                    sqs.delete_message_batch(
                        QueueUrl=self.aws.app_queue_url,
                        Entries=[
                            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                            for n, m in enumerate(messages)
                        ],
                    )

    # -- the operator's retries --------------------------------------------------------------

    def _consider_retry(self, notice: Notice) -> None:
        """A failed or timed-out outcome is retried a moment later, by chance, at most
        twice a task (under the lock)."""
        if (
            not self.retrying
            or notice.status not in RETRIED
            or notice.notification_id in self._considered
            or self._asked_for[notice.task_id] >= MAX_RETRIES
        ):
            return
        self._considered.add(notice.notification_id)
        if self._retry_rng.random() < self.options.retries:
            self._asked_for[notice.task_id] += 1
            due = time.monotonic() + self._retry_rng.uniform(0.3, 1.5)
            heapq.heappush(self._to_retry, (due, notice.task_id, 0, notice))

    def retry_loop(self, requests: Any, answers: Any) -> None:
        """Ask the operator for each retry that is due, one at a time, and record what
        it did: every ``bulk_every``-th a bulk retry of the same kind (status, algorithm
        and error code, at most 3 tasks, oldest first: not necessarily this task)."""
        asked = 0
        while not self.done.is_set():
            with self.lock:
                due = self._to_retry and self._to_retry[0][0] <= time.monotonic()
                if due:
                    _when, task_id, tries, notice = heapq.heappop(self._to_retry)
                    self.retry_busy = True
            if not due:
                time.sleep(0.05)
                continue
            asked += 1
            if self.options.bulk_every and asked % self.options.bulk_every == 0:
                kind = "bulk"
                fields: dict[str, Any] = {
                    "status": notice.status,
                    "algorithm": notice.algorithm,
                    "error_code": notice.error_code,
                    "limit": 3,
                }
            elif asked % 3 == 0 and notice.idempotency_key:
                kind = "by key"
                fields = {"app": notice.app, "idempotency_key": notice.idempotency_key}
            else:
                kind, fields = "by id", {"task_id": task_id}
            self.retries_asked[kind] += 1
            requests.put(("bulk" if kind == "bulk" else "one", fields))
            try:
                _kind, _index, answer = answers.get(timeout=60)
            except Exception:
                self.errors.append("the operator did not answer a retry within 60 s")
                with self.lock:
                    self.retry_busy = False
                continue
            self._record_retry(answer, task_id, tries, notice)

    def _record_retry(self, answer: RetryAnswer, task_id: str, tries: int, notice: Notice) -> None:
        with self.lock:
            self.retry_busy = False
            for done in answer.done:
                self.retries[done].done += 1
            for maybe in set(answer.maybe) - set(answer.done):
                self.retries[maybe].maybe += 1
            if answer.refused is None:
                return
            reason = answer.refused.split(":", 1)[0]
            if "not published yet" in answer.refused:
                reason = "notification not out yet"
                if tries < 5:  # the notification's publish is being recorded: again soon
                    again = time.monotonic() + 1.0
                    heapq.heappush(self._to_retry, (again, task_id, tries + 1, notice))
            self.retries_refused[reason] += 1

    def retries_settled(self) -> bool:
        """No retry waiting or in progress, and every task retried notified since."""
        with self.lock:
            if self._to_retry or self.retry_busy:
                return False
            return all(
                len(self.outcome_ids[task_id]) >= 1 + retried.done
                for task_id, retried in self.retries.items()
            )

    # -- Redis samples ----------------------------------------------------------------------

    def sample(self) -> None:
        while not self.done.wait(self.options.sample_interval):
            for algorithm in self.options.algorithms:
                base = f"{self.prefix}:{{{algorithm}}}"
                try:
                    with self.redis.pipeline(transaction=True) as pipe:
                        pipe.exists(f"{base}:epoch")
                        pipe.zrange(f"{base}:running", 0, -1)
                        pipe.hgetall(f"{base}:attempts")
                        epoch, members, attempts = pipe.execute()
                except redis.RedisError as exc:
                    self.errors.append(f"sampler: {exc!r}")
                    continue
                at = time.time()
                if not epoch:
                    continue
                slots = [_sampled_slot(member, attempts.get(member)) for member in members]
                self.samples += 1
                self.max_running[algorithm] = max(self.max_running[algorithm], len(members))
                self.sampled.add(algorithm, slots)
                if self.limits.over(algorithm, slots):
                    self.over_cap.append(RunningSample(at, algorithm, tuple(slots)))

    # -- faults ---------------------------------------------------------------------------------

    def inject(self, total: int) -> None:
        """Flush Redis and take the database away when the run reaches given fractions
        of the tasks submitted. The last flushes come with a slowdown of the database:
        Redis loses its data halfway through it, while every step of the workers is
        slow (their windows between reading and writing are wide open)."""
        o = self.options
        flush_at = [(k + 1) / (o.flushes + 1) for k in range(o.flushes)]
        paired = flush_at[len(flush_at) - min(o.slowdowns, len(flush_at)) :]
        events = [(at, "flush") for at in flush_at if at not in paired]
        events += [(at, "slow+flush") for at in paired]
        events += [(0.6, "slow")] * (o.slowdowns - len(paired))
        events += [((k + 1) / (o.outages + 1) - 0.05, "outage") for k in range(o.outages)]
        events.sort()
        background: list[threading.Thread] = []
        for fraction, kind in events:
            while not self.done.is_set():
                with self.lock:
                    reached = self.submitted >= fraction * total
                if reached:
                    break
                time.sleep(0.05)
            if self.done.is_set():
                break
            if kind == "flush":
                self._flush()
            elif kind.startswith("slow"):
                background.append(
                    threading.Thread(target=self._slow, args=(kind == "slow+flush",), daemon=True)
                )
                background[-1].start()
            else:
                self._note(f"database down for {o.outage_seconds:.1f} s")
                self.connections_cut += self.proxy.outage(o.outage_seconds)
                self.outages += 1
                self._note("database back")
        for thread in background:
            thread.join()

    def _flush(self) -> None:
        flush = self.redis.register_script(FLUSH_SCRIPT)
        deleted = int(flush(keys=[], args=[f"{self.prefix}:*"]))
        with self.lock:
            self.flushes += 1
            self.keys_flushed += deleted
        self._note(f"Redis flushed: {deleted} keys")

    def _slow(self, flush_halfway: bool) -> None:
        o = self.options
        self._note(f"database slow for {o.slowdown_seconds:.1f} s")
        slowdown = threading.Thread(
            target=self.proxy.slowdown, args=(o.slowdown_seconds, o.slowdown_max_delay)
        )
        slowdown.start()
        if flush_halfway:
            time.sleep(o.slowdown_seconds / 2)
            self._flush()
        slowdown.join()
        with self.lock:
            self.slowdowns += 1
        self._note("database fast again")

    def _note(self, text: str) -> None:
        with self.log.open("a") as log:
            log.write(f"{time.time():.3f} {text}\n")
        if self.options.progress:
            print(f"  [{time.strftime('%H:%M:%S')}] {text}", flush=True)


def _sampled_slot(member: bytes, entry: bytes | None) -> SampledSlot:
    """A running member with its attempts hash entry, ``<app>\t<cost>[\t<endpoint
    url>\t<admitted at>]`` (a member without one counts 1 on no endpoint)."""
    task_id, _, attempt = member.decode().rpartition(":")
    fields = entry.decode().split("\t") if entry is not None else []
    return SampledSlot(
        task_id=task_id,
        attempt=int(attempt),
        app=fields[0] if fields else "",
        cost=int(fields[1]) if len(fields) > 1 else 1,
        endpoint=fields[2] if len(fields) > 2 else "",
    )


# -- reading the database --------------------------------------------------------------------


def _utc(value: Any) -> float:
    """A naive UTC DATETIME column as epoch seconds."""
    return float(value.replace(tzinfo=UTC).timestamp())


def _epoch(value: Any) -> float | None:
    return None if value is None else _utc(value)


def read_database(url: str) -> tuple[list[TaskRow], dict[str, list[ExecutionRow]], int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            tasks = [
                TaskRow(
                    id=row.id,
                    index=int(json.loads(row.metadata)["chaos"]),
                    app=row.app,
                    idempotency_key=row.idempotency_key,
                    algorithm=row.algorithm,
                    status=row.status,
                    attempts=row.attempts,
                    notification_id=row.notification_id,
                    finished_at=_epoch(row.finished_at),
                    result_key=row.result_key,
                    cost=int(row.cost),
                    error_code=row.error_code,
                    created_at=_utc(row.created_at),
                    queue_deadline=_epoch(row.queue_deadline),
                    total_deadline=_epoch(row.total_deadline),
                    first_accepted_at=_epoch(row.first_accepted_at),
                )
                for row in connection.exec_driver_sql(
                    "SELECT id, app, idempotency_key, algorithm, status, attempts, "
                    "notification_id, finished_at, result_key, metadata, cost, error_code, "
                    "created_at, queue_deadline, total_deadline, first_accepted_at FROM task"
                )
            ]
            executions: dict[str, list[ExecutionRow]] = defaultdict(list)
            for row in connection.exec_driver_sql(
                "SELECT task_id, attempt, algorithm, status, created_at, deadline, "
                "finished_at, http_status, app, cost, endpoint, error_code, drain_until, "
                "drained_at, cancel_tries, cancel_http_status FROM task_execution "
                "ORDER BY task_id, attempt"
            ):
                executions[row.task_id].append(
                    ExecutionRow(
                        task_id=row.task_id,
                        attempt=row.attempt,
                        algorithm=row.algorithm,
                        status=row.status,
                        created_at=_utc(row.created_at),
                        deadline=_utc(row.deadline),
                        finished_at=_epoch(row.finished_at),
                        http_status=row.http_status,
                        app=row.app,
                        cost=int(row.cost),
                        endpoint=row.endpoint or "",
                        error_code=row.error_code,
                        drain_until=_epoch(row.drain_until),
                        drained_at=_epoch(row.drained_at),
                        cancel_tries=int(row.cancel_tries),
                        cancel_http_status=row.cancel_http_status,
                    )
                )
            outbox = connection.exec_driver_sql("SELECT COUNT(*) FROM notification_outbox")
            left = int(outbox.scalar_one())
    finally:
        engine.dispose()
    return tasks, dict(executions), left


def _unsettled(engine: sa.Engine) -> int:
    """Notifications in the outbox, tasks not final, attempts still draining."""
    with engine.connect() as connection:
        answer = connection.exec_driver_sql(
            "SELECT (SELECT COUNT(*) FROM notification_outbox)"
            " + (SELECT COUNT(*) FROM task WHERE status IN"
            " ('pending', 'queued', 'running'))"
            " + (SELECT COUNT(*) FROM task_execution WHERE drain_until IS NOT NULL)"
        )
        return int(answer.scalar_one())


# -- run_chaos ---------------------------------------------------------------------------------


def run_chaos(options: ChaosOptions) -> ChaosReport:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    run = uuid.uuid4().hex[:8]
    log_dir = Path(options.log_dir or tempfile.mkdtemp(prefix=f"baton-chaos-{run}-"))
    log_dir.mkdir(parents=True, exist_ok=True)

    def say(text: str) -> None:
        if options.progress:
            print(text, flush=True)

    say(f"chaos run {run}: {options.tasks} tasks, {options.workers} workers; logs in {log_dir}")

    database = f"baton_chaos_{run}"
    server = sa.create_engine(MYSQL, isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
    direct_url = f"{MYSQL}/{database}?charset=utf8mb4"
    prefix = f"baton-chaos-{run}"
    redis_client = redis.Redis.from_url(REDIS)
    cleanup: list[Any] = []
    try:
        upgrade_database(direct_url)
        moto = MotoServer(log_dir / "moto.log")
        cleanup.append(moto.stop)
        aws = create_aws(moto.endpoint, run, options.visibility_timeout, list(options.apps))
        proxy = TcpProxy(*_host_port(MYSQL)).start()
        cleanup.append(proxy.stop)
        service = ChaosAlgorithmService(options.seed).start()
        cleanup.append(service.stop)
        registry, limits = fleet_registries(options, service)
        apps = app_registry(options, aws.sender_id)
        proxy_url = sa.make_url(direct_url).set(host="127.0.0.1", port=proxy.port)
        environ = {
            "BATON_DATABASE_URL": proxy_url.render_as_string(hide_password=False),
            "BATON_REDIS_URL": REDIS,
            "BATON_RESULT_BUCKET": aws.bucket,
            "BATON_NOTIFICATION_TOPIC_ARN": aws.topic_arn,
            "BATON_TOKEN_SECRET": TOKEN_SECRET,
            "BATON_ALGORITHMS": json.dumps(registry),
            "BATON_APPS": json.dumps(apps),
            "BATON_KEY_PREFIX": prefix,
            "BATON_BACKOFF_BASE_SECONDS": "0.2",
            "BATON_BACKOFF_MAX_SECONDS": "2",
            "BATON_NOTIFICATION_GRACE_SECONDS": "1",
            "BATON_DISPATCH_TIMEOUT_SECONDS": "2",
        }
        # What `baton algorithm secret <name>` prints for this deployment (the signing
        # key derived from the token secret): the service verifies every dispatch.
        signing = SigningKeyring.derived_from(TokenKeyring.from_secret(TOKEN_SECRET))
        service.secrets = {
            name: [one.secret for one in signing.secrets_of(name)] for name in registry
        }
        context = multiprocessing.get_context("spawn")
        reports = context.Queue()
        stop = context.Event()
        processes = []
        for index in range(options.workers):
            spec = WorkerSpec(
                index=index,
                seed=options.seed * 1000 + index,
                crash_rate=options.crash_rate,
                rare_crash_rate=options.rare_crash_rate,
                environ=environ,
                aws_endpoint=moto.endpoint,
                intake_queue_url=aws.intake_url,
                tick=options.tick,
                reconcile_tick=options.reconcile_tick,
                admission_lease_seconds=options.admission_lease_seconds,
                publish_claim_seconds=options.publish_claim_seconds,
                log_path=str(log_dir / f"worker-{index}.log"),
                log_level=options.log_level,
            )
            process = context.Process(
                target=worker_main, args=(spec, reports, stop), name=f"chaos-worker-{index}"
            )
            process.start()
            processes.append(process)

        def stop_workers() -> None:
            stop.set()
            for process in processes:
                process.join(30)
                if process.is_alive():
                    process.terminate()
                    process.join(10)

        cleanup.append(stop_workers)
        gateways: dict[int, str] = {}
        while len(gateways) < options.workers:
            kind, index, payload = reports.get(timeout=120)
            if kind == "failed":
                raise RuntimeError(f"worker {index} failed to start:\n{payload}")
            gateways[index] = payload
        service.gateways = list(gateways.values())
        say(f"  workers ready: {', '.join(service.gateways)}")

        # The operator: its retries dispatch at once where there is room (the fast
        # path), with a callback URL at one of the workers' gateways.
        operator_spec = WorkerSpec(
            index=options.workers,
            seed=options.seed * 1000 + options.workers,
            crash_rate=options.crash_rate,
            rare_crash_rate=options.rare_crash_rate,
            environ=dict(environ, BATON_CALLBACK_BASE_URL=service.gateways[0]),
            aws_endpoint=moto.endpoint,
            intake_queue_url=aws.intake_url,
            tick=options.tick,
            reconcile_tick=options.reconcile_tick,
            admission_lease_seconds=options.admission_lease_seconds,
            publish_claim_seconds=options.publish_claim_seconds,
            log_path=str(log_dir / "operator.log"),
            log_level=options.log_level,
        )
        retry_requests, retry_answers = context.Queue(), context.Queue()
        operator = context.Process(
            target=operator_main,
            args=(operator_spec, retry_requests, retry_answers, stop),
            name="chaos-operator",
        )
        operator.start()
        processes.append(operator)
        kind, _index, _payload = retry_answers.get(timeout=120)
        if kind != "ready":
            raise RuntimeError(f"the operator failed to start; see {operator_spec.log_path}")

        direct = sa.create_engine(direct_url, pool_pre_ping=True)
        cleanup.append(direct.dispose)
        chaos = Run(
            options, aws, redis_client, prefix, proxy, log_dir / "parent.log", limits, direct
        )
        threads = [
            threading.Thread(target=chaos.collect, name="collector", daemon=True),
            threading.Thread(target=chaos.sample, name="sampler", daemon=True),
            threading.Thread(target=chaos.inject, args=(options.tasks,), daemon=True),
            threading.Thread(
                target=chaos.retry_loop,
                args=(retry_requests, retry_answers),
                name="retrier",
                daemon=True,
            ),
        ]
        for thread in threads:
            thread.start()

        progress_stop = threading.Event()

        def report_progress() -> None:
            started = time.monotonic()
            while not progress_stop.wait(10):
                with chaos.lock:
                    submitted, notified = chaos.submitted, len(chaos.notified)
                say(
                    f"  {time.monotonic() - started:6.0f} s: submitted {submitted}/"
                    f"{options.tasks}, notified {notified}, algorithm busy {service.busy()}"
                )

        threading.Thread(target=report_progress, daemon=True).start()
        planned = plan_tasks(options, run)
        chaos.planned = planned
        submitted_all = chaos.submit_all(planned, stall_seconds=options.settle_seconds)
        chaos.retrying = False
        say(f"  all {options.tasks} tasks submitted; settling")

        # Settle: every task notified (each retried one again), the algorithm service
        # idle (late and duplicate callbacks answered), nothing left unfinished or
        # draining, the outbox empty; then a moment for duplicate publishes.
        deadline = time.monotonic() + options.settle_seconds
        while submitted_all and time.monotonic() < deadline:
            with chaos.lock:
                everything = len(chaos.notified) >= options.tasks
            if (
                everything
                and chaos.retries_settled()
                and service.busy() == 0
                and _unsettled(direct) == 0
            ):
                break
            time.sleep(0.2)
        time.sleep(1.5)
        progress_stop.set()
        chaos.done.set()
        for thread in threads:
            thread.join(30)
        stop.set()
        stats: dict[int, WorkerStats] = {}
        gave_up = time.monotonic() + 60
        while len(stats) < options.workers and time.monotonic() < gave_up:
            with contextlib.suppress(Exception):
                kind, index, payload = reports.get(timeout=1)
                if kind == "stats":
                    stats[index] = payload
        operator_stats = WorkerStats(options.workers)
        while time.monotonic() < gave_up:
            with contextlib.suppress(Exception):
                kind, _index, payload = retry_answers.get(timeout=1)
                if kind == "stats":
                    operator_stats.crash_points = payload
                    stats[options.workers] = operator_stats
                    break
        stop_workers()
        cleanup.remove(stop_workers)

        tasks, executions, outbox_left = read_database(direct_url)
        report = _assess(
            options, chaos, service, proxy, stats, tasks, executions, outbox_left, aws, log_dir
        )
        timeline_data = (tasks, executions, service, chaos.notices)
        with (log_dir / "service.json").open("w") as out:
            json.dump(
                {
                    "receipts": [r.as_dict() for r in service.receipts],
                    "callbacks": [c.__dict__ for c in service.callbacks],
                    "cancels": [c.__dict__ for c in service.cancels],
                },
                out,
            )
    finally:
        for step in reversed(cleanup):
            with contextlib.suppress(Exception):
                step()
        with contextlib.suppress(Exception):
            flush = redis_client.register_script(FLUSH_SCRIPT)
            flush(keys=[], args=[f"{prefix}:*"])
        redis_client.close()
        if options.keep_database:
            say(f"  database kept: {direct_url}")
        else:
            with server.connect() as connection:
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS `{database}`")
        server.dispose()
    _write_timelines(log_dir / "timelines.json", report, timeline_data)
    (log_dir / "report.txt").write_text(
        report.table()
        + "\n\nall problems:\n"
        + "\n".join(f"{c.name}: {p}" for c in report.checks for p in c.problems)
        + "\n"
    )
    return report


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _write_timelines(path: Path, report: ChaosReport, data: Any) -> None:
    """For every task a failed check names: what the database, the algorithm service
    and the business app saw of it, in order (a post-mortem starts here)."""
    tasks, executions, service, notices = data
    named = {m for c in report.checks for p in c.problems for m in UUID.findall(p)}
    if not named:
        return
    by_id = {t.id: t for t in tasks}
    out = {}
    for task_id in sorted(named):
        out[task_id] = {
            "task": by_id[task_id].__dict__ if task_id in by_id else None,
            "executions": [e.__dict__ for e in executions.get(task_id, [])],
            "dispatches_received": [r.as_dict() for r in service.receipts if r.task_id == task_id],
            "cancels_received": [c.__dict__ for c in service.cancels if c.task_id == task_id],
            "callbacks": [c.__dict__ for c in service.callbacks if c.task_id == task_id],
            "notifications": [n.__dict__ for n in notices if n.task_id == task_id],
        }
    path.write_text(json.dumps(out, indent=1, default=str))


def _host_port(url: str) -> tuple[str, int]:
    parsed = sa.make_url(url)
    return parsed.host or "127.0.0.1", parsed.port or 3306


def _assess(
    options: ChaosOptions,
    chaos: Run,
    service: ChaosAlgorithmService,
    proxy: TcpProxy,
    stats: dict[int, WorkerStats],
    tasks: list[TaskRow],
    executions: dict[str, list[ExecutionRow]],
    outbox_left: int,
    aws: Aws,
    log_dir: Path,
) -> ChaosReport:
    end = time.time()
    checks: list[Check] = []
    terminal, settle = check_terminal(
        options.tasks, tasks, executions, chaos.last_submit, options.settle_seconds
    )
    if outbox_left:
        terminal.problems.append(f"{outbox_left} notifications still in the outbox")
        terminal.passed = False
    checks.append(terminal)
    notified, duplicate_publishes = check_notifications(
        options.tasks, tasks, chaos.notices, chaos.retries
    )
    checks.append(notified)
    caps, cap_figures = check_cap(
        chaos.limits, executions, service.receipts, chaos.over_cap, chaos.sampled, end
    )
    checks += caps
    checks.append(check_not_twice(executions, service.receipts))
    checks.append(check_one_row(options.tasks, tasks, chaos.messages_sent))
    callbacks, callback_figures = check_callbacks(service.callbacks, executions)
    checks.append(callbacks)
    checks.append(check_timeouts(executions, tasks))
    cancelled, cancel_figures = check_cancels(tasks, executions, service.receipts, chaos.cancels)
    checks.append(cancelled)
    true_load_check, true_load = check_true_load(chaos.limits, executions, service.receipts, end)
    checks.append(true_load_check)
    checks.append(_check_results(aws, tasks))
    harness = list(chaos.errors)
    harness += [f"worker {n} sent no statistics" for n in range(options.workers) if n not in stats]
    if service.uploads_failed:
        harness.append(f"{service.uploads_failed} result uploads failed")
    if service.forged:
        # Every request came from Baton: one that does not verify is a signing bug.
        harness.append(f"{len(service.forged)} dispatch requests did not verify")
    checks.append(
        Check(
            "harness: every fault injected, workers ok",
            not harness
            and (chaos.flushes, chaos.outages, chaos.slowdowns)
            == (options.flushes, options.outages, options.slowdowns),
            f"{chaos.flushes}/{options.flushes} flushes, {chaos.outages}/{options.outages} "
            f"outages, {chaos.slowdowns}/{options.slowdowns} slowdowns, every worker reported",
            harness,
        )
    )

    crash_points: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    answers: Counter[int] = Counter()
    actions: Counter[str] = Counter()
    deliveries = 0
    for worker in stats.values():
        crash_points += worker.crash_points
        errors += worker.errors
        answers += worker.answers
        actions += worker.actions
        deliveries += worker.received
    behaviours = Counter(r.behaviour for r in service.receipts)
    runs = [run for task_runs in executions.values() for run in task_runs]
    drained = [run for run in runs if run.drained_at is not None]
    cancels_sent = Counter(f"{c.kind} {c.by}" for c in chaos.cancels.values())
    cancel_answers = Counter(c.answer for c in service.cancels)
    messages = [json.loads(task.body) for task in chaos.planned]
    finished = [t.finished_at for t in tasks if t.finished_at is not None]
    elapsed = (max(finished) - chaos.first_submit) if finished else math.nan
    injected = {
        "messages_sent": chaos.messages_sent,
        "duplicate_messages": chaos.messages_sent - options.tasks,
        "deliveries": deliveries,
        "flushes": chaos.flushes,
        "keys_flushed": chaos.keys_flushed,
        "outages": chaos.outages,
        "connections_cut": chaos.connections_cut,
        "outage_seconds": proxy.outage_seconds,
        "slow_seconds": proxy.slow_seconds,
        "answered_503": behaviours["503"],
        "answered_busy": behaviours[BUSY],
        "answered_400": behaviours["400"],
        "silent": behaviours["silent"],
        "slow": behaviours["slow"],
        "beat": behaviours["beat"],
        "heartbeats": sum(service.heartbeats.values()),
        "duplicate_callbacks": sum(1 for c in service.callbacks if c.duplicate),
        "cancels_after": f"{cancels_sent['after key'] + cancels_sent['after id']} "
        f"({cancels_sent['after key']} / {cancels_sent['after id']})",
        "cancels_before": f"{cancels_sent['before key']} "
        f"({sum(1 for c in chaos.cancels.values() if c.kept_first)})",
        "timeouts_asked": f"{sum(1 for t in messages if 'queue_timeout_seconds' in t)}"
        f" / {sum(1 for t in messages if 'total_timeout_seconds' in t)}",
        "retries_asked": f"{sum(chaos.retries_asked.values())} "
        f"({chaos.retries_asked['by id'] + chaos.retries_asked['by key']} / "
        f"{chaos.retries_asked['bulk']})",
        "tasks_retried": f"{sum(r.done for r in chaos.retries.values())} / "
        f"{sum(r.maybe for r in chaos.retries.values())}",
        "retries_refused": ", ".join(f"{k} {v}" for k, v in sorted(chaos.retries_refused.items()))
        or "none",
        "cancel_requests": f"{len(service.cancels)} ("
        + ", ".join(
            f"{'no answer' if k == 0 else k} {v}" for k, v in sorted(cancel_answers.items())
        )
        + ")",
        "after_cancel": behaviours["after_cancel"],
    }
    figures = {
        "elapsed": elapsed,
        "settle": settle,
        "tasks_per_second": len(finished) / elapsed if elapsed and elapsed > 0 else 0.0,
        "states": dict(Counter(t.status for t in tasks)),
        "late_409": callback_figures["late_409"],
        "late_applied": callback_figures["late_applied"],
        "conflicts": callback_figures["conflicts"],
        "unauthorized": callback_figures["unauthorized"],
        "duplicate_publishes": duplicate_publishes,
        "api_answers": dict(sorted(answers.items())),
        "errors": ", ".join(f"{k} {v}" for k, v in sorted(errors.items())),
        "samples": chaos.samples,
        "over_cap": f"{cap_figures['over_cap_samples']}: "
        f"{cap_figures['over_cap_samples_unsent']} unsent",
        "cap": cap_figures,
        "heartbeats": dict(service.heartbeats),
        "actions": dict(actions),
        "timed_out_attempts": sum(
            1 for runs in executions.values() for run in runs if run.status == "timed_out"
        ),
        "dispatch_timeouts": sum(
            1
            for runs in executions.values()
            for run in runs
            if run.status == "dispatch_failed" and run.http_status is None
        ),
        "early_409": callback_figures["early_409"],
        "abandoned": sum(
            1 for runs in executions.values() for run in runs if run.status == "abandoned"
        ),
        "costs": dict(sorted(Counter(t.cost for t in tasks).items())),
        "per_endpoint": _per_endpoint(service.receipts),
        "app_shares": _app_shares(executions, {(r.task_id, r.attempt) for r in service.receipts}),
        "max_running": dict(chaos.max_running),
        "timed_out_outcomes": ", ".join(
            f"{k} {v}"
            for k, v in sorted(
                Counter(
                    n.error_code for n in _outcomes(chaos.notices) if n.status == "timed_out"
                ).items()
            )
        )
        or "none",
        "timed_out_tasks": ", ".join(
            f"{k} {v}"
            for k, v in sorted(
                Counter(t.error_code for t in tasks if t.status == "timed_out").items()
            )
        )
        or "none",
        "cancels": ", ".join(
            f"{k} {v}"
            for k, v in sorted(cancel_figures.items())
            if k.startswith(("after:", "before:"))
        )
        or "none",
        "drains": f"{sum(1 for r in drained if acknowledges(r.cancel_http_status))} / "
        f"{sum(1 for r in drained if r.drained_at_grace)}",
        "cancel_tries": f"{sum(r.cancel_tries for r in runs)} "
        f"(by attempts that drained: {len(drained)})",
        "true_load": {
            algorithm: f"{true_load.raw.get(f'alg:{algorithm}', 0)} / "
            f"{true_load.accountable.get(f'alg:{algorithm}', 0)} (cap {cap}, "
            f"{chaos.limits.cancel_modes.get(algorithm, 'no cancel URL')})"
            for algorithm, cap in options.algorithms.items()
        }
        | {
            f"endpoint {short(url)}": f"{true_load.raw.get(f'ep:{url}', 0)} / "
            f"{true_load.accountable.get(f'ep:{url}', 0)} (cap {cap})"
            for url, (_algorithm, cap) in chaos.limits.endpoints.items()
            if short(url) not in options.algorithms
        },
        "true_load_raw": dict(true_load.raw),
        "true_load_accountable": dict(true_load.accountable),
        "true_load_cut": dict(true_load.excused),
        "cancel_figures": cancel_figures,
        "true_overlaps": _true_overlaps(service.receipts),
    }
    return ChaosReport(options, checks, injected, figures, crash_points, str(log_dir))


def _outcomes(notices: list[Notice]) -> list[Notice]:
    """One notice per notification id: the outcomes the business app was told of."""
    return list({n.notification_id: n for n in notices}.values())


def _true_overlaps(receipts: list[Receipt]) -> int:
    """Attempts the service received while it still worked on the task's previous one
    (its cancel not acknowledged yet, or no cancel URL): Baton had ended that one."""
    by_task: dict[str, list[Receipt]] = defaultdict(list)
    for receipt in receipts:
        if receipt.answer < 300:
            by_task[receipt.task_id].append(receipt)
    overlaps = 0
    for got in by_task.values():
        got.sort(key=lambda r: r.received)
        for earlier, later in itertools.pairwise(got):
            if earlier.stopped is None or later.received < earlier.stopped:
                overlaps += 1
    return overlaps


def _per_endpoint(receipts: list[Receipt]) -> dict[str, tuple[int, int]]:
    """Requests each endpoint received, and how many it answered busy."""
    got: Counter[str] = Counter(r.endpoint for r in receipts)
    busy: Counter[str] = Counter(r.endpoint for r in receipts if r.behaviour == BUSY)
    return {short(e): (n, busy[e]) for e, n in sorted(got.items())}


def _app_shares(
    executions: dict[str, list[ExecutionRow]], received: set[tuple[str, int]]
) -> dict[str, dict[str, float]]:
    """Per algorithm, each app's share of the cost-seconds dispatched (database rows of
    the attempts the service received): what the weights and the quota made of it."""
    used: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for runs in executions.values():
        for run in runs:
            if (run.task_id, run.attempt) in received and run.finished_at is not None:
                used[run.algorithm][run.app] += run.cost * (run.finished_at - run.created_at)
    return {
        algorithm: {app: seconds / total for app, seconds in sorted(apps.items())}
        for algorithm, apps in sorted(used.items())
        if (total := sum(apps.values())) > 0
    }


def _check_results(aws: Aws, tasks: list[TaskRow], sample: int = 200) -> Check:
    """A task marked succeeded has its result object (a sample of them)."""
    s3 = aws.client("s3")
    succeeded = [t for t in tasks if t.status == "succeeded"]
    chosen = random.Random(0).sample(succeeded, min(sample, len(succeeded)))
    problems = []
    for task in chosen:
        if not task.result_key:
            problems.append(f"{task.id}: succeeded without a result key")
            continue
        try:
            s3.head_object(Bucket=aws.bucket, Key=task.result_key)
        except Exception:
            problems.append(f"{task.id}: no object at {task.result_key}")
    return Check(
        "results of succeeded tasks exist in S3",
        not problems,
        f"{len(chosen)} of {len(succeeded)} succeeded tasks checked",
        problems,
    )


# -- command line ------------------------------------------------------------------------------


def _pair(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    return float(low), float(high or low)


def _items(text: str) -> list[tuple[str, str]]:
    """``a=1,b=2`` as pairs; an empty text as none."""
    pairs = []
    for item in text.split(","):
        if item.strip():
            name, _, value = item.partition("=")
            pairs.append((name.strip(), value.strip()))
    return pairs


def _format_endpoints(endpoints: dict[str, tuple[int, ...]]) -> str:
    return ",".join(f"{a}={'+'.join(str(c) for c in caps)}" for a, caps in endpoints.items())


def parse_options(argv: list[str] | None = None) -> ChaosOptions:
    defaults = ChaosOptions()
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=defaults.tasks)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--crash-rate", type=float, default=defaults.crash_rate)
    parser.add_argument(
        "--rare-crash-rate",
        type=float,
        default=defaults.rare_crash_rate,
        help="at the crash points of cancels, drains and retries",
    )
    parser.add_argument("--duplicate-messages", type=float, default=defaults.duplicate_messages)
    parser.add_argument("--duplicate-callbacks", type=float, default=defaults.duplicate_callbacks)
    parser.add_argument("--flushes", type=int, default=defaults.flushes)
    parser.add_argument("--outages", type=int, default=defaults.outages)
    parser.add_argument("--outage-seconds", type=float, default=defaults.outage_seconds)
    parser.add_argument("--slowdowns", type=int, default=defaults.slowdowns)
    parser.add_argument("--slowdown-seconds", type=float, default=defaults.slowdown_seconds)
    parser.add_argument("--slowdown-ms", type=float, default=defaults.slowdown_max_delay * 1000)
    parser.add_argument(
        "--algorithms",
        default=",".join(f"{a}={c}" for a, c in defaults.algorithms.items()),
        help="name=cap,... (default %(default)s)",
    )
    parser.add_argument(
        "--endpoints",
        default=_format_endpoints(defaults.endpoints),
        help="algorithm=cap+cap,...: algorithms on several endpoints, their caps; the "
        "algorithm's cap may be below their sum (default %(default)s; '' for none)",
    )
    parser.add_argument(
        "--flaky-share",
        type=float,
        default=defaults.flaky_share,
        help="share of the last endpoint's requests answered busy (default %(default)s)",
    )
    parser.add_argument(
        "--apps",
        default=",".join(f"{a}={w:g}" for a, w in defaults.apps.items()),
        help="app=weight,... (default %(default)s)",
    )
    parser.add_argument(
        "--quotas",
        default=",".join(f"{a}/{alg}={q}" for (a, alg), q in defaults.quotas.items()),
        help="app/algorithm=max_in_flight,... ('*' for every algorithm not named; "
        "default %(default)s; '' for none)",
    )
    parser.add_argument(
        "--costs",
        default=",".join(f"{c}={w:g}" for c, w in defaults.costs),
        help="cost=share,... of the tasks (default %(default)s)",
    )
    parser.add_argument(
        "--cancel-urls",
        default=",".join(f"{a}={m}/{g}" for a, (m, g) in defaults.cancel_urls.items()),
        help="algorithm=honest|flaky/grace seconds,...: algorithms whose endpoints have a "
        "cancel URL, how their service answers cancels (default %(default)s; '' for none)",
    )
    parser.add_argument("--cancels-after", type=float, default=defaults.cancels_after)
    parser.add_argument("--cancels-before", type=float, default=defaults.cancels_before)
    parser.add_argument("--queue-timeouts", type=float, default=defaults.queue_timeouts)
    parser.add_argument("--total-timeouts", type=float, default=defaults.total_timeouts)
    parser.add_argument(
        "--retries",
        type=float,
        default=defaults.retries,
        help="share of failed and timed-out outcomes the operator retries",
    )
    parser.add_argument("--bulk-every", type=int, default=defaults.bulk_every)
    parser.add_argument("--window", type=int, default=defaults.window)
    parser.add_argument("--settle-seconds", type=float, default=defaults.settle_seconds)
    parser.add_argument("--tick", type=_pair, default=defaults.tick, help="min,max seconds")
    parser.add_argument("--reconcile-tick", type=_pair, default=defaults.reconcile_tick)
    parser.add_argument("--admission-lease", type=float, default=defaults.admission_lease_seconds)
    parser.add_argument("--log-dir", default=None)
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--log-level", default=defaults.log_level)
    args = parser.parse_args(argv)
    algorithms = {name: int(cap) for name, cap in _items(args.algorithms)}
    endpoints = {
        name: tuple(int(cap) for cap in caps.split("+")) for name, caps in _items(args.endpoints)
    }
    for name, caps in endpoints.items():
        if name not in algorithms:
            parser.error(f"--endpoints: {name} is not one of --algorithms")
        if algorithms[name] > sum(caps):
            parser.error(f"--endpoints: {name}'s cap is above the sum of its endpoints'")
    apps = {name: float(weight) for name, weight in _items(args.apps)}
    quotas = {}
    for key, quota in _items(args.quotas):
        app, _, algorithm = key.partition("/")
        if app not in apps or (algorithm not in algorithms and algorithm != "*"):
            parser.error(f"--quotas: {key} names an unknown app or algorithm")
        quotas[(app, algorithm)] = int(quota)
    costs = tuple((int(cost), float(share)) for cost, share in _items(args.costs))
    cancel_urls = {}
    for name, value in _items(args.cancel_urls):
        mode, _, grace = value.partition("/")
        if name not in algorithms or mode not in (HONEST, FLAKY) or not grace.isdigit():
            parser.error(f"--cancel-urls: {name}={value} is not algorithm=honest|flaky/seconds")
        cancel_urls[name] = (mode, int(grace))
    return ChaosOptions(
        tasks=args.tasks,
        workers=args.workers,
        seed=args.seed,
        crash_rate=args.crash_rate,
        rare_crash_rate=args.rare_crash_rate,
        duplicate_messages=args.duplicate_messages,
        duplicate_callbacks=args.duplicate_callbacks,
        flushes=args.flushes,
        outages=args.outages,
        outage_seconds=args.outage_seconds,
        slowdowns=args.slowdowns,
        slowdown_seconds=args.slowdown_seconds,
        slowdown_max_delay=args.slowdown_ms / 1000,
        algorithms=algorithms,
        endpoints=endpoints,
        flaky_share=args.flaky_share,
        apps=apps,
        quotas=quotas,
        costs=costs,
        cancel_urls=cancel_urls,
        cancels_after=args.cancels_after,
        cancels_before=args.cancels_before,
        queue_timeouts=args.queue_timeouts,
        total_timeouts=args.total_timeouts,
        retries=args.retries,
        bulk_every=args.bulk_every,
        window=args.window,
        settle_seconds=args.settle_seconds,
        tick=args.tick,
        reconcile_tick=args.reconcile_tick,
        admission_lease_seconds=args.admission_lease,
        log_dir=args.log_dir,
        keep_database=args.keep_database,
        log_level=args.log_level,
    )


def main(argv: list[str] | None = None) -> int:
    report = run_chaos(parse_options(argv))
    print()
    print(report.table())
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
