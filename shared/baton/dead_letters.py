"""The intake queue's dead-letter queue: what waits there (``baton dlq list``), and
moving it back to the intake queue (``baton dlq redrive``).

A message moved back is processed like any other: intake stores one task per
``(app, idempotency_key)``, so a message redriven twice, or redriven while a copy
still waits in the intake queue, is one task.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, ValidationError

from baton.contracts import Name
from baton.errors import SettingsError
from baton.observability import logger
from baton.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

REASON_ATTRIBUTE = "rejection_reason"
"""The message attribute that would carry why intake refused a message. SQS moves a
message to the DLQ as it was sent, so intake cannot set it: intake keeps the reason in
Redis under the message id, which the DLQ keeps (``baton.rejections.kept_reasons``),
and logs it under that id."""

KeptReasons = Callable[[list[str]], Mapping[str, str]]
"""The reasons intake kept, by message id."""

PREVIEW_CHARS = 80

LIST_VISIBILITY_SECONDS = 10
"""How long a listed message stays hidden: long enough for one listing not to see the
same message twice; each is made visible again as soon as the listing is done."""

MOVE_VISIBILITY_SECONDS = 60
"""How long a message being moved by hand stays hidden; one that could not be sent
comes back after this, still in the DLQ."""

Method = Literal["auto", "move_task", "receive_send"]

UNSUPPORTED_CODES = frozenset(
    {"UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation", "InvalidAction"}
)
"""What SQS (or a stand-in for it) answers when it cannot run a message move task,
e.g. for a FIFO queue: the move is then made by hand."""

ACTIVE_MOVE_STATUSES = frozenset({"RUNNING", "CANCELLING"})


def intake_queue_urls(settings: Settings, *, redrive: bool) -> tuple[str, str | None]:
    """The DLQ's URL and, for a redrive, the intake queue's; a ``SettingsError`` names
    what is missing."""
    needed = ["intake_dlq_url", *(["intake_queue_url"] if redrive else [])]
    missing = [f"BATON_{name.upper()}" for name in needed if getattr(settings, name) is None]
    if missing:
        raise SettingsError(
            f"{' and '.join(missing)} not set: baton dlq needs the intake queue and its "
            "dead-letter queue (the stack outputs IntakeQueueUrl and DeadLetterQueueUrl)"
        )
    assert settings.intake_dlq_url is not None
    return settings.intake_dlq_url, settings.intake_queue_url


# -- listing ----------------------------------------------------------------------------


class _Readable(BaseModel):
    """What a refused body may still tell: it is shown to an operator, never trusted."""

    model_config = ConfigDict(extra="ignore")

    app: Name | None = None


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    receive_count: int
    """As SQS counts it: every delivery to intake, and this listing too."""
    sent_at: datetime | None
    sender_id: str | None
    app: str | None
    body: str
    """The first ``PREVIEW_CHARS`` characters."""
    reason: str | None
    """Why intake refused it: the ``rejection_reason`` attribute, or the reason intake
    kept, while it has it."""

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sent_at": self.sent_at.isoformat() if self.sent_at else None}


def _dead_letter(message: MessageTypeDef) -> DeadLetter:
    attributes = message.get("Attributes", {})
    body = message.get("Body", "")
    sent = attributes.get("SentTimestamp")
    carried = message.get("MessageAttributes", {}).get(REASON_ATTRIBUTE)
    reason = carried.get("StringValue") if carried is not None else None
    return DeadLetter(
        message_id=message["MessageId"],
        receive_count=int(attributes.get("ApproximateReceiveCount", "0")),
        sent_at=datetime.fromtimestamp(int(sent) / 1000, UTC) if sent else None,
        sender_id=attributes.get("SenderId"),
        app=_app_of(body),
        body=body[:PREVIEW_CHARS],
        reason=reason,
    )


def _app_of(body: str) -> str | None:
    try:
        readable = _Readable.model_validate(json.loads(body))
    except (ValueError, ValidationError):  # not JSON, not an object, or no usable app
        return None
    return readable.app


def approximate_count(sqs: SQSClient, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes.get("ApproximateNumberOfMessages", "0"))


def list_dead_letters(
    sqs: SQSClient, dlq_url: str, limit: int = 50, kept: KeptReasons | None = None
) -> tuple[int, list[DeadLetter]]:
    """About how many messages wait in the DLQ, and up to ``limit`` of them, each with
    the reason ``kept`` has for it where it carries none; none is deleted, and each is
    visible again once the listing is done."""
    total = approximate_count(sqs, dlq_url)
    seen: dict[str, DeadLetter] = {}
    handles: list[str] = []
    try:
        while len(seen) < limit:
            messages = sqs.receive_message(
                QueueUrl=dlq_url,
                MaxNumberOfMessages=min(10, limit - len(seen)),
                VisibilityTimeout=LIST_VISIBILITY_SECONDS,
                # A short long poll asks every SQS server, so a small queue is not
                # reported empty by the one that was asked.
                WaitTimeSeconds=1,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            handles += [message["ReceiptHandle"] for message in messages]
            fresh = [message for message in messages if message["MessageId"] not in seen]
            if not fresh:
                break
            for message in fresh:
                seen[message["MessageId"]] = _dead_letter(message)
    finally:
        _make_visible(sqs, dlq_url, handles)
    letters = list(seen.values())
    reasons = kept([one.message_id for one in letters if one.reason is None]) if kept else {}
    return total, [
        replace(one, reason=reasons[one.message_id]) if one.message_id in reasons else one
        for one in letters
    ]


def _make_visible(sqs: SQSClient, queue_url: str, handles: Sequence[str]) -> None:
    for start in range(0, len(handles), 10):
        entries = [
            {"Id": str(index), "ReceiptHandle": handle, "VisibilityTimeout": 0}
            for index, handle in enumerate(handles[start : start + 10])
        ]
        # A handle that failed (the same message received twice) stays hidden for the
        # listing's short timeout only.
        sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)  # type: ignore[arg-type]


# -- redrive ----------------------------------------------------------------------------


@dataclass
class RedriveProgress:
    method: Literal["move_task", "receive_send"]
    status: str
    """``RUNNING``, then ``COMPLETED``, ``CANCELLED`` or ``FAILED`` (SQS's words)."""
    moved: int = 0
    to_move: int | None = None
    failed: int = 0
    """Messages that could not be sent back (``receive_send``): still in the DLQ."""
    failure_reason: str | None = None
    followed: bool = False
    """A move task of this DLQ was already running: this one followed it."""

    @property
    def done(self) -> bool:
        return self.status not in ACTIVE_MOVE_STATUSES

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Progress = Callable[[RedriveProgress], None]


def _ignore(_progress: RedriveProgress) -> None:
    pass


def redrive(
    sqs: SQSClient,
    dlq_url: str,
    queue_url: str,
    *,
    method: Method = "auto",
    on_progress: Progress = _ignore,
    poll_seconds: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> RedriveProgress:
    """Move the DLQ's messages back to the intake queue and wait until that is done.

    ``move_task``: SQS moves them itself (``StartMessageMoveTask``), and is asked how
    far it got (``ListMessageMoveTasks``). ``receive_send``: received, sent to the
    intake queue and deleted from the DLQ, ten at a time; a copy sent but not deleted
    (a crash in between) is stored once by intake. ``auto``: the move task, or by hand
    where SQS says it cannot run one.
    """
    if method != "receive_send":
        try:
            return _move_task(
                sqs,
                dlq_url,
                queue_url,
                on_progress=on_progress,
                poll_seconds=poll_seconds,
                sleep=sleep,
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if method == "move_task" or code not in UNSUPPORTED_CODES:
                raise
            logger.warning("SQS runs no message move task here: moving by hand", error=code)
    return _receive_send(sqs, dlq_url, queue_url, on_progress)


def _queue_arn(sqs: SQSClient, queue_url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]


def _move_task(
    sqs: SQSClient,
    dlq_url: str,
    queue_url: str,
    *,
    on_progress: Progress,
    poll_seconds: float,
    sleep: Callable[[float], None],
) -> RedriveProgress:
    source = _queue_arn(sqs, dlq_url)
    destination = _queue_arn(sqs, queue_url)
    latest = sqs.list_message_move_tasks(SourceArn=source, MaxResults=1).get("Results", [])
    # SQS runs one move task per queue at a time: follow one that is running.
    followed = bool(latest) and latest[0].get("Status") in ACTIVE_MOVE_STATUSES
    if followed:
        handle = latest[0].get("TaskHandle")
    else:
        handle = sqs.start_message_move_task(SourceArn=source, DestinationArn=destination)[
            "TaskHandle"
        ]
    while True:
        results = sqs.list_message_move_tasks(SourceArn=source, MaxResults=10).get("Results", [])
        # SQS gives the handle of a running task only; once it ended, the most recent
        # task of this queue is the one that was started.
        mine = next((r for r in results if handle and r.get("TaskHandle") == handle), None)
        if mine is None and results:
            mine = results[0]
        progress = RedriveProgress(
            method="move_task",
            status=str(mine.get("Status", "RUNNING")) if mine else "RUNNING",
            moved=int(mine.get("ApproximateNumberOfMessagesMoved", 0)) if mine else 0,
            to_move=mine.get("ApproximateNumberOfMessagesToMove") if mine else None,
            failure_reason=mine.get("FailureReason") if mine else None,
            followed=followed,
        )
        on_progress(progress)
        if progress.done:
            return progress
        sleep(poll_seconds)


def _receive_send(
    sqs: SQSClient, dlq_url: str, queue_url: str, on_progress: Progress
) -> RedriveProgress:
    progress = RedriveProgress(
        method="receive_send", status="RUNNING", to_move=approximate_count(sqs, dlq_url)
    )
    unsent: set[str] = set()
    while True:
        messages = [
            message
            for message in sqs.receive_message(
                QueueUrl=dlq_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=MOVE_VISIBILITY_SECONDS,
                WaitTimeSeconds=1,
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            # One that could not be sent is left in the DLQ, not tried again and again.
            if message["MessageId"] not in unsent
        ]
        if not messages:
            break
        answer = sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {
                    "Id": str(index),
                    "MessageBody": message["Body"],
                    "MessageAttributes": _attributes(message),  # type: ignore[typeddict-item]
                }
                for index, message in enumerate(messages)
            ],
        )
        for failure in answer.get("Failed", []):
            unsent.add(messages[int(failure["Id"])]["MessageId"])
            progress.failed += 1
            progress.failure_reason = f"{failure.get('Code')}: {failure.get('Message', '')}"
        sent = [int(entry["Id"]) for entry in answer.get("Successful", [])]
        if sent:
            sqs.delete_message_batch(
                QueueUrl=dlq_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": messages[index]["ReceiptHandle"]}
                    for index in sent
                ],
            )
        progress.moved += len(sent)
        on_progress(progress)
    progress.status = "FAILED" if progress.failed else "COMPLETED"
    on_progress(progress)
    return progress


def _attributes(message: MessageTypeDef) -> dict[str, dict[str, Any]]:
    """The message attributes as ``SendMessage`` takes them (the value and its type)."""
    copied: dict[str, dict[str, Any]] = {}
    for name, value in message.get("MessageAttributes", {}).items():
        kept: dict[str, Any] = {"DataType": value["DataType"]}
        if "StringValue" in value:
            kept["StringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            kept["BinaryValue"] = value["BinaryValue"]
        copied[name] = kept
    return copied
