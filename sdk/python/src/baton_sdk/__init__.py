"""Baton's client SDK: the contract shapes, and both sides of the conversation.

- ``baton_sdk.contracts``: every message, request, answer and notification, as
  pydantic models (the one definition Baton itself validates against);
- ``baton_sdk.app``: ``BatonClient`` for business apps (submit, cancel, status,
  notifications, results);
- ``baton_sdk.algorithm``: ``Dispatch.from_request`` and ``Attempt`` for algorithm
  services (verify, upload, heartbeat, call back), and ``parse_cancel_request``;
- ``baton_sdk.signing``: Standard Webhooks signatures and per-algorithm secrets;
- ``baton_sdk.errors``: what can go wrong, one exception type per answer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from baton_sdk.algorithm import Attempt, Dispatch, Heartbeats, Upload, parse_cancel_request
    from baton_sdk.app import BatchEntry, BatchResult, BatonClient, CancelOutcome
    from baton_sdk.contracts import (
        CancelMessage,
        CancelRequest,
        DispatchRequest,
        Notification,
        RejectedNotification,
        TaskMessage,
        TaskView,
    )
    from baton_sdk.errors import (
        ApiError,
        AttemptEnded,
        BatonError,
        Forbidden,
        InvalidRequest,
        InvalidSignature,
        ResultIntegrityError,
        ResultMissing,
        TaskNotFound,
        Unauthorized,
        Unavailable,
    )
    from baton_sdk.signing import derive_secret

# Each name is imported from its module on first use (PEP 562): Baton's functions
# import ``baton_sdk.contracts`` alone, and loading the whole SDK with it (the
# algorithm side, the app client) would lengthen every cold start.
_MODULE_OF = {
    **dict.fromkeys(
        ("Attempt", "Dispatch", "Heartbeats", "Upload", "parse_cancel_request"), "algorithm"
    ),
    **dict.fromkeys(("BatchEntry", "BatchResult", "BatonClient", "CancelOutcome"), "app"),
    **dict.fromkeys(
        (
            "CancelMessage",
            "CancelRequest",
            "DispatchRequest",
            "Notification",
            "RejectedNotification",
            "TaskMessage",
            "TaskView",
        ),
        "contracts",
    ),
    **dict.fromkeys(
        (
            "ApiError",
            "AttemptEnded",
            "BatonError",
            "Forbidden",
            "InvalidRequest",
            "InvalidSignature",
            "ResultIntegrityError",
            "ResultMissing",
            "TaskNotFound",
            "Unauthorized",
            "Unavailable",
        ),
        "errors",
    ),
    "derive_secret": "signing",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "ApiError",
    "Attempt",
    "AttemptEnded",
    "BatchEntry",
    "BatchResult",
    "BatonClient",
    "BatonError",
    "CancelMessage",
    "CancelOutcome",
    "CancelRequest",
    "Dispatch",
    "DispatchRequest",
    "Forbidden",
    "Heartbeats",
    "InvalidRequest",
    "InvalidSignature",
    "Notification",
    "RejectedNotification",
    "ResultIntegrityError",
    "ResultMissing",
    "TaskMessage",
    "TaskNotFound",
    "TaskView",
    "Unauthorized",
    "Unavailable",
    "Upload",
    "derive_secret",
    "parse_cancel_request",
]
