"""The AWS side of a test (moto on loopback): the result bucket, the notification
topic, and the queue of a business app subscribed to it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import boto3


@dataclass
class AwsResources:
    bucket: str
    topic_arn: str
    subscriber_queue_url: str
    session: boto3.session.Session
    seen: list[dict[str, Any]] = field(default_factory=list)

    def notifications(self, wait_seconds: int = 0) -> list[dict[str, Any]]:
        """Everything the business app's queue received so far (drained, accumulated)."""
        sqs = self.session.client("sqs")
        while True:
            batch = sqs.receive_message(
                QueueUrl=self.subscriber_queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=wait_seconds,
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not batch:
                return self.seen
            for message in batch:
                self.seen.append(json.loads(message["Body"]))
                sqs.delete_message(
                    QueueUrl=self.subscriber_queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
            wait_seconds = 0
