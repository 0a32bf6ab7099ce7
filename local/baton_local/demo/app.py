"""The demo's business app, "docs-portal", and its ledger.

docs-portal does what the README asks of a business application: it creates its own
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
from typing import TYPE_CHECKING, Any

import urllib3
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from boto3.session import Session

APP = "docs-portal"
KIND_PRIORITY = {"invoice": 10, "contract": 5, "form": 0, "letter": -5}
"""Invoices go first (payment runs), then contracts, then forms and scans; letters last."""
RUSH_PRIORITY = 50
RUSH_SHARE = 0.1
CLASSIFY_TIMEOUT_SECONDS = 4
"""docs-portal wants a class within 4 s (twice), or a person sorts the document."""
CLASSIFY_MAX_ATTEMPTS = 2
TROUBLE = (("classify", "fax-0417-garbled.txt"), ("text-stats", "scan-0193-blank.txt"))
"""Pairs every plan includes, however small: a timeout and a failure."""


@dataclass(frozen=True)
class PlannedTask:
    ref: str
    algorithm: str
    document: str
    priority: int
    timeout_seconds: int | None = None
    max_attempts: int | None = None

    def message(self, run_id: str) -> dict[str, Any]:
        """The task message, as the README's "Submit a task" describes it."""
        body: dict[str, Any] = {
            "app": APP,
            "algorithm": self.algorithm,
            "input": {"document": self.document, "ref": self.ref},
            "idempotency_key": f"{run_id}:{self.ref}",
            "priority": self.priority,
            "metadata": {"ref": self.ref, "document": self.document},
        }
        if self.timeout_seconds is not None:
            body["timeout_seconds"] = self.timeout_seconds
        if self.max_attempts is not None:
            body["max_attempts"] = self.max_attempts
        return body


def plan_tasks(
    count: int, seed: int, documents: Sequence[str], algorithms: Sequence[str]
) -> list[PlannedTask]:
    """``count`` tasks spread evenly over the algorithm x document pairs, in a seeded
    order; the troublesome pairs come first so that even a small plan has them."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible plan, not a secret
    pairs = [(algorithm, document) for algorithm in algorithms for document in documents]
    rng.shuffle(pairs)
    trouble = [pair for pair in TROUBLE if pair in pairs]
    rest = [pair for pair in pairs if pair not in trouble]
    head = trouble + rest[: max(0, min(count, len(pairs)) - len(trouble))]
    rng.shuffle(head)
    ordered = head + [pair for pair in rest if pair not in head]
    tasks = []
    for n in range(count):
        algorithm, document = ordered[n % len(ordered)]
        kind = document.split("-", 1)[0]
        priority = KIND_PRIORITY.get(kind, 0)
        if rng.random() < RUSH_SHARE:
            priority = RUSH_PRIORITY
        classify = algorithm == "classify"
        tasks.append(
            PlannedTask(
                ref=f"task-{n:04d}",
                algorithm=algorithm,
                document=document,
                priority=priority,
                timeout_seconds=CLASSIFY_TIMEOUT_SECONDS if classify else None,
                max_attempts=CLASSIFY_MAX_ATTEMPTS if classify else None,
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


# -- the app ------------------------------------------------------------------------------


class DocsPortal:
    """The business app: its own queue and subscription, intake batches, notifications."""

    def __init__(
        self, session: Session, outputs: Mapping[str, str], ledger: Ledger, run_id: str
    ) -> None:
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
        self._readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="result-reader")
        self._http = urllib3.PoolManager(
            maxsize=4, retries=urllib3.Retry(total=3, backoff_factor=0.1)
        )

    def subscribe(self) -> None:
        """Its own queue on the topic: filtered on its app, raw delivery."""
        self.queue_url = self.sqs.create_queue(
            QueueName=f"{APP}-notifications-{self.run_id}",
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
            Attributes={"RawMessageDelivery": "true", "FilterPolicy": json.dumps({"app": [APP]})},
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]

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

    def start(self) -> None:
        self._consumer = threading.Thread(target=self._consume, name=f"{APP}-consumer", daemon=True)
        self._consumer.start()

    def stop(self, drain_seconds: float = 0.0) -> None:
        """Stop consuming (after ``drain_seconds`` more, to catch a late repeat)."""
        if drain_seconds:
            time.sleep(drain_seconds)
        self._stop.set()
        if self._consumer is not None:
            self._consumer.join(timeout=10)
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
