"""The intake queue and its dead-letter queue on moto, as the template makes them (a
redrive policy from one to the other), and the event source mapping that feeds the
intake function from the queue: what it received, as Lambda's SQS records, with the
failed batch items left in the queue for SQS to deliver again."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3

from tests.support.handlers import Handlers

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageTypeDef

SENDER_ID = "AROAEXAMPLEINTAKESENDER:test"


@dataclass(frozen=True)
class IntakeQueues:
    queue_url: str
    dlq_url: str
    session: boto3.session.Session
    max_receive_count: int

    @classmethod
    def create(cls, session: boto3.session.Session, max_receive_count: int = 2) -> IntakeQueues:
        sqs = session.client("sqs")
        suffix = uuid.uuid4().hex[:10]
        dlq_url = sqs.create_queue(QueueName=f"baton-intake-dlq-{suffix}")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        queue_url = sqs.create_queue(
            QueueName=f"baton-intake-{suffix}",
            Attributes={
                # Visible again at once: a failed batch item is delivered on the next poll.
                "VisibilityTimeout": "0",
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
                ),
            },
        )["QueueUrl"]
        return cls(queue_url, dlq_url, session, max_receive_count)

    def send(self, body: str, queue_url: str | None = None) -> str:
        return self.session.client("sqs").send_message(
            QueueUrl=queue_url or self.queue_url, MessageBody=body
        )["MessageId"]

    def count(self, queue_url: str) -> int:
        attributes = self.session.client("sqs").get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def poll_into_intake(self, handlers: Handlers, rounds: int = 10) -> list[dict[str, Any]]:
        """Receive batches and invoke the intake function with them, deleting what it
        accepted, until the queue is empty; returns every answer."""
        sqs = self.session.client("sqs")
        answers = []
        for _ in range(rounds):
            messages = sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                break
            answer = handlers.invoke("intake", {"Records": [_record(m) for m in messages]})
            answers.append(answer)
            failed = {item["itemIdentifier"] for item in answer["batchItemFailures"]}
            done = [m for m in messages if m["MessageId"] not in failed]
            if done:
                sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                        for n, m in enumerate(done)
                    ],
                )
        return answers


def _record(message: MessageTypeDef) -> dict[str, Any]:
    """An SQS message as the event source mapping hands it to Lambda."""
    attributes = message.get("Attributes", {})
    body = message["Body"]
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
            "SentTimestamp": attributes.get("SentTimestamp", "0"),
            "SenderId": SENDER_ID,
            "ApproximateFirstReceiveTimestamp": attributes.get(
                "ApproximateFirstReceiveTimestamp", "0"
            ),
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:baton-intake",
        "awsRegion": "eu-west-1",
    }
