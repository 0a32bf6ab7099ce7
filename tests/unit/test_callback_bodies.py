"""Callback and heartbeat bodies are strict: exact types, known fields, bounded sizes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from baton.contracts import CallbackBody, ErrorDetail, HeartbeatBody
from pydantic import ValidationError


def body(**fields: Any) -> str:
    return json.dumps(fields)


# -- callback ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (body(attempt=1, status="succeeded"), CallbackBody(attempt=1, status="succeeded")),
        (body(attempt=2, status="failed"), CallbackBody(attempt=2, status="failed")),
        (
            body(attempt=3, status="failed", error={"code": "ocr_failed", "message": "bad scan"}),
            CallbackBody(
                attempt=3,
                status="failed",
                error=ErrorDetail(code="ocr_failed", message="bad scan"),
            ),
        ),
        (
            body(attempt=1000, status="failed", error={"code": "c" * 64, "message": "m" * 1024}),
            CallbackBody(
                attempt=1000,
                status="failed",
                error=ErrorDetail(code="c" * 64, message="m" * 1024),
            ),
        ),
        (
            body(attempt=1, status="failed", error={"code": "x", "message": ""}),
            CallbackBody(attempt=1, status="failed", error=ErrorDetail(code="x", message="")),
        ),
        (
            body(attempt=1, status="succeeded", error=None),
            CallbackBody(attempt=1, status="succeeded"),
        ),
    ],
)
def test_valid_callback_body(text: str, expected: CallbackBody) -> None:
    assert CallbackBody.model_validate_json(text) == expected


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param(body(attempt=1, status="succeeded", result="s3://x"), "result", id="unknown"),
        pytest.param(body(status="succeeded"), "attempt", id="attempt-missing"),
        pytest.param(body(attempt=0, status="succeeded"), "attempt", id="attempt-0"),
        pytest.param(body(attempt=-1, status="succeeded"), "attempt", id="attempt-negative"),
        pytest.param(body(attempt=1001, status="succeeded"), "attempt", id="attempt-1001"),
        pytest.param(body(attempt="1", status="succeeded"), "attempt", id="attempt-string"),
        pytest.param(body(attempt=1.0, status="succeeded"), "attempt", id="attempt-float"),
        pytest.param(body(attempt=True, status="succeeded"), "attempt", id="attempt-bool"),
        pytest.param(body(attempt=None, status="succeeded"), "attempt", id="attempt-null"),
        pytest.param(body(attempt=1), "status", id="status-missing"),
        pytest.param(body(attempt=1, status="done"), "status", id="status-done"),
        pytest.param(body(attempt=1, status="SUCCEEDED"), "status", id="status-upper"),
        pytest.param(body(attempt=1, status="timed_out"), "status", id="status-timed-out"),
        pytest.param(body(attempt=1, status=1), "status", id="status-number"),
        pytest.param(
            body(attempt=1, status="failed", error={"code": "", "message": "m"}),
            "error.code",
            id="code-empty",
        ),
        pytest.param(
            body(attempt=1, status="failed", error={"code": "c" * 65, "message": "m"}),
            "error.code",
            id="code-65",
        ),
        pytest.param(
            body(attempt=1, status="failed", error={"code": "c", "message": "m" * 1025}),
            "error.message",
            id="message-1025",
        ),
        pytest.param(
            body(attempt=1, status="failed", error={"message": "m"}),
            "error.code",
            id="code-missing",
        ),
        pytest.param(
            body(attempt=1, status="failed", error={"code": "c"}),
            "error.message",
            id="message-missing",
        ),
        pytest.param(
            body(attempt=1, status="failed", error={"code": "c", "message": "m", "trace": "t"}),
            "error.trace",
            id="error-unknown-field",
        ),
        pytest.param(body(attempt=1, status="failed", error="boom"), "error", id="error-string"),
        pytest.param(
            body(attempt=1, status="failed", error={"code": 7, "message": "m"}),
            "error.code",
            id="code-number",
        ),
    ],
)
def test_invalid_callback_body_is_refused(text: str, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CallbackBody.model_validate_json(text)
    locations = {".".join(str(part) for part in error["loc"]) for error in caught.value.errors()}
    assert field in locations


@pytest.mark.parametrize("text", ["", "not json", "[]", "null", '{"attempt": 1, "status": '])
def test_callback_body_that_is_not_a_json_object_is_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        CallbackBody.model_validate_json(text)


# -- heartbeat ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (body(attempt=1), HeartbeatBody(attempt=1)),
        (body(attempt=2, progress=0), HeartbeatBody(attempt=2, progress=0)),
        (body(attempt=2, progress=100), HeartbeatBody(attempt=2, progress=100)),
        (
            body(attempt=4, progress=42, message="page 42 of 100"),
            HeartbeatBody(attempt=4, progress=42, message="page 42 of 100"),
        ),
        (body(attempt=1, message="m" * 1024), HeartbeatBody(attempt=1, message="m" * 1024)),
        (body(attempt=1, progress=None, message=None), HeartbeatBody(attempt=1)),
    ],
)
def test_valid_heartbeat_body(text: str, expected: HeartbeatBody) -> None:
    assert HeartbeatBody.model_validate_json(text) == expected


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param(body(attempt=1, status="running"), "status", id="unknown"),
        pytest.param(body(progress=5), "attempt", id="attempt-missing"),
        pytest.param(body(attempt=0), "attempt", id="attempt-0"),
        pytest.param(body(attempt=-1), "attempt", id="attempt-negative"),
        pytest.param(body(attempt="1"), "attempt", id="attempt-string"),
        pytest.param(body(attempt=1, progress=101), "progress", id="progress-101"),
        pytest.param(body(attempt=1, progress=-1), "progress", id="progress-negative"),
        pytest.param(body(attempt=1, progress="50"), "progress", id="progress-string"),
        pytest.param(body(attempt=1, progress=50.5), "progress", id="progress-fraction"),
        pytest.param(body(attempt=1, message="m" * 1025), "message", id="message-1025"),
        pytest.param(body(attempt=1, message=5), "message", id="message-number"),
    ],
)
def test_invalid_heartbeat_body_is_refused(text: str, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        HeartbeatBody.model_validate_json(text)
    locations = {".".join(str(part) for part in error["loc"]) for error in caught.value.errors()}
    assert field in locations
