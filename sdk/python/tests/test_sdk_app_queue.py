"""The business app on SQS and SNS (moto): submitting, batching with partial failures,
cancelling, and reading notifications, raw or in SNS's envelope, duplicates dropped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from test_sdk_contracts import NOTIFICATION, REJECTED

from baton_sdk import BatonClient, Notification, RejectedNotification, TaskMessage
from baton_sdk.app import RecentIds, unwrap_sns
from baton_sdk.contracts import CancelMessage, derive_idempotency_key

REGION = "eu-west-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


@pytest.fixture
def sqs(aws: None) -> Any:
    return boto3.client("sqs", region_name=REGION)


@pytest.fixture
def intake(sqs: Any, request: pytest.FixtureRequest) -> str:
    url: str = sqs.create_queue(QueueName=f"intake-{request.node.name[:40]}")["QueueUrl"]
    return url


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def task(n: int, **fields: Any) -> TaskMessage:
    return TaskMessage.model_validate(
        {"app": "bulk-import", "algorithm": "ocr", "input": {"doc": n}, **fields}
    )


# -- submit ----------------------------------------------------------------------------


def test_submit_sends_an_explicit_key_and_returns_it(sqs: Any, intake: str) -> None:
    client = BatonClient(intake, sqs=sqs)
    derived = client.submit(task(1))
    given = client.submit(task(2, idempotency_key="import:2"))
    assert derived == derive_idempotency_key(task(1))
    assert given == "import:2"
    bodies = drain(sqs, intake)
    assert [body["idempotency_key"] for body in bodies] == [derived, given]
    assert TaskMessage.model_validate(bodies[0]) == task(1, idempotency_key=derived)


class FailingOne:
    """An SQS client that refuses one entry id of each batch, and counts the calls."""

    def __init__(self, client: Any, refuse: str) -> None:
        self._client = client
        self._refuse = refuse
        self.batches: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def send_message_batch(self, QueueUrl: str, Entries: list[Any]) -> Any:  # noqa: N803
        self.batches.append(len(Entries))
        kept = [entry for entry in Entries if entry["Id"] != self._refuse]
        answer = self._client.send_message_batch(QueueUrl=QueueUrl, Entries=kept)
        if len(kept) < len(Entries):
            answer.setdefault("Failed", []).append(
                {
                    "Id": self._refuse,
                    "SenderFault": False,
                    "Code": "InternalError",
                    "Message": "try again",
                }
            )
        return answer


def test_submit_many_sends_23_tasks_in_batches_and_reports_each(sqs: Any, intake: str) -> None:
    # Given 23 tasks, one of which SQS refuses and one too large for any message
    stub = FailingOne(sqs, refuse="13")
    client = BatonClient(intake, sqs=cast(Any, stub))
    messages = [task(n) for n in range(23)]
    messages[20] = task(20, metadata={"pad": "x" * (256 * 1024)})

    # When they are submitted
    result = client.submit_many(messages)

    # Then every entry is reported, in order, with its key, and nothing was raised
    assert [entry.index for entry in result.entries] == list(range(23))
    assert result.keys == [derive_idempotency_key(message) for message in messages]
    assert not result.ok
    assert [(e.index, e.error_code, e.sender_fault) for e in result.failed] == [
        (13, "InternalError", False),
        (20, "MessageTooLong", True),
    ]
    assert all(entry.message_id for entry in result.succeeded)
    assert stub.batches == [10, 10, 2]
    arrived = drain(sqs, intake)
    assert sorted(body["input"]["doc"] for body in arrived) == [
        n for n in range(23) if n not in (13, 20)
    ]


def test_a_failed_batch_call_is_reported_per_entry(sqs: Any, intake: str) -> None:
    class Throttled(FailingOne):
        def send_message_batch(self, QueueUrl: str, Entries: list[Any]) -> Any:  # noqa: N803
            self.batches.append(len(Entries))
            if len(self.batches) == 2:
                raise ClientError(
                    {"Error": {"Code": "RequestThrottled", "Message": "slow down"}},
                    "SendMessageBatch",
                )
            return self._client.send_message_batch(QueueUrl=QueueUrl, Entries=Entries)

    result = BatonClient(intake, sqs=cast(Any, Throttled(sqs, refuse=""))).submit_many(
        task(n) for n in range(12)
    )
    assert [entry.index for entry in result.failed] == [10, 11]
    assert {entry.error_code for entry in result.failed} == {"RequestThrottled"}
    assert len(drain(sqs, intake)) == 10


def test_batch_is_split_by_size_as_well_as_count(sqs: Any, intake: str) -> None:
    stub = FailingOne(sqs, refuse="")
    big = [task(n, metadata={"pad": "x" * 100_000}) for n in range(5)]
    result = BatonClient(intake, sqs=cast(Any, stub)).submit_many(big)
    assert result.ok
    assert stub.batches == [2, 2, 1]


def test_cancel_sends_a_strict_cancel_message(sqs: Any, intake: str) -> None:
    client = BatonClient(intake, sqs=sqs)
    client.cancel("portal", idempotency_key="doc/17", reason="withdrawn")
    client.cancel("portal", task_id="t-1")
    with pytest.raises(ValueError, match="exactly one"):
        client.cancel("portal")
    with pytest.raises(ValueError, match="exactly one"):
        client.cancel("portal", task_id="t", idempotency_key="k")
    first, second = (CancelMessage.model_validate(body) for body in drain(sqs, intake))
    assert first.model_dump(exclude_none=True) == {
        "app": "portal",
        "cancel": {"idempotency_key": "doc/17"},
        "reason": "withdrawn",
    }
    assert second.model_dump(exclude_none=True) == {"app": "portal", "cancel": {"task_id": "t-1"}}


# -- notifications ---------------------------------------------------------------------


def test_notifications_raw_and_enveloped_duplicates_dropped_and_deleted(
    sqs: Any, intake: str
) -> None:
    # Given the app's queue subscribed to Baton's topic (SNS's envelope), and the same
    # notification published again, as raw delivery writes it
    sns = boto3.client("sns", region_name=REGION)
    topic = sns.create_topic(Name="baton-notifications")["TopicArn"]
    queue = sqs.create_queue(QueueName="portal-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    for document in (NOTIFICATION, REJECTED):
        sns.publish(TopicArn=topic, Message=json.dumps(document))
    second = {**NOTIFICATION, "notification_id": "n-2", "task_id": "t-2"}
    for document in (NOTIFICATION, second):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(document))
    sqs.send_message(QueueUrl=queue, MessageBody="not a notification")

    # When the app reads them
    client = BatonClient(intake, sqs=sqs)
    seen = list(client.notifications(queue, wait_seconds=0, stop_when_empty=True))

    # Then each notification comes once, parsed, and only the stranger stays
    assert sorted(n.notification_id for n in seen) == ["n-1", "n-2", "r-1"]
    assert {type(n) for n in seen} == {Notification, RejectedNotification}
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert (
        int(attributes["ApproximateNumberOfMessages"])
        + int(attributes["ApproximateNumberOfMessagesNotVisible"])
        == 1
    )


def test_sns_envelope_is_unwrapped() -> None:
    envelope = {"Type": "Notification", "MessageId": "m", "Message": json.dumps(NOTIFICATION)}
    assert unwrap_sns(json.dumps(envelope)) == json.dumps(NOTIFICATION)
    assert unwrap_sns(json.dumps(NOTIFICATION)) == json.dumps(NOTIFICATION)
    assert unwrap_sns("not json") == "not json"


def test_recent_ids_forget_the_oldest() -> None:
    recent = RecentIds(2)
    assert not recent.seen("a")
    assert not recent.seen("b")
    assert not recent.seen("c")  # "a" forgotten
    assert recent.seen("c")
    assert not recent.seen("a")


def test_message_is_deleted_only_once_the_loop_moves_on(sqs: Any, intake: str) -> None:
    queue = sqs.create_queue(QueueName="portal-events")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(NOTIFICATION))
    client = BatonClient(intake, sqs=sqs)
    stream = client.notifications(queue, wait_seconds=0, stop_when_empty=True)
    first = next(stream)
    assert first.notification_id == "n-1"
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "1"
    assert list(stream) == []
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
