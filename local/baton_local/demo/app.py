"""The demo's business apps, "docs-portal" and "bulk-import", and their ledger.

The portal is interactive: a modest, steady stream of documents, and the larger weight
(4) in the app registry. The import sends far more, all at once, with weight 1. Each
does what the README asks of a business application: it creates its own
SQS queue, subscribes it to the notification topic with a filter policy on its app
name and raw message delivery, sends task messages to the intake queue in batches,
reads one notification per task from its queue (dropping a repeated
``notification_id``), and reads every succeeded result through the presigned URL
in the notification.

The ``Ledger`` is the demo's own bookkeeping, fed by the app (submitted, notified)
and by the algorithm services (dispatch received, attempt over): where each task is
now, for the live view and the timeline, and the times the latencies are made of.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import urllib3
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from boto3.session import Session

PORTAL = "docs-portal"
BULK = "bulk-import"
APP = PORTAL
WEIGHTS = {PORTAL: 4.0, BULK: 1.0}
"""The app registry's weights: the interactive portal gets four units to the import's one
wherever both wait for the same algorithm."""
PORTAL_SHARE = 0.35
"""Of the plan's tasks, the portal's share: the import sends the rest, at once."""
PORTAL_RATE = 7.0
"""The portal's tasks per second: steady, and above its weighted share of what its
algorithms get through, so that it keeps tasks waiting beside the import's backlog for
a while (a share only shows where both apps wait; an app whose queue keeps running dry
rejoins at the other's pass and is served as soon as it asks, not by its weight)."""
IMPORT_ONLY = frozenset({"keywords"})
"""Indexing is the import's business: there the import is alone, and gets everything."""
KIND_PRIORITY = {"invoice": 10, "contract": 5, "form": 0, "letter": -5}
"""Invoices go first (payment runs), then contracts, then forms and scans; letters last."""
RUSH_PRIORITY = 50
RUSH_SHARE = 0.1
CLASSIFY_TIMEOUT_SECONDS = 6
"""docs-portal wants a class within 6 s, or a person sorts the document."""
CLASSIFY_MAX_ATTEMPTS = 1
TROUBLE = (("classify", "fax-0417-garbled.txt"), ("text-stats", "scan-0193-blank.txt"))
"""Pairs every plan includes, however small: a timeout and a failure (the portal's:
people upload odd scans)."""


@dataclass(frozen=True)
class PlannedTask:
    ref: str
    algorithm: str
    document: str
    priority: int
    timeout_seconds: int | None = None
    max_attempts: int | None = None
    app: str = PORTAL
    cost: int = 1
    at: float = 0.0
    """When the app sends it, in seconds from the first submission."""

    def message(self, run_id: str) -> dict[str, Any]:
        """The task message, as the README's "Submit a task" describes it."""
        body: dict[str, Any] = {
            "app": self.app,
            "algorithm": self.algorithm,
            "input": {"document": self.document, "ref": self.ref},
            "idempotency_key": f"{run_id}:{self.ref}",
            "priority": self.priority,
            "metadata": {"ref": self.ref, "document": self.document},
        }
        if self.cost != 1:
            body["cost"] = self.cost
        if self.timeout_seconds is not None:
            body["timeout_seconds"] = self.timeout_seconds
        if self.max_attempts is not None:
            body["max_attempts"] = self.max_attempts
        return body


def _pairs(
    count: int,
    rng: random.Random,
    documents: Sequence[str],
    algorithms: Sequence[str],
    trouble: Sequence[tuple[str, str]],
) -> list[tuple[str, str]]:
    """``count`` algorithm x document pairs, spread evenly, in a seeded order; the
    troublesome pairs come first so that even a small plan has them."""
    pairs = [(algorithm, document) for algorithm in algorithms for document in documents]
    rng.shuffle(pairs)
    chosen = [pair for pair in trouble if pair in pairs]
    rest = [pair for pair in pairs if pair not in chosen]
    head = chosen + rest[: max(0, min(count, len(pairs)) - len(chosen))]
    rng.shuffle(head)
    ordered = head + [pair for pair in rest if pair not in head]
    return [ordered[n % len(ordered)] for n in range(count)]


def plan_tasks(
    count: int,
    seed: int,
    documents: Sequence[str],
    algorithms: Sequence[str],
    *,
    costs: Mapping[tuple[str, str], int] | None = None,
    portal_share: float = PORTAL_SHARE,
    portal_rate: float = PORTAL_RATE,
) -> list[PlannedTask]:
    """``count`` tasks: the portal's share sent steadily at ``portal_rate`` a second,
    the import's all at once; each app's spread evenly over its algorithm x document
    pairs (the portal's leave out ``IMPORT_ONLY``). ``costs`` gives a pair's cost
    (default 1)."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible plan, not a secret
    portal_count = min(count, max(1, round(count * portal_share)))
    portal_algorithms = [a for a in algorithms if a not in IMPORT_ONLY] or list(algorithms)
    portal = _pairs(portal_count, rng, documents, portal_algorithms, TROUBLE)
    bulk = _pairs(count - portal_count, rng, documents, algorithms, ())
    tasks = []
    for app, pairs in ((PORTAL, portal), (BULK, bulk)):
        for n, (algorithm, document) in enumerate(pairs):
            kind = document.split("-", 1)[0]
            priority = KIND_PRIORITY.get(kind, 0)
            if rng.random() < RUSH_SHARE:
                priority = RUSH_PRIORITY
            classify = algorithm == "classify"
            tasks.append(
                PlannedTask(
                    ref=f"{'portal' if app == PORTAL else 'bulk'}-{n:04d}",
                    algorithm=algorithm,
                    document=document,
                    priority=priority,
                    timeout_seconds=CLASSIFY_TIMEOUT_SECONDS if classify else None,
                    max_attempts=CLASSIFY_MAX_ATTEMPTS if classify else None,
                    app=app,
                    cost=(costs or {}).get((algorithm, document), 1),
                    at=n / portal_rate if app == PORTAL else 0.0,
                )
            )
    return tasks


# -- the ledger ---------------------------------------------------------------------------


@dataclass
class TaskRecord:
    task: PlannedTask
    state: str = "planned"
    """planned -> queued -> running -> (queued again | reported) -> final"""
    submitted_at: float | None = None
    first_dispatch_at: float | None = None
    notified_at: float | None = None
    task_id: str | None = None
    status: str | None = None
    attempts: int | None = None
    error_code: str | None = None
    notification_ids: list[str] = field(default_factory=list)
    dispatches: int = 0
    result_ok: bool | None = None
    result_problem: str | None = None
    created_wall: float | None = None
    """Baton's ``created_at`` and ``first_dispatched_at`` (seconds since the epoch), from
    the notification: when the task was there to be admitted, and when it first was."""
    first_dispatched_wall: float | None = None


class Ledger:
    """Where every task is, from the app's and the services' events; thread-safe."""

    def __init__(self, tasks: Sequence[PlannedTask], clock: float | None = None) -> None:
        self.records = {task.ref: TaskRecord(task) for task in tasks}
        self.started = time.monotonic() if clock is None else clock
        self.duplicates: list[str] = []
        self.strangers: list[str] = []
        self.attribute_mismatches: list[str] = []
        self.finished_at: float | None = None
        self._lock = threading.Lock()

    # -- events --

    def submitted(self, refs: Sequence[str], at: float) -> None:
        with self._lock:
            for ref in refs:
                record = self.records[ref]
                record.submitted_at = at
                if record.state == "planned":
                    record.state = "queued"

    def dispatch_received(self, ref: str, algorithm: str, accepted: bool) -> None:
        now = time.monotonic()
        with self._lock:
            record = self.records.get(ref)
            if record is None:
                return
            record.dispatches += 1
            if record.first_dispatch_at is None:
                record.first_dispatch_at = now
            if accepted and record.state != "final":
                record.state = "running"

    def attempt_over(self, ref: str, algorithm: str, reported: bool) -> None:
        with self._lock:
            record = self.records.get(ref)
            if record is not None and record.state != "final":
                record.state = "reported" if reported else "queued"

    def notified(self, notification: Mapping[str, Any], at: float) -> TaskRecord | None:
        """Record a notification; None for a repeat (same id) or an unknown task."""
        notification_id = str(notification.get("notification_id"))
        ref = str((notification.get("metadata") or {}).get("ref"))
        with self._lock:
            record = self.records.get(ref)
            if record is None:
                self.strangers.append(notification_id)
                return None
            if notification_id in record.notification_ids:
                self.duplicates.append(notification_id)
                return None
            record.notification_ids.append(notification_id)
            if record.state == "final":  # a second, different notification for the task
                return None
            record.state = "final"
            record.notified_at = at
            record.task_id = str(notification.get("task_id"))
            record.status = str(notification.get("status"))
            record.attempts = int(notification.get("attempts") or 0)
            error = notification.get("error") or {}
            record.error_code = str(error.get("code")) if error else None
            record.created_wall = _epoch(notification.get("created_at"))
            record.first_dispatched_wall = _epoch(notification.get("first_dispatched_at"))
            if all(r.state == "final" for r in self.records.values()):
                self.finished_at = at
            return record

    def stranger(self, what: str) -> None:
        with self._lock:
            self.strangers.append(what)

    def attribute_mismatch(self, notification_id: str) -> None:
        with self._lock:
            self.attribute_mismatches.append(notification_id)

    def result_read(self, ref: str, problem: str | None) -> None:
        with self._lock:
            record = self.records[ref]
            record.result_ok = problem is None
            record.result_problem = problem

    # -- views --

    def all_final(self) -> bool:
        with self._lock:
            return all(record.state == "final" for record in self.records.values())

    def results_pending(self) -> int:
        with self._lock:
            return sum(
                1
                for record in self.records.values()
                if record.status == "succeeded" and record.result_ok is None
            )

    def counts(self) -> dict[str, Counter[str]]:
        """Per algorithm: how many tasks are in each state or final status."""
        table: dict[str, Counter[str]] = defaultdict(Counter)
        with self._lock:
            for record in self.records.values():
                key = record.status if record.state == "final" else record.state
                table[record.task.algorithm][str(key)] += 1
        return table

    def waiting(self) -> dict[tuple[str, str], int]:
        """(app, algorithm) -> tasks sent and waiting (not running, not finished)."""
        table: Counter[tuple[str, str]] = Counter()
        with self._lock:
            for record in self.records.values():
                if record.state == "queued":
                    table[record.task.app, record.task.algorithm] += 1
        return dict(table)

    def longest_waiting(self) -> TaskRecord | None:
        """The task sent first of those waiting (sent, not running, not finished)."""
        with self._lock:
            waiting = [r for r in self.records.values() if r.state == "queued"]
        return min(waiting, key=lambda r: r.submitted_at or 0.0, default=None)

    def app_of(self, ref: str) -> str | None:
        record = self.records.get(ref)
        return None if record is None else record.task.app


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# -- the app ------------------------------------------------------------------------------


class BusinessApp:
    """A business app: its own queue and subscription, intake batches, notifications."""

    def __init__(
        self, name: str, session: Session, outputs: Mapping[str, str], ledger: Ledger, run_id: str
    ) -> None:
        self.name = name
        self.sqs = session.client("sqs")
        self.sns = session.client("sns")
        self.intake_url = outputs["IntakeQueueUrl"]
        self.topic_arn = outputs["NotificationTopicArn"]
        self.ledger = ledger
        self.run_id = run_id
        self.queue_url = ""
        self.subscription_arn = ""
        self.send_failures: list[Mapping[str, Any]] = []
        self.messages_received = 0
        self.receive_errors = 0
        self._stop = threading.Event()
        self._consumer: threading.Thread | None = None
        self._sender: threading.Thread | None = None
        self._readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"{name}-reader")
        self._http = urllib3.PoolManager(
            maxsize=4, retries=urllib3.Retry(total=3, backoff_factor=0.1)
        )

    def subscribe(self) -> None:
        """Its own queue on the topic: filtered on its app, raw delivery."""
        self.queue_url = self.sqs.create_queue(
            QueueName=f"{self.name}-notifications-{self.run_id}",
            Attributes={"ReceiveMessageWaitTimeSeconds": "1", "VisibilityTimeout": "30"},
        )["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": self.topic_arn}},
                }
            ],
        }
        self.sqs.set_queue_attributes(
            QueueUrl=self.queue_url, Attributes={"Policy": json.dumps(policy)}
        )
        self.subscription_arn = self.sns.subscribe(
            TopicArn=self.topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={
                "RawMessageDelivery": "true",
                "FilterPolicy": json.dumps({"app": [self.name]}),
            },
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]

    def sender_id(self) -> str | None:
        """The SenderId SQS records for what this app sends: one probe message through
        its own queue, before anything else arrives there."""
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody='{"probe": true}')
        for _ in range(5):
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                MessageSystemAttributeNames=["SenderId"],
            ).get("Messages", [])
            for message in messages:
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
                if message["Body"] == '{"probe": true}':
                    return message.get("Attributes", {}).get("SenderId")
        return None

    def submit(self, tasks: Sequence[PlannedTask]) -> None:
        """SendMessageBatch, ten at a time; the submit time is when the batch goes out."""
        for start in range(0, len(tasks), 10):
            batch = tasks[start : start + 10]
            sent_at = time.monotonic()
            answer = self.sqs.send_message_batch(
                QueueUrl=self.intake_url,
                Entries=[
                    {"Id": str(n), "MessageBody": json.dumps(task.message(self.run_id))}
                    for n, task in enumerate(batch)
                ],
            )
            failed = {int(entry["Id"]) for entry in answer.get("Failed", [])}
            self.send_failures.extend(answer.get("Failed", []))
            self.ledger.submitted(
                [task.ref for n, task in enumerate(batch) if n not in failed], sent_at
            )

    def stream(self, tasks: Sequence[PlannedTask], origin: float) -> None:
        """Send each task at its ``at`` (from ``origin``, monotonic), in the background:
        whatever is due goes out in one batch."""
        pending = sorted(tasks, key=lambda task: task.at)

        def send() -> None:
            while pending and not self._stop.is_set():
                now = time.monotonic() - origin
                due = [task for task in pending if task.at <= now]
                if due:
                    del pending[: len(due)]
                    self.submit(due)
                elif self._stop.wait(min(0.1, pending[0].at - now)):
                    return

        self._sender = threading.Thread(target=send, name=f"{self.name}-sender", daemon=True)
        self._sender.start()

    def start(self) -> None:
        self._consumer = threading.Thread(
            target=self._consume, name=f"{self.name}-consumer", daemon=True
        )
        self._consumer.start()

    def stop(self, drain_seconds: float = 0.0) -> None:
        """Stop consuming (after ``drain_seconds`` more, to catch a late repeat)."""
        if drain_seconds:
            time.sleep(drain_seconds)
        self._stop.set()
        for thread in (self._sender, self._consumer):
            if thread is not None:
                thread.join(timeout=10)
        self._readers.shutdown(wait=True)
        self._http.clear()

    def unsubscribe(self) -> None:
        if self.subscription_arn:
            self.sns.unsubscribe(SubscriptionArn=self.subscription_arn)
        if self.queue_url:
            self.sqs.delete_queue(QueueUrl=self.queue_url)

    # -- notifications --

    def _consume(self) -> None:
        while not self._stop.is_set():
            try:
                messages = self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=1,
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
            except (BotoCoreError, ClientError):
                self.receive_errors += 1
                self._stop.wait(0.5)
                continue
            received_at = time.monotonic()
            for message in messages:
                self.messages_received += 1
                self._handle(message, received_at)
            if messages:
                with suppress(BotoCoreError, ClientError):  # redelivered, then dropped as seen
                    self.sqs.delete_message_batch(
                        QueueUrl=self.queue_url,
                        Entries=[
                            {"Id": str(n), "ReceiptHandle": message["ReceiptHandle"]}
                            for n, message in enumerate(messages)
                        ],
                    )

    def _handle(self, message: Mapping[str, Any], received_at: float) -> None:
        try:
            notification = json.loads(message["Body"])
        except ValueError:
            self.ledger.stranger("unreadable body")
            return
        if not isinstance(notification, dict):
            self.ledger.stranger("not an object")
            return
        attributes = {
            name: value.get("StringValue")
            for name, value in (message.get("MessageAttributes") or {}).items()
        }
        expected = {name: notification.get(name) for name in ("app", "algorithm", "status")}
        if any(attributes.get(name) != value for name, value in expected.items()):
            self.ledger.attribute_mismatch(str(notification.get("notification_id")))
        record = self.ledger.notified(notification, received_at)
        if record is not None and record.status == "succeeded":
            result = notification.get("result") or {}
            self._readers.submit(self._read_result, record.task.ref, record.task.document, result)

    def _read_result(self, ref: str, document: str, result: Mapping[str, Any]) -> None:
        """GET the result through the presigned URL and check it is this document's."""
        problem: str | None = None
        try:
            answer = self._http.request("GET", str(result.get("url")), timeout=10)
            if answer.status != 200:
                problem = f"GET answered {answer.status}"
            elif json.loads(answer.data).get("document") != document:
                problem = "the result is another document's"
        except (urllib3.exceptions.HTTPError, ValueError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        self.ledger.result_read(ref, problem)
