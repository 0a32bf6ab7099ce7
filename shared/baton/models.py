"""The database schema: one ``task`` row per accepted task, one ``task_execution`` row per
attempt, and a ``notification_outbox`` row for each terminal task not yet announced.

The database is the source of truth; Redis only orders and counts what these rows say.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from baton.records import ExecutionStatus, TaskStatus


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python, naive UTC in the column (MySQL has no zone type)."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; Baton stores aware UTC datetimes only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


_ID = String(36)
_NAME = String(64)


def _status_type(enum_class: type[enum.StrEnum]) -> Enum:
    # Stored as the lowercase value in a VARCHAR: readable in SQL, no native ENUM to
    # migrate when a state is added.
    return Enum(
        enum_class,
        native_enum=False,
        create_constraint=False,
        length=16,
        values_callable=lambda members: [member.value for member in members],
    )


_BIGINT = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER only
_LONG_JSON = JSON().with_variant(mysql.JSON(), "mysql", "mariadb")


class Task(Base):
    __tablename__ = "task"
    __table_args__ = (
        UniqueConstraint("app", "idempotency_key"),
        # Promotion: the apps with PENDING tasks of one algorithm, then the best eligible
        # tasks of each, flat as the backlog grows.
        Index(
            "ix_task_promotion", "algorithm", "status", "app", text("priority DESC"), "created_at"
        ),
        Index("ix_task_status_updated", "status", "updated_at"),
        # The sweep: tasks past their queue or total deadline, flat as history grows.
        Index("ix_task_status_queue_deadline", "status", "queue_deadline"),
        Index("ix_task_status_total_deadline", "status", "total_deadline"),
    )

    id: Mapped[str] = mapped_column(_ID, primary_key=True)
    app: Mapped[str] = mapped_column(_NAME)
    algorithm: Mapped[str] = mapped_column(_NAME)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    input: Mapped[dict[str, Any]] = mapped_column(_LONG_JSON)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", _LONG_JSON)
    timeout_seconds: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer)
    attempt_budget: Mapped[int | None] = mapped_column(Integer)
    """The ``max_attempts`` the message asked for (None: the algorithm's). ``max_attempts``
    itself grows with retries and abandoned attempts; an operator retry counts a fresh
    budget from this."""
    cost: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    status: Mapped[TaskStatus] = mapped_column(_status_type(TaskStatus))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    queue_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    total_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(String(1024))
    result_key: Mapped[str | None] = mapped_column(String(1024))
    notification_id: Mapped[str | None] = mapped_column(_ID)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TaskExecution(Base):
    __tablename__ = "task_execution"
    __table_args__ = (
        UniqueConstraint("task_id", "attempt"),
        # Sweep: active attempts past their deadline.
        Index("ix_task_execution_status_deadline", "status", "deadline"),
        # Reconcile: the attempts still draining (a short range: set only while draining).
        Index("ix_task_execution_drain_until", "drain_until"),
    )

    id: Mapped[int] = mapped_column(_BIGINT, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(_ID, ForeignKey("task.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    algorithm: Mapped[str] = mapped_column(_NAME)
    app: Mapped[str] = mapped_column(_NAME)
    cost: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    endpoint: Mapped[str | None] = mapped_column(String(1024))
    status: Mapped[ExecutionStatus] = mapped_column(_status_type(ExecutionStatus))
    result_key: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    upload_expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    http_status: Mapped[int | None] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(String(1024))
    progress: Mapped[int | None] = mapped_column(Integer)
    progress_message: Mapped[str | None] = mapped_column(Text)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    drain_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """Set while the attempt drains: it ended without its algorithm's say-so and keeps
    its slot until its endpoint acknowledges the cancel request, or until this moment
    (the end plus the algorithm's ``cancel_grace_seconds``). NULL again once drained."""
    drained_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When a drained attempt gave its slot back (acknowledged, or at the grace)."""
    cancel_reason: Mapped[str | None] = mapped_column(String(32))
    """What the cancel request says: ``timed_out``, ``cancelled`` or ``deadline_exceeded``."""
    cancel_tries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cancel_http_status: Mapped[int | None] = mapped_column(Integer)
    """The endpoint's last answer to the cancel request (None: no answer, or none sent)."""
    refused_callbacks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Callbacks of this attempt that Baton refused (a bad token, a missing result)."""
    last_refusal: Mapped[str | None] = mapped_column(String(64))
    """The error code of the last refused callback, for the timeout's message."""


class AlgorithmHold(Base):
    """An operator paused the algorithm (``baton algorithm pause``): admission stops
    until it is resumed. Kept here so a pause survives Redis losing its data."""

    __tablename__ = "algorithm_hold"

    algorithm: Mapped[str] = mapped_column(_NAME, primary_key=True)
    held_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(1024))


class PolicyGap(Base):
    """An algorithm that tasks wait for and the registry no longer has, since when: its
    tasks fail after ``BATON_POLICY_GRACE_SECONDS`` unless the registry brings it back."""

    __tablename__ = "policy_gap"

    algorithm: Mapped[str] = mapped_column(_NAME, primary_key=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime)


class CancelTombstone(Base):
    """A cancel by idempotency key that arrived before its task (SQS keeps no order):
    the task, if it arrives before ``expires_at``, ends cancelled without a dispatch."""

    __tablename__ = "cancel_tombstone"

    app: Mapped[str] = mapped_column(_NAME, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    reason: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class NotificationOutbox(Base):
    """A terminal task whose notification is not yet published (written in the same
    transaction as the terminal state, deleted once SNS has the message)."""

    __tablename__ = "notification_outbox"

    task_id: Mapped[str] = mapped_column(
        _ID, ForeignKey("task.id", ondelete="CASCADE"), primary_key=True
    )
    notification_id: Mapped[str] = mapped_column(_ID)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
