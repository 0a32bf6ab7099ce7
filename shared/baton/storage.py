"""Results in S3: presigned upload URLs for algorithms, presigned download URLs for
business apps, and the existence check before a task is marked SUCCEEDED."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def result_key(prefix: str, algorithm: str, task_id: str, attempt: int) -> str:
    """Each attempt writes under its task's own prefix, never anywhere else."""
    return f"{prefix}/{algorithm}/{task_id}/{attempt}/result"


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
