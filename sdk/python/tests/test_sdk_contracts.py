"""The contract models: round trips, strict inbound shapes, tolerant outbound ones,
and the defaults of the fields Baton does not fill yet."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from sdk_support import dispatch_request

from baton_sdk.contracts import (
    MAX_PRIORITY,
    CallbackAnswer,
    CallbackBody,
    CancelById,
    CancelByKey,
    CancelMessage,
    CancelRequest,
    DispatchRequest,
    ErrorAnswer,
    ErrorDetail,
    HeartbeatAnswer,
    HeartbeatBody,
    Notification,
    RejectedNotification,
    TaskMessage,
    TaskView,
    derive_idempotency_key,
    message_body,
    parse_notification,
)

NOW = "2026-07-01T10:00:00Z"
MINIMAL: dict[str, Any] = {"app": "portal", "algorithm": "ocr", "input": {}}
FULL: dict[str, Any] = {
    "app": "contracts-app_v2.1",
    "algorithm": "ocr",
    "input": {"document": "s3://in/doc.pdf", "pages": [1, 2, 3]},
    "idempotency_key": "contract-42:v1",
    "priority": 10,
    "timeout_seconds": 1800,
    "max_attempts": 5,
    "not_before": "2030-01-01T08:30:00+02:00",
    "metadata": {"customer": "acme"},
    "cost": 4,
    "queue_timeout_seconds": 3600,
    "total_timeout_seconds": 86400,
}
NOTIFICATION: dict[str, Any] = {
    "notification_id": "n-1",
    "task_id": "t-1",
    "app": "portal",
    "algorithm": "ocr",
    "idempotency_key": "doc-17",
    "status": "succeeded",
    "attempts": 1,
    "result": {
        "bucket": "baton-results",
        "key": "results/ocr/t-1/1/result",
        "url": "https://baton-results.s3.amazonaws.com/results/ocr/t-1/1/result?X-Amz-Signature=x",
        "expires_at": NOW,
        "size": 5,
        "content_type": "application/json",
        "etag": "5d41402abc4b2a76b9719d911017c592",
        "checksum_sha256": "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=",
    },
    "error": None,
    "metadata": {"case": 17},
    "created_at": NOW,
    "first_dispatched_at": NOW,
    "finished_at": NOW,
}
REJECTED: dict[str, Any] = {
    "notification_id": "r-1",
    "status": "rejected",
    "task_id": None,
    "app": "portal",
    "algorithm": "ocr",
    "idempotency_key": None,
    "message_id": "0f6c7d3e-sqs",
    "error": {"code": "invalid_message", "message": "priority: must be an integer"},
}


def test_task_message_round_trip_keeps_every_field() -> None:
    message = TaskMessage.model_validate_json(json.dumps(FULL))
    assert message.not_before == datetime(2030, 1, 1, 6, 30, tzinfo=UTC)
    assert (message.cost, message.queue_timeout_seconds, message.total_timeout_seconds) == (
        4,
        3600,
        86400,
    )
    assert TaskMessage.model_validate_json(message.model_dump_json()) == message
    assert TaskMessage.model_validate_json(message_body(message)) == message


def test_new_task_fields_default_as_the_design_says() -> None:
    message = TaskMessage.model_validate(MINIMAL)
    assert message.cost == 1
    assert message.queue_timeout_seconds is None
    assert message.total_timeout_seconds is None


def test_message_body_leaves_defaults_out_so_an_older_baton_accepts_it() -> None:
    assert json.loads(message_body(TaskMessage.model_validate(MINIMAL))) == MINIMAL
    baton = pytest.importorskip("baton.contracts")
    keyed = TaskMessage.model_validate({**MINIMAL, "idempotency_key": "k", "priority": 3})
    baton.TaskMessage.model_validate_json(message_body(keyed))


@pytest.mark.parametrize(
    ("field", "changes"),
    [
        pytest.param("colour", {"colour": "red"}, id="unknown-field"),
        pytest.param("app", {"app": "my app"}, id="app-space"),
        pytest.param("app", {"app": "a" * 65}, id="app-65-chars"),
        pytest.param("app", {"app": ""}, id="app-empty"),
        pytest.param("app", {"app": "äpp"}, id="app-non-ascii"),
        pytest.param("app", {"app": 7}, id="app-number"),
        pytest.param("input", {"input": [1, 2]}, id="input-list"),
        pytest.param("priority", {"priority": "5"}, id="priority-string"),
        pytest.param("priority", {"priority": 5.0}, id="priority-float"),
        pytest.param("priority", {"priority": True}, id="priority-bool"),
        pytest.param("priority", {"priority": MAX_PRIORITY + 1}, id="priority-above"),
        pytest.param("timeout_seconds", {"timeout_seconds": 0}, id="timeout-0"),
        pytest.param("max_attempts", {"max_attempts": 101}, id="attempts-101"),
        pytest.param("not_before", {"not_before": "2030-01-01T00:00:00"}, id="nb-no-offset"),
        pytest.param("not_before", {"not_before": 1893456000}, id="nb-epoch"),
        pytest.param("not_before", {"not_before": "1893456000"}, id="nb-epoch-string"),
        pytest.param("not_before", {"not_before": "9999-12-31T23:00:00-05:00"}, id="nb-overflow"),
        pytest.param("idempotency_key", {"idempotency_key": "a b"}, id="key-space"),
        pytest.param("idempotency_key", {"idempotency_key": "k" * 201}, id="key-201"),
        pytest.param("idempotency_key", {"idempotency_key": "clé"}, id="key-non-ascii"),
        pytest.param("metadata", {"metadata": None}, id="metadata-null"),
        pytest.param("cost", {"cost": 0}, id="cost-0"),
        pytest.param("cost", {"cost": "2"}, id="cost-string"),
        pytest.param("cost", {"cost": 2.0}, id="cost-float"),
        pytest.param("queue_timeout_seconds", {"queue_timeout_seconds": 0}, id="qt-0"),
        pytest.param(
            "queue_timeout_seconds", {"queue_timeout_seconds": 30 * 86400 + 1}, id="qt-30-days"
        ),
        pytest.param(
            "total_timeout_seconds", {"total_timeout_seconds": 30 * 86400 + 1}, id="tt-30-days"
        ),
    ],
)
def test_task_message_is_strict(field: str, changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        TaskMessage.model_validate_json(json.dumps({**MINIMAL, **changes}))
    assert field in {str(error["loc"][0]) for error in caught.value.errors()}


def test_task_message_limits_are_inclusive() -> None:
    TaskMessage.model_validate(
        {**MINIMAL, "queue_timeout_seconds": 30 * 86400, "total_timeout_seconds": 1}
    )
    TaskMessage.model_validate({**MINIMAL, "priority": -MAX_PRIORITY, "app": "A.b_c-9"})


def test_derived_key_ignores_new_fields_at_their_default() -> None:
    plain = TaskMessage.model_validate(MINIMAL)
    explicit = TaskMessage.model_validate({**MINIMAL, "cost": 1, "queue_timeout_seconds": None})
    costly = TaskMessage.model_validate({**MINIMAL, "cost": 2})
    assert derive_idempotency_key(plain) == derive_idempotency_key(explicit)
    assert derive_idempotency_key(plain) != derive_idempotency_key(costly)
    assert derive_idempotency_key(plain).startswith("sha256:")


@pytest.mark.parametrize("document", [MINIMAL, {k: v for k, v in FULL.items() if k != "cost"}])
def test_derived_key_is_the_one_baton_derives(document: dict[str, Any]) -> None:
    intake = pytest.importorskip("baton.intake")
    baton = pytest.importorskip("baton.contracts")
    known = {"queue_timeout_seconds", "total_timeout_seconds"} - set(baton.TaskMessage.model_fields)
    body = json.dumps({k: v for k, v in document.items() if k not in known})
    assert derive_idempotency_key(
        TaskMessage.model_validate_json(body)
    ) == intake.derive_idempotency_key(baton.TaskMessage.model_validate_json(body))


def test_cancel_message_names_exactly_one_target() -> None:
    by_key = CancelMessage.model_validate_json(
        '{"app": "portal", "cancel": {"idempotency_key": "doc/17?v=2"}, "reason": "withdrawn"}'
    )
    assert by_key.cancel == CancelByKey(idempotency_key="doc/17?v=2")
    by_id = CancelMessage.model_validate_json('{"app": "portal", "cancel": {"task_id": "t-1"}}')
    assert by_id.cancel == CancelById(task_id="t-1")
    assert CancelMessage.model_validate_json(message_body(by_key)) == by_key
    for cancel in ('{"task_id": "t", "idempotency_key": "k"}', "{}", '{"key": "k"}'):
        with pytest.raises(ValidationError):
            CancelMessage.model_validate_json(f'{{"app": "portal", "cancel": {cancel}}}')
    with pytest.raises(ValidationError):
        CancelMessage.model_validate_json(
            '{"app": "portal", "cancel": {"task_id": "t"}, "because": "x"}'
        )


def test_callback_and_heartbeat_bodies_are_strict() -> None:
    assert CallbackBody.model_validate_json(
        '{"attempt": 2, "status": "failed", "error": {"code": "unreadable", "message": "m"}}'
    ) == CallbackBody(attempt=2, status="failed", error=ErrorDetail(code="unreadable", message="m"))
    for text in (
        '{"attempt": "1", "status": "succeeded"}',
        '{"attempt": 1.0, "status": "succeeded"}',
        '{"attempt": 1, "status": "done"}',
        '{"attempt": 1, "status": "succeeded", "result": "s3://x"}',
        '{"attempt": 1, "status": "failed", "error": {"code": "", "message": ""}}',
    ):
        with pytest.raises(ValidationError):
            CallbackBody.model_validate_json(text)
    assert HeartbeatBody.model_validate_json('{"attempt": 1, "progress": 100}').progress == 100
    for text in ('{"attempt": 1, "progress": 101}', '{"attempt": 1, "eta": 5}'):
        with pytest.raises(ValidationError):
            HeartbeatBody.model_validate_json(text)


def test_dispatch_request_round_trip_and_cost_default() -> None:
    request = dispatch_request()
    assert DispatchRequest.model_validate_json(request.model_dump_json()) == request
    document = json.loads(request.model_dump_json())
    del document["cost"]
    assert DispatchRequest.model_validate(document).cost == 1


@pytest.mark.parametrize(
    ("model", "document"),
    [
        (DispatchRequest, json.loads(dispatch_request().model_dump_json())),
        (Notification, NOTIFICATION),
        (RejectedNotification, REJECTED),
        (CancelRequest, {"task_id": "t", "attempt": 1, "algorithm": "ocr", "reason": "cancelled"}),
        (CallbackAnswer, {"task_id": "t", "attempt": 1, "status": "succeeded", "applied": False}),
        (HeartbeatAnswer, {"task_id": "t", "attempt": 1, "deadline": NOW}),
        (ErrorAnswer, {"error": {"code": "stale_attempt", "message": "m"}}),
    ],
)
def test_outbound_shapes_ignore_fields_a_newer_baton_adds(
    model: type[BaseModel], document: dict[str, Any]
) -> None:
    parsed = model.model_validate_json(json.dumps({**document, "added_later": {"x": 1}}))
    assert parsed == model.model_validate(document)


def test_notification_shapes_are_told_apart_by_status() -> None:
    done = parse_notification(json.dumps(NOTIFICATION))
    assert isinstance(done, Notification)
    assert done.result is not None
    assert done.result.checksum_sha256 == NOTIFICATION["result"]["checksum_sha256"]
    assert done.result.size == 5
    rejected = parse_notification(json.dumps(REJECTED))
    assert isinstance(rejected, RejectedNotification)
    assert rejected.task_id is None
    assert rejected.error.code == "invalid_message"
    with pytest.raises(ValidationError):
        parse_notification(json.dumps({**NOTIFICATION, "status": "running"}))


def test_notification_of_todays_baton_still_parses() -> None:
    today = {k: v for k, v in NOTIFICATION.items() if k != "idempotency_key"}
    today["result"] = {k: today["result"][k] for k in ("bucket", "key", "url", "expires_at")}
    parsed = parse_notification(json.dumps(today))
    assert isinstance(parsed, Notification)
    assert parsed.idempotency_key is None
    assert parsed.result is not None
    assert parsed.result.size is None


def test_task_view_with_executions_and_waiting() -> None:
    view = TaskView.model_validate(
        {
            "task_id": "t-1",
            "app": "portal",
            "algorithm": "ocr",
            "idempotency_key": "doc-17",
            "status": "queued",
            "priority": 5,
            "cost": 2,
            "metadata": {},
            "created_at": NOW,
            "not_before": NOW,
            "first_dispatched_at": None,
            "finished_at": None,
            "attempts": 1,
            "executions": [
                {
                    "attempt": 1,
                    "status": "dispatch_failed",
                    "dispatched_at": NOW,
                    "deadline": NOW,
                    "progress": None,
                    "message": None,
                    "http_status": 503,
                    "error": {"code": "dispatch_failed", "message": "503"},
                }
            ],
            "result": None,
            "error": None,
            "waiting": {
                "reason": "backoff",
                "detail": "retrying after a failed dispatch",
                "ahead": 0,
                "running": 2,
                "max_concurrency": 4,
                "until": "2026-07-01T10:05:00+02:00",
                "eta": None,
            },
        }
    )
    assert view.executions[0].http_status == 503
    assert view.waiting is not None
    assert view.waiting.until is not None
    assert view.waiting.until.utcoffset() == timedelta(hours=2)
    assert TaskView.model_validate_json(view.model_dump_json()) == view
