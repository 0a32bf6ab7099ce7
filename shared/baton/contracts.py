"""Every shape that crosses Baton's boundary: the task message, the dispatch request,
the callback and heartbeat API, and the notification.

Inbound shapes are strict (no type coercion) and reject unknown fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from baton.settings import Name

MAX_PRIORITY = 1_000_000
IdempotencyKey = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")
]
"""Printable ASCII without spaces, at most 200 characters."""


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
    not_before: AwareDatetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class ErrorDetail(_Inbound):
    code: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    message: Annotated[str, StringConstraints(max_length=1024)]


class CallbackBody(_Inbound):
    """``POST /tasks/{task_id}/callback``."""

    attempt: int = Field(ge=1, le=1000)
    status: Literal["succeeded", "failed"]
    error: ErrorDetail | None = None


class HeartbeatBody(_Inbound):
    """``POST /tasks/{task_id}/heartbeat``."""

    attempt: int = Field(ge=1, le=1000)
    progress: int | None = Field(default=None, ge=0, le=100)
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
