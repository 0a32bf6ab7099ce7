"""Results in S3: presigned upload URLs for algorithms, presigned download URLs for
business apps, and the existence check before a task is marked SUCCEEDED."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def result_key(prefix: str, algorithm: str, task_id: str, attempt: int) -> str:
    """Each attempt writes under its task's own prefix, never anywhere else."""
    return f"{prefix}/{algorithm}/{task_id}/{attempt}/result"


@dataclass(frozen=True)
class ResultManifest:
    """What S3 says of a result object, for the notification's ``result``."""

    size: int
    content_type: str | None
    etag: str | None
    """Without the quotes S3 puts around it."""
    checksum_sha256: str | None
    """Base64, as S3 reports it; None when the upload carried no SHA-256 checksum."""


class ResultStore:
    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self.bucket = bucket

    def upload_url(self, key: str, now: datetime, ttl_seconds: int) -> tuple[str, datetime]:
        """Step 11: the presigned PUT URL the algorithm uploads its result to."""
        url = self._client.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=ttl_seconds,
        )
        return url, now + timedelta(seconds=ttl_seconds)

    def download_url(self, key: str, now: datetime, ttl_seconds: int) -> tuple[str, datetime]:
        """Step 17: the presigned GET URL the notification hands the business app."""
        url = self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=ttl_seconds,
        )
        return url, now + timedelta(seconds=ttl_seconds)

    def exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def manifest(self, key: str) -> ResultManifest | None:
        """The object's size, type, ETag and SHA-256 checksum; None if it is gone (a
        lifecycle rule expired it)."""
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        etag = head.get("ETag")
        return ResultManifest(
            size=int(head.get("ContentLength", 0)),
            content_type=head.get("ContentType"),
            etag=etag.strip('"') if etag else None,
            checksum_sha256=head.get("ChecksumSHA256"),
        )
