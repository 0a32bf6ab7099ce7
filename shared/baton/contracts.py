"""Every shape that crosses Baton's boundary, as Baton uses it: the task and cancel
messages, the dispatch and cancel requests, the callback and heartbeat API, the status
API's task, and the notification.

They are defined once, in the client SDK (``baton_sdk.contracts``), which business
apps and algorithm services install: what they build and parse is what Baton
validates and sends, by construction. This module re-exports the ones the package
uses, rather than every module importing ``baton_sdk`` itself, because:

- one file says which shapes of the contract Baton takes part in (``__all__``), and
  the import-graph tests keep seeing ``baton.contracts`` as the leaf it always was;
- the SDK is a dependency like any other: should its module layout ever change, this
  file changes and the rest of the package does not.

Inbound shapes (messages, callback and heartbeat bodies) are strict: no type
coercion, unknown fields rejected. Outbound shapes ignore fields they do not know.
"""

from __future__ import annotations

from baton_sdk.contracts import (
    MAX_COST,
    MAX_PRIORITY,
    NAME_PATTERN,
    AlreadyFinalAnswer,
    CallbackAnswer,
    CallbackBody,
    CallbackTarget,
    CancelById,
    CancelByKey,
    CancelByKeyBody,
    CancelKeptAnswer,
    CancelMessage,
    CancelRequest,
    CancelTaskBody,
    DispatchRequest,
    ErrorAnswer,
    ErrorDetail,
    ExecutionView,
    HeartbeatAnswer,
    HeartbeatBody,
    IdempotencyKey,
    Name,
    Notification,
    NotificationError,
    RejectedNotification,
    ResultLocation,
    ResultTarget,
    StartTime,
    TaskMessage,
    TaskView,
    Waiting,
    WaitingReason,
    derive_idempotency_key,
)

__all__ = [
    "MAX_COST",
    "MAX_PRIORITY",
    "NAME_PATTERN",
    "AlreadyFinalAnswer",
    "CallbackAnswer",
    "CallbackBody",
    "CallbackTarget",
    "CancelById",
    "CancelByKey",
    "CancelByKeyBody",
    "CancelKeptAnswer",
    "CancelMessage",
    "CancelRequest",
    "CancelTaskBody",
    "DispatchRequest",
    "ErrorAnswer",
    "ErrorDetail",
    "ExecutionView",
    "HeartbeatAnswer",
    "HeartbeatBody",
    "IdempotencyKey",
    "Name",
    "Notification",
    "NotificationError",
    "RejectedNotification",
    "ResultLocation",
    "ResultTarget",
    "StartTime",
    "TaskMessage",
    "TaskView",
    "Waiting",
    "WaitingReason",
    "derive_idempotency_key",
]
