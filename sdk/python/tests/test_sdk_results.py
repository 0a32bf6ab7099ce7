"""Results over real HTTP against moto's S3 server: the algorithm's upload with its
SHA-256 checksum, and the app's read through the presigned URL or S3 itself."""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer
from sdk_support import Reply, Seen, dispatch_request, loopback
from test_sdk_contracts import NOTIFICATION

from baton_sdk import Attempt, BatonClient, Notification, ResultIntegrityError
from baton_sdk.contracts import ResultLocation

BUCKET = "baton-results"
KEY = "results/ocr/t-1/1/result"
DATA = b'{"words": 42}'


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(moto_server: str) -> Any:
    client = boto3.client(
        "s3",
        endpoint_url=moto_server,
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(signature_version="s3v4"),
    )
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
    return client


def sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def attempt_for(upload_url: str) -> Attempt:
    return Attempt(dispatch_request(upload_url=upload_url))


def test_upload_result_puts_bytes_with_their_checksum(s3: Any) -> None:
    url = s3.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": KEY})
    upload = attempt_for(url).upload_result(DATA, "application/json")
    assert (upload.bucket, upload.key, upload.size) == (BUCKET, KEY, len(DATA))
    assert upload.checksum_sha256 == sha256(DATA)
    assert upload.checksum_sent
    assert upload.etag == hashlib.md5(DATA).hexdigest()
    head = s3.head_object(Bucket=BUCKET, Key=KEY, ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == sha256(DATA)
    assert head["ContentType"] == "application/json"
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == DATA


def test_upload_result_streams_a_file(s3: Any, tmp_path: Path) -> None:
    document = tmp_path / "result.bin"
    document.write_bytes(bytes(range(256)) * 8000)
    url = s3.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": "big"})
    upload = attempt_for(url).upload_result(document, "application/octet-stream")
    assert upload.size == 2_048_000
    assert upload.checksum_sha256 == sha256(document.read_bytes())
    head = s3.head_object(Bucket=BUCKET, Key="big", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == upload.checksum_sha256
    assert head["ContentLength"] == 2_048_000


def test_upload_url_that_refuses_an_unsigned_checksum_header_gets_the_bytes_without() -> None:
    def strict_s3(request: Seen) -> Reply:
        if "x-amz-checksum-sha256" in request.headers:
            return Reply(
                403,
                b"<Error><Code>AccessDenied</Code><Message>There were headers present in the "
                b"request which were not signed</Message></Error>",
            )
        return Reply(200, headers={"ETag": '"abc"'})

    with loopback(strict_s3) as server:
        upload = attempt_for(f"{server.url}/put?X-Amz-Signature=s").upload_result(DATA)
    assert not upload.checksum_sent
    assert upload.etag == "abc"
    assert [r.body for r in server.seen] == [DATA, DATA]


def notification_for(url: str, *, expires_at: datetime, checksum: str | None) -> Notification:
    location = ResultLocation(
        bucket=BUCKET, key=KEY, url=url, expires_at=expires_at, checksum_sha256=checksum
    )
    return Notification.model_validate({**NOTIFICATION, "result": location.model_dump()})


@pytest.fixture
def stored(s3: Any) -> Any:
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=DATA)
    return s3


def test_read_result_through_the_presigned_url(stored: Any) -> None:
    url = stored.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": KEY})
    note = notification_for(
        url, expires_at=datetime.now(UTC) + timedelta(hours=1), checksum=sha256(DATA)
    )

    class NoS3:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError("S3 must not be called while the URL works")

    assert BatonClient("unused", s3=NoS3()).read_result(note) == DATA  # type: ignore[arg-type]


def test_read_result_falls_back_to_s3_when_the_url_expired(stored: Any) -> None:
    note = notification_for(
        "http://127.0.0.1:9/never-called",
        expires_at=datetime.now(UTC) - timedelta(seconds=1),
        checksum=sha256(DATA),
    )
    assert BatonClient("unused", s3=stored).read_result(note) == DATA


def test_read_result_falls_back_to_s3_on_403(stored: Any) -> None:
    with loopback(lambda _: Reply(403, b"<Error><Code>AccessDenied</Code></Error>")) as server:
        note = notification_for(
            f"{server.url}/result", expires_at=datetime.now(UTC) + timedelta(hours=1), checksum=None
        )
        assert BatonClient("unused", s3=stored).read_result(note) == DATA
    assert len(server.seen) == 1


def test_read_result_refuses_bytes_that_do_not_match_the_checksum(stored: Any) -> None:
    url = stored.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": KEY})
    note = notification_for(
        url, expires_at=datetime.now(UTC) + timedelta(hours=1), checksum=sha256(b"other")
    )
    with pytest.raises(ResultIntegrityError):
        BatonClient("unused", s3=stored).read_result(note)
