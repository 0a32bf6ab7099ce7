"""Every shape that crosses Baton's boundary: the task message, the dispatch request,
the callback and heartbeat API, and the notification.

Inbound shapes are strict (no type coercion) and reject unknown fields.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
"""An app or algorithm name: letters, digits, ``.``, ``_`` and ``-``, 1-64 characters."""

MAX_PRIORITY = 1_000_000
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


class _Inbound(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Outbound(BaseModel):
    model_config = ConfigDict(frozen=True)


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
        le=100_000,
        description="Units of the algorithm's capacity the task takes (pages, GPUs); "
        "at most what its largest endpoint can run",
    )
    queue_timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        le=30 * 24 * 3600,
        description="No attempt accepted this long after acceptance: timed_out / queue_timeout",
    )
    total_timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        le=30 * 24 * 3600,
        description="Not final this long after acceptance: timed_out / deadline_exceeded",
    )


class ErrorDetail(_Inbound):
    code: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    message: Annotated[str, StringConstraints(max_length=1024)]


INTEGER_AS_WRITTEN = 'An integer written as one: 1, not 1.0 or "1" (422 otherwise)'


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
    error: ErrorDetail


class ResultLocation(_Outbound):
    bucket: str
    key: str
    url: str
    expires_at: datetime


class NotificationError(_Outbound):
    code: str
    message: str


class Notification(_Outbound):
    """One SNS message per terminal task."""

    notification_id: str
    task_id: str
    app: str
    algorithm: str
    status: Literal["succeeded", "failed", "timed_out", "cancelled"]
    attempts: int
    result: ResultLocation | None = None
    error: NotificationError | None = None
    metadata: dict[str, Any]
    created_at: datetime
    first_dispatched_at: datetime | None
    finished_at: datetime
