"""The intake queue as a real SQS queue (moto) with its event source mapping: what a
business app sends with the SDK is received, shaped as the SQS event Lambda delivers
(tests.support.events), handed to the intake handler, and deleted unless the handler
reported it as a failed batch item. ``start()`` pumps in the background, with the
dispatch schedule ticking beside it as EventBridge's would."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3

from tests.support.events import schedule_event, sqs_event, sqs_record
from tests.support.handlers import Handlers

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


@dataclass
class IntakeQueue:
    handlers: Handlers
    session: boto3.session.Session
    url: str = ""
    delivered: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        if not self.url:
            self.url = self.sqs.create_queue(QueueName=f"baton-intake-{uuid.uuid4().hex[:10]}")[
                "QueueUrl"
            ]

    @property
    def sqs(self) -> SQSClient:
        return self.session.client("sqs")

    def pump_once(self, wait_seconds: int = 0) -> int:
        """One receive, one intake invocation; how many messages it delivered."""
        sqs = self.sqs
        messages = sqs.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
        ).get("Messages", [])
        if not messages:
            return 0
        event = sqs_event(*(sqs_record(m["Body"], message_id=m["MessageId"]) for m in messages))
        answer = self.handlers.invoke("intake", event)
        failed = {item["itemIdentifier"] for item in answer["batchItemFailures"]}
        self.failures += answer["batchItemFailures"]
        for message in messages:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        self.delivered += len(messages)
        return len(messages)

    def start(self, tick_seconds: float = 0.5) -> IntakeQueue:
        def run() -> None:
            while not self._stop.is_set():
                if not self.pump_once(wait_seconds=0):
                    # the scheduled safety net, for a callback whose fast path found no room
                    self.handlers.invoke("dispatch", schedule_event("dispatch"))
                    self._stop.wait(tick_seconds)

        self._thread = threading.Thread(target=run, name="intake-event-source", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
