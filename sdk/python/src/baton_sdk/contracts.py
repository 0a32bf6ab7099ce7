"""Every shape that crosses Baton's boundary, defined once: the task and cancel
messages, the dispatch and cancel requests, the callback and heartbeat API, the
status API's task, and the notification.

Inbound shapes (those Baton receives: messages, callback and heartbeat bodies) are
strict: no type coercion, unknown fields rejected, so a typo is an error and not a
silently dropped option. Outbound shapes (those Baton sends: dispatch and cancel
requests, answers, notifications, tasks) ignore fields they do not know, so that an
SDK parsing them keeps working when a newer Baton adds one.

Fields that the design has and Baton does not fill yet are optional, with the
default the design gives them.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
"""An app or algorithm name: letters, digits, ``.``, ``_`` and ``-``, 1-64 characters."""

MAX_PRIORITY = 1_000_000
MAX_COST = 100_000
"""The largest ``cost`` a message may ask (no endpoint has more capacity than this)."""
MAX_TASK_TIMEOUT_SECONDS = 30 * 24 * 3600
"""The longest ``queue_timeout_seconds`` or ``total_timeout_seconds`` a message may ask."""

IdempotencyKey = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")
]
"""Printable ASCII without spaces, at most 200 characters."""

_ISO_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _start_time(value: Any, validate: ValidatorFunctionWrapHandler) -> datetime:
    # pydantic also reads a number, or a string of digits, as a Unix time: the
    # contract says ISO 8601, so anything else is refused before it gets there
    # (which is why the datetime itself may be parsed in lax mode).
    if not isinstance(value, str | datetime) or (
        isinstance(value, str) and not _ISO_DATE_TIME.match(value)
    ):
        raise ValueError("must be an ISO 8601 date and time with an offset")
    parsed: datetime = validate(value)
    # 9999-12-31T23:00:00-05:00 is a valid datetime that has no UTC equivalent
    # (year 10000): it could be neither compared safely nor stored.
    try:
        parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range once converted to UTC") from None
    return parsed


StartTime = Annotated[AwareDatetime, Field(strict=False), WrapValidator(_start_time)]
"""An ISO 8601 date and time with an offset (``not_before``)."""

INTEGER_AS_WRITTEN = 'An integer written as one: 1, not 1.0 or "1" (422 otherwise)'

TaskStatus = Literal[
    "pending", "queued", "running", "succeeded", "failed", "timed_out", "cancelled"
]
"""A task's status as the status API and notifications write it."""

FinalStatus = Literal["succeeded", "failed", "timed_out", "cancelled"]


# defer_build: a model's validator and serializer are built when it is first used, not
# at import: a Lambda function uses a few of these shapes, and building all of them
# would add tens of milliseconds to each of its cold starts.


