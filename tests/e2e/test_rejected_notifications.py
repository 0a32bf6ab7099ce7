"""A task message intake rejects still fails its batch item, and its app is told once
per message, however often SQS delivers it again: a ``rejected`` notification with the
reason, the message id and what of the message could be read. Nobody is told of a
message whose app cannot be read, nor, with an app registry, of one from a sender that
is not the app's. The good messages of the same batch go through."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import pytest
from baton.contracts import Notification, RejectedNotification, TaskMessage, derive_idempotency_key
from baton.errors import InvalidTaskMessage
from baton.intake import parse_task_message
from baton.rejections import rejected_notification_id
from baton.runtime import Runtime
from botocore.exceptions import ClientError

from tests.support.algorithm_service import AlgorithmService
from tests.support.aws import AwsResources
from tests.support.events import sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.runtime import RuntimeFactory
from tests.support.waiting import wait_for

# The intake sample's SenderId is a session of this role
CONTRACTS_ROLE_ID = "AROAEXAMPLEROLEID123"
BILLING_SENDER = "AROAEXAMPLEBILLINGID:billing-job"
APPS = {
    "contracts": {"senders": [CONTRACTS_ROLE_ID], "principals": []},
    "billing": {"senders": ["AROAEXAMPLEBILLINGID"], "principals": []},
}
SECRETS = ("secret-value-xyz", "secret-document-17", "red-secret")


def received(aws: AwsResources, seen: list[tuple[dict[str, Any], dict[str, str]]]) -> None:
    """Drain the app's queue into ``seen``: each notification with its attributes."""
    sqs = aws.session.client("sqs")
    while True:
        batch = sqs.receive_message(
            QueueUrl=aws.subscriber_queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            return
        for message in batch:
            attributes = {
                name: value["StringValue"]
                for name, value in message.get("MessageAttributes", {}).items()
            }
            seen.append((json.loads(message["Body"]), attributes))
            sqs.delete_message(
                QueueUrl=aws.subscriber_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )


def spy_on_publish(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, refuse_first: set[str]
) -> list[Notification | RejectedNotification]:
    """Every notification SNS took; SNS refuses the first publish of the rejected
    notification of each message id in ``refuse_first``."""
    published: list[Notification | RejectedNotification] = []
    publish = runtime.notifier.publish

    def spying(notification: Notification | RejectedNotification) -> str:
        message_id = getattr(notification, "message_id", None)
        if message_id in refuse_first:
            refuse_first.discard(message_id)
            raise ClientError({"Error": {"Code": "Throttling", "Message": "slow down"}}, "Publish")
        answer = publish(notification)
        published.append(notification)
        return answer

    monkeypatch.setattr(runtime.notifier, "publish", spying)
    return published


def reason_of(runtime: Runtime, body: str) -> str:
    with pytest.raises(InvalidTaskMessage) as refused:
        parse_task_message(runtime, body)
    return str(refused.value)


def test_each_rejected_message_is_told_to_its_app_once_however_often_it_comes_back(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    aws: AwsResources,
    algorithm_service: AlgorithmService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = make_runtime()
    # Given a batch of malformed messages of a readable app...
    malformed = {
        "unknown-field": task_body(idempotency_key="bad-1", colour="red-secret"),
        "unregistered": task_body(algorithm="ocr-v9", input={"document": "secret-document-17"}),
        "not-an-object": task_body(idempotency_key="bad-3", input="secret-value-xyz"),
        "bad-algorithm-name": task_body(algorithm="no spaces", idempotency_key="bad-4"),
    }
    # ...some whose app cannot be read...
    unreadable = {
        "not-json": "not json, secret-value-xyz",
        "bad-app-name": task_body(app="no spaces", idempotency_key="bad-5"),
        "no-app": json.dumps({"algorithm": "ocr", "input": {}}),
        "two-apps": '{"app": "contracts", "app": "billing", "algorithm": "ocr", "input": {}}',
    }
    ids = {name: str(uuid.uuid4()) for name in [*malformed, *unreadable]}
    # ...and a good one
    good = sqs_record(task_body(idempotency_key="good-1"))
    # and SNS refuses the first publish of one of them
    published = spy_on_publish(runtime, monkeypatch, {ids["unregistered"]})

    # When SQS delivers the bad ones three times
    for delivery in (1, 2, 3):
        records = [
            sqs_record(body, message_id=ids[name], receive_count=delivery)
            for name, body in {**malformed, **unreadable}.items()
        ]
        answer = handlers.invoke("intake", sqs_event(*records, *([good] if delivery == 1 else [])))
        # Then each is a failed batch item every time, and the good one is not
        assert {item["itemIdentifier"] for item in answer["batchItemFailures"]} == set(ids.values())

    # And the app was told of each malformed message exactly once (the refused publish
    # was made by the next delivery), and of nothing else
    rejected = [n for n in published if isinstance(n, RejectedNotification)]
    assert Counter(n.message_id for n in rejected) == {ids[name]: 1 for name in malformed}
    seen: list[tuple[dict[str, Any], dict[str, str]]] = []

    def everything_arrived() -> bool:
        received(aws, seen)
        return len(seen) == len(malformed) + 1  # and the good task's outcome

    wait_for(everything_arrived, timeout=30)
    by_message = {body["message_id"]: (body, attrs) for body, attrs in seen if "message_id" in body}
    assert set(by_message) == {ids[name] for name in malformed}
    for name, body in malformed.items():
        notification, attributes = by_message[ids[name]]
        readable = json.loads(body)
        algorithm = readable["algorithm"] if name != "bad-algorithm-name" else None
        key = readable.get("idempotency_key") or derive_idempotency_key(
            TaskMessage.model_validate_json(body)
        )
        assert notification == {
            "notification_id": rejected_notification_id(ids[name]),
            "status": "rejected",
            "task_id": None,
            "app": "contracts",
            "algorithm": algorithm,
            "idempotency_key": key,
            "message_id": ids[name],
            "error": {"code": "invalid_message", "message": reason_of(runtime, body)},
        }
        assert attributes == {
            "app": "contracts",
            "status": "rejected",
            "notification_id": rejected_notification_id(ids[name]),
            **({"algorithm": algorithm} if algorithm else {}),
        }
        assert not any(secret in json.dumps(notification) for secret in SECRETS)
    # the reasons name the field and the problem
    assert by_message[ids["unknown-field"]][0]["error"]["message"].startswith("colour: ")
    assert by_message[ids["not-an-object"]][0]["error"]["message"].startswith("input: ")
    # And the good message went through, once
    (outcome,) = [body for body, _ in seen if body.get("task_id")]
    assert outcome["status"] == "succeeded"
    task = runtime.repository.find_task("contracts", "good-1")
    assert task is not None
    assert outcome["task_id"] == task.id


def test_with_an_app_registry_only_the_app_s_own_senders_get_it_told(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    aws: AwsResources,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = make_runtime(apps=json.dumps(APPS), fast_path="false")
    published = spy_on_publish(runtime, monkeypatch, set())
    # Given malformed messages for contracts: from its own sender, and from billing's
    own = sqs_record(task_body(idempotency_key="mine", colour="red"))
    foreign = sqs_record(
        task_body(idempotency_key="forged", colour="red"), sender_id=BILLING_SENDER
    )
    # ...and one for an app that is not registered
    unregistered = sqs_record(task_body(app="stranger", idempotency_key="who", colour="red"))
    good = sqs_record(task_body(idempotency_key="fine"))

    for delivery in (1, 2):
        records = [
            sqs_record(r["body"], message_id=r["messageId"], receive_count=delivery, sender_id=s)
            for r, s in (
                (own, None),
                (foreign, BILLING_SENDER),
                (unregistered, None),
            )
        ]
        answer = handlers.invoke("intake", sqs_event(*records, good))
        assert {item["itemIdentifier"] for item in answer["batchItemFailures"]} == {
            own["messageId"],
            foreign["messageId"],
            unregistered["messageId"],
        }

    # Then only the message from the app's own sender was told, once
    assert [(n.app, getattr(n, "message_id", None)) for n in published] == [
        ("contracts", own["messageId"])
    ]
    assert runtime.repository.find_task("contracts", "fine") is not None
