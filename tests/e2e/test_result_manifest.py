"""A success notification carries the result's manifest as S3 reports it (size, type,
ETag without quotes, and the SHA-256 checksum when the upload carried one), every
notification its idempotency key, and a notification published again keeps every
field but a fresh presigned URL. The raw-HTTP service uploads without a checksum; the
SDK's ``upload_result`` sends one."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from baton import cli
from baton.outbox import republish_notification
from baton_sdk import BatonClient, Notification, ResultIntegrityError
from baton_sdk.contracts import parse_notification

from tests.support.algorithm_service import AlgorithmService
from tests.support.aws import AwsResources
from tests.support.clock import ShiftableClock
from tests.support.events import sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.runtime import RuntimeFactory
from tests.support.sdk_algorithm_service import SdkAlgorithmService
from tests.support.waiting import wait_for


@pytest.fixture
def sdk_service() -> Iterator[SdkAlgorithmService]:
    service = SdkAlgorithmService().start()
    yield service
    service.stop()


def _registry(endpoint: str) -> dict[str, Any]:
    return {"ocr": {"endpoint": endpoint, "max_concurrency": 2}}


def _one_notification(aws: AwsResources, handlers: Handlers, key: str) -> dict[str, Any]:
    answer = handlers.invoke("intake", sqs_event(sqs_record(task_body(idempotency_key=key))))
    assert answer == {"batchItemFailures": []}
    found: list[dict[str, Any]] = wait_for(
        lambda: [n for n in aws.notifications() if n["idempotency_key"] == key]
    )
    assert len(found) == 1
    return found[0]


def _head(aws: AwsResources, note: dict[str, Any]) -> dict[str, Any]:
    head = aws.session.client("s3").head_object(
        Bucket=note["result"]["bucket"], Key=note["result"]["key"], ChecksumMode="ENABLED"
    )
    return dict(head)


def test_a_result_uploaded_without_a_checksum(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
) -> None:
    # Given a service that PUTs its result by hand, with no checksum
    runtime = make_runtime(algorithms=_registry(algorithm_service.endpoint("ocr")))

    # When its task succeeds
    note = _one_notification(aws, handlers, "plain")

    # Then the notification's manifest is what S3 says of the object, without checksum
    head = _head(aws, note)
    result = note["result"]
    assert result["size"] == head["ContentLength"] > 0
    assert result["etag"] == head["ETag"].strip('"')
    assert '"' not in result["etag"]
    assert result["content_type"] == head.get("ContentType")
    assert "ChecksumSHA256" not in head
    assert result["checksum_sha256"] is None
    assert note["idempotency_key"] == "plain"

    # And the SDK reads the same manifest
    parsed = parse_notification(_raw(note))
    assert isinstance(parsed, Notification)
    assert parsed.result is not None
    assert (parsed.result.size, parsed.result.etag) == (result["size"], result["etag"])
    assert parsed.idempotency_key == "plain"

    # When it is published again, later (the app sent its message once more)
    task = runtime.repository.find_task("contracts", "plain")
    assert task is not None
    clock.advance(600)
    assert republish_notification(runtime, task)
    again = wait_for(
        lambda: [n for n in aws.notifications() if n["idempotency_key"] == "plain"][1:]
    )

    # Then every field is the same but a fresh URL and its expiry
    fresh = again[0]
    assert fresh["result"]["expires_at"] > result["expires_at"]
    # (the URL is signed anew; botocore signs with the real time, not the test's clock)
    unchanged = {**fresh, "result": {**fresh["result"], "url": "", "expires_at": ""}}
    assert unchanged == {**note, "result": {**result, "url": "", "expires_at": ""}}


def test_a_result_uploaded_with_its_sha256_checksum(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    sdk_service: SdkAlgorithmService,
    aws: AwsResources,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a service built on the SDK, whose upload_result sends the checksum
    make_runtime(algorithms=_registry(sdk_service.endpoint("ocr")))
    assert cli.main(["algorithm", "secret", "ocr"]) == 0
    sdk_service.secrets["ocr"] = [capsys.readouterr().out.splitlines()[0]]

    # When its task succeeds
    note = _one_notification(aws, handlers, "checked")
    sdk_service.wait_idle()

    # Then the notification carries the checksum S3 kept, that of the bytes uploaded
    (outcome,) = sdk_service.outcomes
    assert outcome.upload is not None
    assert outcome.upload.checksum_sent
    head = _head(aws, note)
    result = note["result"]
    digest = base64.b64encode(hashlib.sha256(outcome.data).digest()).decode()
    assert result["checksum_sha256"] == head["ChecksumSHA256"] == digest
    assert result["size"] == head["ContentLength"] == len(outcome.data)
    assert result["etag"] == head["ETag"].strip('"')
    assert result["content_type"] == head["ContentType"] == "application/json"

    # And the SDK parses it, and checks the bytes it reads against it
    parsed = parse_notification(_raw(note))
    assert isinstance(parsed, Notification)
    assert parsed.result is not None
    assert parsed.result.checksum_sha256 == digest
    app = BatonClient("https://sqs.invalid/intake", session=aws.session)
    assert app.read_result(parsed) == outcome.data
    # (a checksum that is not the bytes' is refused: the check is real)
    forged = parsed.result.model_copy(
        update={"checksum_sha256": base64.b64encode(b"x" * 32).decode()}
    )
    with pytest.raises(ResultIntegrityError):
        app.read_result(parsed.model_copy(update={"result": forged}))


def _raw(note: dict[str, Any]) -> str:
    return json.dumps(note)