class _Inbound(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


class _Outbound(BaseModel):
    # extra="ignore" is pydantic's default, spelled out because it is a promise.
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


# -- intake queue ----------------------------------------------------------------------


class TaskMessage(_Inbound):
    """The body of an SQS message on the intake queue."""

    app: Name
    algorithm: Name
    input: dict[str, Any]
    idempotency_key: IdempotencyKey | None = None
    priority: int = Field(default=0, ge=-MAX_PRIORITY, le=MAX_PRIORITY)
    timeout_seconds: int | None = Field(default=None, ge=1)
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    not_before: StartTime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    cost: int = Field(
        default=1,
        ge=1,
        le=MAX_COST,
        description="Units of the algorithm's capacity the task takes (pages, GPUs); "
        "at most what its largest endpoint can run",
    )
    queue_timeout_seconds: int | None = Field(
        default=None, ge=1, le=MAX_TASK_TIMEOUT_SECONDS, description=INTEGER_AS_WRITTEN
    )
    total_timeout_seconds: int | None = Field(
        default=None, ge=1, le=MAX_TASK_TIMEOUT_SECONDS, description=INTEGER_AS_WRITTEN
    )


_ADDED_FIELDS = {"cost": 1, "queue_timeout_seconds": None, "total_timeout_seconds": None}
"""Fields added after the first release of the task message, with their defaults."""


def derive_idempotency_key(message: TaskMessage) -> str:
    """The key of a message that has none: the same content is the same task.

    ``"sha256:"`` and the hex SHA-256 of the message as compact JSON with sorted keys,
    without its ``idempotency_key``. A field added to the message after the first
    release counts only when it differs from its default, so that a message written
    before that field existed keeps the key it always had.
    """
    document = message.model_dump(mode="json", exclude={"idempotency_key"})
    for name, default in _ADDED_FIELDS.items():
        if document.get(name) == default:
            del document[name]
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def message_body(message: TaskMessage | CancelMessage) -> str:
    """The JSON an SQS message carries: fields at their default are left out, so that a
    Baton that predates an optional field still accepts a message that does not use it."""
    return message.model_dump_json(exclude_defaults=True)


class CancelByKey(_Inbound):
    idempotency_key: IdempotencyKey


class CancelById(_Inbound):
    task_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class CancelMessage(_Inbound):
    """``{"app", "cancel": {"idempotency_key"} | {"task_id"}, "reason"?}`` on the intake queue."""

    app: Name
    cancel: CancelByKey | CancelById
    reason: Annotated[str, StringConstraints(max_length=1024)] | None = None


# -- callback API ------------------------------------------------------------------------


class ErrorDetail(_Inbound):
    code: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    message: Annotated[str, StringConstraints(max_length=1024)]


class CallbackBody(_Inbound):
    """``POST /tasks/{task_id}/callback``."""

    attempt: int = Field(ge=1, le=1000, description=INTEGER_AS_WRITTEN)
    status: Literal["succeeded", "failed"]
    error: ErrorDetail | None = None


class HeartbeatBody(_Inbound):
    """``POST /tasks/{task_id}/heartbeat``."""

    attempt: int = Field(ge=1, le=1000, description=INTEGER_AS_WRITTEN)
    progress: int | None = Field(default=None, ge=0, le=100, description=INTEGER_AS_WRITTEN)
    message: Annotated[str, StringConstraints(max_length=1024)] | None = None


class ResultTarget(_Outbound):
    bucket: str
    key: str
    upload_url: str
    expires_at: datetime


class CallbackTarget(_Outbound):
    url: str
    token: str


class DispatchRequest(_Outbound):
    """Baton -> algorithm service: the body of the HTTP POST to the algorithm's endpoint."""

    task_id: str
    attempt: int
    algorithm: str
    input: dict[str, Any]
    cost: int = 1
    deadline: datetime
    result: ResultTarget
    callback: CallbackTarget


CancelReason = Literal["timed_out", "cancelled", "deadline_exceeded"]


class CancelRequest(_Outbound):
    """Baton -> algorithm service: ``POST <cancel_url>`` for an attempt that ended."""

    task_id: str
    attempt: int
    algorithm: str
    reason: CancelReason


class CallbackAnswer(_Outbound):
    task_id: str
    attempt: int
    status: str
    applied: bool = Field(description="False when the same outcome was already recorded")


class HeartbeatAnswer(_Outbound):
    task_id: str
    attempt: int
    deadline: datetime
    result: ResultTarget | None = Field(
        default=None, description="A fresh upload URL when the old one is close to expiry"
    )


class ErrorAnswer(_Outbound):
    """Every refusal of the callback and status APIs: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


class CancelTaskBody(_Inbound):
    """``POST /tasks/{task_id}/cancel`` (the body is optional: ``{}`` or none at all)."""

    reason: Annotated[str, StringConstraints(max_length=1024)] | None = None


class CancelByKeyBody(_Inbound):
    """``POST /apps/{app}/tasks/cancel``: the key travels in the body, never in the path."""

    idempotency_key: IdempotencyKey
    reason: Annotated[str, StringConstraints(max_length=1024)] | None = None


class AlreadyFinalAnswer(_Outbound):
    """409 to a cancel of a task already final: the error, and the status it ended in."""

    error: ErrorDetail
    status: str


class CancelKeptAnswer(_Outbound):
    """202 to a cancel by key whose task has not arrived: kept, and the task, arriving
    before ``kept_until``, ends cancelled without being dispatched."""

    app: str
    idempotency_key: str
    kept_until: datetime


# -- notifications -----------------------------------------------------------------------


class ResultLocation(_Outbound):
    bucket: str
    key: str
    url: str
    expires_at: datetime
    size: int | None = Field(default=None, description="The object's size in bytes")
    content_type: str | None = None
    etag: str | None = Field(default=None, description="Without quotes")
    checksum_sha256: str | None = Field(
        default=None, description="Base64, as S3 reports it, when the upload carried one"
    )


class NotificationError(_Outbound):
    code: str
    message: str


class Notification(_Outbound):
    """One SNS message per terminal task."""

    notification_id: str
    task_id: str
    app: str
    algorithm: str
    idempotency_key: str | None = None
    status: FinalStatus
    attempts: int
    result: ResultLocation | None = None
    error: NotificationError | None = None
    metadata: dict[str, Any]
    created_at: datetime
    first_dispatched_at: datetime | None
    finished_at: datetime


class RejectedNotification(_Outbound):
    """A task message that intake rejected, told once to the app that sent it."""

    notification_id: str
    status: Literal["rejected"]
    task_id: None = None
    app: str
    algorithm: str | None = None
    idempotency_key: str | None = None
    message_id: str = Field(description="The SQS message id of the rejected message")
    error: NotificationError


AnyNotification = Annotated[Notification | RejectedNotification, Field(discriminator="status")]
_NOTIFICATION: TypeAdapter[Notification | RejectedNotification] = TypeAdapter(
    AnyNotification, config=ConfigDict(defer_build=True)
)


def parse_notification(body: str | bytes) -> Notification | RejectedNotification:
    """A notification as SNS delivers it (the ``Message``), by its ``status``."""
    return _NOTIFICATION.validate_json(body)


# -- status API -------------------------------------------------------------------------


class ExecutionView(_Outbound):
    """One attempt of a task, as the status API shows it."""

    attempt: int
    status: str
    dispatched_at: datetime | None = None
    deadline: datetime | None = None
    progress: int | None = None
    message: str | None = None
    http_status: int | None = None
    error: NotificationError | None = None


WaitingReason = Literal[
    "not_before",
    "backoff",
    "capacity",
    "app_limit",
    "rate_limit",
    "cooling_down",
    "paused",
    "recovering",
]


class Waiting(_Outbound):
    """Why a pending or queued task is not running yet."""

    reason: WaitingReason | str
    detail: str
    ahead: int | None = None
    running: int | None = None
    max_concurrency: int | None = None
    until: datetime | None = None
    eta: datetime | None = None


class TaskView(_Outbound):
    """``GET /tasks/{task_id}``: the task as the status API answers it."""

    task_id: str
    app: str
    algorithm: str
    idempotency_key: str
    status: TaskStatus
    priority: int = 0
    cost: int = 1
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    not_before: datetime | None = None
    first_dispatched_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    executions: list[ExecutionView] = Field(default_factory=list)
    result: ResultLocation | None = None
    error: NotificationError | None = None
    waiting: Waiting | None = None
