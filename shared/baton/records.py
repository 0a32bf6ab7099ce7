"""Records that several layers share: the states of a task and of an attempt, what
intake hands the repository, what the repository hands the Redis queue and the
lifecycle operations, and how an attempt ended.

A leaf module: plain enums and dataclasses, no database and no Redis, so the queue
and the repository both speak in these terms without importing each other.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from baton.models import Task


class TaskStatus(enum.StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_TASK_STATUSES


TERMINAL_TASK_STATUSES = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.TIMED_OUT, TaskStatus.CANCELLED}
)


class ExecutionStatus(enum.StrEnum):
    DISPATCHING = "dispatching"  # slot held, request being sent; the deadline already runs
    RUNNING = "running"  # the algorithm answered 2xx
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the algorithm reported failure
    TIMED_OUT = "timed_out"
    DISPATCH_FAILED = "dispatch_failed"  # 5xx, 408, 429 or no answer: retried
    REJECTED = "rejected"  # 4xx: the algorithm refused the task for good
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"  # never sent: its slot was lost before dispatch; not counted

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_EXECUTION_STATUSES


ACTIVE_EXECUTION_STATUSES = frozenset({ExecutionStatus.DISPATCHING, ExecutionStatus.RUNNING})


@dataclass(frozen=True)
class NewTask:
    id: str
    app: str
    algorithm: str
    idempotency_key: str
    priority: int
    input: dict[str, Any]
    metadata: dict[str, Any]
    timeout_seconds: int
    max_attempts: int
    not_before: datetime
    created_at: datetime
    cost: int = 1
    queue_deadline: datetime | None = None  # no attempt accepted by then: queue_timeout
    total_deadline: datetime | None = None  # not final by then: deadline_exceeded
    attempt_budget: int | None = None
    """What the message asked for as ``max_attempts``; None: the algorithm's."""


@dataclass(frozen=True)
class QueuedTask:
    """A task in its app's ready queue, waiting for room to start ``attempt``."""

    task_id: str
    attempt: int
    priority: int
    created_at: datetime
    app: str
    cost: int = 1


@dataclass(frozen=True)
class Slot:
    """An attempt's claim on capacity: whose it is, what it costs, which endpoint."""

    task_id: str
    attempt: int
    app: str
    cost: int
    endpoint: str


@dataclass(frozen=True)
class AttemptStart:
    """An admitted attempt to start: where its result goes and which endpoint gets it."""

    task_id: str
    attempt: int
    result_key: str
    endpoint: str


@dataclass(frozen=True)
class AcceptedDispatch:
    """An attempt its endpoint accepted, with the status it answered."""

    task_id: str
    attempt: int
    http_status: int


@dataclass(frozen=True)
class ActiveAttempt:
    task_id: str
    attempt: int
    algorithm: str
    deadline: datetime
    app: str
    cost: int = 1
    endpoint: str = ""
    """Empty for an attempt recorded before endpoints were: it counts against the
    algorithm only."""

    @property
    def slot(self) -> Slot:
        return Slot(self.task_id, self.attempt, self.app, self.cost, self.endpoint)


@dataclass(frozen=True)
class StartedAttempt:
    task: Task
    deadline: datetime
    upload_expires_at: datetime


CANCEL_REASONS = {
    "timeout": "timed_out",
    "queue_timeout": "timed_out",
    "deadline_exceeded": "deadline_exceeded",
    "cancelled": "cancelled",
}
"""The cancel request's ``reason`` for each way Baton ends an attempt on its own."""


@dataclass(frozen=True)
class Drain:
    """How an attempt that Baton ends on its own (a timeout, a cancel, a deadline) gives
    its slot back: an attempt on one of ``endpoints`` (those with a cancel URL) drains,
    holding its slot until the endpoint acknowledges the cancel request or ``until``
    (the end plus the algorithm's ``cancel_grace_seconds``); any other frees it at once."""

    until: datetime
    endpoints: frozenset[str]
    reason: str
    settle_seconds: float = 0.0
    """How long a request still being dispatched may take to arrive."""


@dataclass(frozen=True)
class Draining:
    """An attempt that ended and drains: its first cancel request goes out at
    ``cancel_from`` (later than now for an attempt whose dispatch may still be on its
    way, so that the cancel does not overtake it)."""

    task_id: str
    attempt: int
    cancel_from: datetime


@dataclass(frozen=True)
class AttemptOutcome:
    """How an attempt ended. ``retry_at`` set: back to PENDING if attempts remain."""

    execution_status: ExecutionStatus
    task_status: TaskStatus
    error_code: str | None = None
    error_message: str | None = None
    http_status: int | None = None
    retry_at: datetime | None = None
    overdue_at: datetime | None = None
    """A timeout: applies only if the attempt's deadline is still before this moment
    (a heartbeat may have moved it since the sweep found the attempt overdue)."""
    counts_attempt: bool = True
    """False for "busy, come back later" (429, 503 with Retry-After): the retry does not
    use up one of the task's attempts (its queue and total timeouts bound how long)."""
    drain: Drain | None = None
    """Set when Baton ends the attempt on its own (a timeout): it may drain."""
    result_key: str | None = None
    """The attempt's result key, when the caller read it already (a success callback):
    the terminal transaction then writes it without reading it again."""


@dataclass(frozen=True)
class FinishedAttempt:
    task: Task
    terminal: bool
    draining: Draining | None = None


@dataclass(frozen=True)
class EndedTask:
    """A task ended without its algorithm's say-so; ``running_attempt`` is the attempt
    that ended with it (0: none was running), ``draining`` set if that one drains."""

    task: Task
    running_attempt: int
    draining: Draining | None = None
