"""Task-finished notifications on SNS, with the attributes business apps filter on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from baton.contracts import Notification, RejectedNotification

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient


class Notifier:
    def __init__(self, client: SNSClient, topic_arn: str) -> None:
        self._client = client
        self._topic_arn = topic_arn

    def publish(self, notification: Notification | RejectedNotification) -> str:
        """Step 16: publish one notification (or tell an app of a message intake
        rejected); returns the SNS message id. An attribute without a value (the
        algorithm of a rejected message that names none) is left out: SNS takes none
        empty."""
        response = self._client.publish(
            TopicArn=self._topic_arn,
            Message=notification.model_dump_json(),
            MessageAttributes={
                name: {"DataType": "String", "StringValue": value}
                for name, value in (
                    ("app", notification.app),
                    ("algorithm", notification.algorithm),
                    ("status", notification.status),
                    ("notification_id", notification.notification_id),
                )
                if value
            },
        )
        return response["MessageId"]
