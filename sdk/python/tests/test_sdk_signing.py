"""Standard Webhooks signatures: what Baton signs, the `standardwebhooks` package
verifies as it stands, and any change to id, timestamp, body or secret is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from sdk_support import dispatch_request
from standardwebhooks import Webhook, WebhookVerificationError

from baton_sdk import Dispatch, InvalidRequest, InvalidSignature, parse_cancel_request
from baton_sdk.signing import (
    cancel_webhook_id,
    derive_secret,
    dispatch_webhook_id,
    sign_headers,
    verify,
)

MASTER = "unit-test-signing-master-key-0123456789"
OCR = derive_secret(MASTER, "ocr")
NLP = derive_secret(MASTER, "nlp")


def signed_dispatch(
    secret: str | list[str] = OCR, *, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    request = dispatch_request()
    body = request.model_dump_json().encode()
    headers = sign_headers(
        secret, dispatch_webhook_id(request.task_id, request.attempt), body, timestamp=timestamp
    )
    return body, {"Content-Type": "application/json", **headers}


def test_secret_derivation_is_the_documented_hmac() -> None:
    digest = hmac.new(MASTER.encode(), b"baton-signing:v1:ocr", hashlib.sha256).digest()
    assert base64.b64encode(digest).decode() == OCR.removeprefix("whsec_")
    assert OCR.startswith("whsec_")
    assert len(base64.b64decode(OCR.removeprefix("whsec_"))) == 32
    assert derive_secret(MASTER, "ocr") == OCR
    assert derive_secret(MASTER.encode(), "ocr") == OCR
    assert OCR != NLP
    assert derive_secret(MASTER + "x", "ocr") != OCR
    with pytest.raises(ValueError, match="empty"):
        derive_secret("", "ocr")


def test_dispatch_request_verifies_with_the_standardwebhooks_package() -> None:
    body, headers = signed_dispatch()
    assert headers["webhook-id"] == "t-1:1"
    assert headers["webhook-signature"].startswith("v1,")
    payload = Webhook(OCR).verify(body, headers)
    assert payload["task_id"] == "t-1"
    attempt = Dispatch.from_request(body, headers, OCR)
    assert (attempt.task_id, attempt.number, attempt.cost) == ("t-1", 1, 2)


def _flip_one_byte(body: bytes) -> bytes:
    index = body.index(b"contract-17")
    return body[:index] + b"C" + body[index + 1 :]


@pytest.mark.parametrize("change", ["body", "timestamp", "id", "secret"])
def test_any_change_is_refused_by_both_verifiers(change: str) -> None:
    body, headers = signed_dispatch()
    secret = OCR
    if change == "body":
        body = _flip_one_byte(body)
    elif change == "timestamp":
        headers["webhook-timestamp"] = str(int(headers["webhook-timestamp"]) - 1)
    elif change == "id":
        headers["webhook-id"] = "t-1:2"
    else:
        secret = NLP  # another algorithm's secret
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)
    with pytest.raises(InvalidSignature):
        Dispatch.from_request(body, headers, secret)


def test_rotation_sends_one_signature_per_secret() -> None:
    old, new = derive_secret("old-master", "ocr"), derive_secret("new-master", "ocr")
    body, headers = signed_dispatch([old, new])
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(sig.startswith("v1,") for sig in signatures)
    # A service that knows either secret accepts it, with or without this SDK.
    for secret in (old, new):
        Webhook(secret).verify(body, headers)
        Dispatch.from_request(body, headers, secret)
    Dispatch.from_request(body, headers, [new, old])
    with pytest.raises(InvalidSignature):
        Dispatch.from_request(body, headers, derive_secret("other-master", "ocr"))


def test_service_rotating_its_secret_accepts_either() -> None:
    old, new = derive_secret("old-master", "ocr"), derive_secret("new-master", "ocr")
    body, headers = signed_dispatch(old)
    Dispatch.from_request(body, headers, [new, old])


@pytest.mark.parametrize("offset", [-301, 301])
def test_timestamp_outside_the_tolerance_is_refused(offset: int) -> None:
    body, headers = signed_dispatch(timestamp=int(time.time()) + offset)
    with pytest.raises(InvalidSignature, match="tolerance"):
        Dispatch.from_request(body, headers, OCR)
    Dispatch.from_request(body, headers, OCR, tolerance=400)


def test_signed_id_must_name_the_attempt_in_the_body() -> None:
    request = dispatch_request()
    body = request.model_dump_json().encode()
    headers = sign_headers(OCR, "t-1:7", body)  # a valid signature over another id
    with pytest.raises(InvalidSignature, match="webhook-id"):
        Dispatch.from_request(body, headers, OCR)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"webhook-id": "t-1:1", "webhook-timestamp": "now", "webhook-signature": "v1,x"},
        {
            "webhook-id": "t-1:1",
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": "garbage",
        },
        {
            "webhook-id": "t-1:1",
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": "v1,é",
        },
    ],
)
def test_malformed_headers_are_refused_cleanly(headers: dict[str, str]) -> None:
    with pytest.raises(InvalidSignature):
        verify(b"{}", headers, OCR)


def test_headers_match_whatever_their_case() -> None:
    body, headers = signed_dispatch()
    shouted = {name.title(): value for name, value in headers.items()}
    Dispatch.from_request(body, shouted, OCR)


def test_signed_body_that_is_no_dispatch_request_is_an_invalid_request() -> None:
    body = json.dumps({"task_id": "t-1", "attempt": 1}).encode()
    with pytest.raises(InvalidRequest, match="DispatchRequest"):
        Dispatch.from_request(body, sign_headers(OCR, "t-1:1", body), OCR)


def test_cancel_request_has_its_own_id() -> None:
    body = json.dumps(
        {"task_id": "t-1", "attempt": 2, "algorithm": "ocr", "reason": "timed_out"}
    ).encode()
    headers = sign_headers(OCR, cancel_webhook_id("t-1", 2), body)
    assert headers["webhook-id"] == "t-1:2:cancel"
    Webhook(OCR).verify(body, headers)
    cancel = parse_cancel_request(body, headers, OCR)
    assert (cancel.task_id, cancel.attempt, cancel.reason) == ("t-1", 2, "timed_out")
    # The dispatch's id on a cancel body (or the reverse) is not this request.
    with pytest.raises(InvalidSignature):
        parse_cancel_request(body, sign_headers(OCR, dispatch_webhook_id("t-1", 2), body), OCR)
    with pytest.raises(InvalidSignature):
        parse_cancel_request(body, headers, NLP)
