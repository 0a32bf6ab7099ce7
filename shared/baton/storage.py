"""Results in S3: presigned upload URLs for algorithms, presigned download URLs for
business apps, the existence check before a task is marked SUCCEEDED, and the manifest
the notification carries."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
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


MANIFEST_REUSE_SECONDS = 30.0
"""How long the manifest read by the existence check serves the notification that
follows it (the same callback), instead of a second HeadObject."""
_RECENT_MANIFESTS = 256


class ResultStore:
    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self.bucket = bucket
        self._recent: OrderedDict[str, tuple[float, ResultManifest]] = OrderedDict()
        self._lock = threading.Lock()

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
        return self._head(key) is not None

    def manifest(self, key: str) -> ResultManifest | None:
        """The object's size, type, ETag and SHA-256 checksum; None if it is gone (a
        lifecycle rule expired it). The existence check's reading is taken once, when
        fresh: any later publish of the same result asks S3 again."""
        with self._lock:
            recent = self._recent.pop(key, None)
        if recent is not None and time.monotonic() - recent[0] < MANIFEST_REUSE_SECONDS:
            return recent[1]
        return self._head(key)

    def _head(self, key: str) -> ResultManifest | None:
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        etag = head.get("ETag")
        manifest = ResultManifest(
            size=int(head.get("ContentLength", 0)),
            content_type=head.get("ContentType"),
            etag=etag.strip('"') if etag else None,
            checksum_sha256=head.get("ChecksumSHA256"),
        )
        with self._lock:
            self._recent[key] = (time.monotonic(), manifest)
            while len(self._recent) > _RECENT_MANIFESTS:
                self._recent.popitem(last=False)
        return manifest
