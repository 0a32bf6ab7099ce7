"""The algorithm service's half of the contract: verify and parse a dispatch request,
upload the result, heartbeat, and call back.

    attempt = Dispatch.from_request(body, headers, secret)   # InvalidSignature if forged
    # ... answer 202 now, then work in the background:
    with attempt.heartbeating(every=60):
        data = run(attempt.input)
    attempt.upload_result(data, "application/json")
    attempt.succeed()

Every call back to Baton retries 5xx answers (honouring ``Retry-After``) and lost
connections with capped exponential backoff: Baton applies a callback at most once
and answers a repeat with ``applied: false``, so retrying is always safe.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, TypeVar

from pydantic import BaseModel, ValidationError

from baton_sdk import _http
from baton_sdk.contracts import (
    CallbackAnswer,
    CallbackBody,
    CancelRequest,
    DispatchRequest,
    ErrorDetail,
    HeartbeatAnswer,
    HeartbeatBody,
    ResultTarget,
)
from baton_sdk.errors import ApiError, AttemptEnded, BatonError, InvalidRequest, InvalidSignature
from baton_sdk.signing import (
    DEFAULT_TOLERANCE_SECONDS,
    cancel_webhook_id,
    dispatch_webhook_id,
    verify,
)

logger = logging.getLogger("baton_sdk")

UPLOAD_URL_MARGIN = timedelta(seconds=30)
"""An upload URL this close to its expiry is renewed (by a heartbeat) before a PUT."""

_UNSIGNED_HEADER_HINTS = ("not signed", "SignatureDoesNotMatch", "UnsignedHeaders")


_M = TypeVar("_M", bound=BaseModel)


def _parse(model: type[_M], body: bytes) -> _M:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors(include_input=False)
        )
        raise InvalidRequest(
            f"signed, but not a {model.__name__} this SDK reads: {problems}"
        ) from None


def parse_cancel_request(
    body: bytes,
    headers: Mapping[str, str],
    secret: str | Sequence[str],
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> CancelRequest:
    """Verify and parse a cancel request; answer it 2xx (or 404 for an attempt the
    service does not know) once the work is stopped, and Baton frees the slot."""
    webhook_id = verify(body, headers, secret, tolerance=tolerance)
    cancel = _parse(CancelRequest, body)
    if webhook_id != cancel_webhook_id(cancel.task_id, cancel.attempt):
        raise InvalidSignature(f"webhook-id {webhook_id!r} does not name this cancel request")
    return cancel


class Dispatch:
    """Entry point for a dispatch request (``POST`` to the algorithm's endpoint)."""

    @staticmethod
    def from_request(
        body: bytes,
        headers: Mapping[str, str],
        secret: str | Sequence[str],
        tolerance: float = DEFAULT_TOLERANCE_SECONDS,
        *,
        retry: _http.RetryPolicy | None = None,
        timeout: float = _http.DEFAULT_TIMEOUT_SECONDS,
    ) -> Attempt:
        """The attempt a verified dispatch request asks for.

        ``secret`` is the algorithm's ``whsec_...`` (several while it rotates). Raises
        ``InvalidSignature`` for a forged, altered or too old request, ``InvalidRequest``
        for a signed body this SDK cannot read.
        """
        webhook_id = verify(body, headers, secret, tolerance=tolerance)
        request = _parse(DispatchRequest, body)
        if webhook_id != dispatch_webhook_id(request.task_id, request.attempt):
            raise InvalidSignature(f"webhook-id {webhook_id!r} does not name this attempt")
        return Attempt(request, retry=retry, timeout=timeout)


@dataclass(frozen=True)
class Upload:
    """What ``upload_result`` stored."""

    bucket: str
    key: str
    size: int
    checksum_sha256: str
    """Base64 SHA-256 of the bytes sent, as S3 writes it."""
    checksum_sent: bool
    """False when the upload URL refused the checksum header and the PUT went without it."""
    etag: str | None


class Attempt:
    """One attempt of a task at this service, from its verified dispatch request.

    Safe to use from two threads (the work and its background heartbeats).
    """

    def __init__(
        self,
        request: DispatchRequest,
        *,
        retry: _http.RetryPolicy | None = None,
        timeout: float = _http.DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.request = request
        self._retry = retry or _http.RetryPolicy()
        self._timeout = timeout
        self._lock = threading.Lock()
        self._result = request.result
        self._deadline = request.deadline

    # -- what the request says -----------------------------------------------------------

    @property
    def task_id(self) -> str:
        return self.request.task_id

    @property
    def number(self) -> int:
        """The attempt number (1 for the first)."""
        return self.request.attempt

    @property
    def algorithm(self) -> str:
        return self.request.algorithm

    @property
    def input(self) -> dict[str, Any]:
        return self.request.input

    @property
    def cost(self) -> int:
        return self.request.cost

    @property
    def deadline(self) -> datetime:
        """When Baton times the attempt out, unless a heartbeat extends it."""
        with self._lock:
            return self._deadline

    @property
    def result_target(self) -> ResultTarget:
        """Where the result goes; heartbeats may have renewed its upload URL."""
        with self._lock:
            return self._result

    # -- result --------------------------------------------------------------------------

    def upload_result(
        self,
        data: bytes | os.PathLike[str],
        content_type: str = "application/octet-stream",
    ) -> Upload:
        """PUT the result to its presigned URL with its ``x-amz-checksum-sha256``, so that S3
        refuses bytes damaged on the way and the notification can carry the checksum.

        Upload URLs need not sign the checksum header. Should one refuse it as unsigned,
        the PUT is made again without it (``Upload.checksum_sent`` is then False).
        """
        path = None if isinstance(data, bytes) else Path(data)
        size, checksum = _sha256_of(data if isinstance(data, bytes) else Path(data))
        if self.result_target.expires_at - datetime.now(UTC) < UPLOAD_URL_MARGIN:
            self.heartbeat()
        target = self.result_target
        headers = {"Content-Type": content_type, "Content-Length": str(size)}

        def put(with_checksum: bool) -> _http.Response:
            # The algorithm header as botocore's own put_object sends it: some S3
            # implementations keep the checksum only when both are there.
            sent = headers | (
                {"x-amz-checksum-sha256": checksum, "x-amz-sdk-checksum-algorithm": "SHA256"}
                if with_checksum
                else {}
            )

            def once() -> _http.Response:
                if isinstance(data, bytes):
                    return _http.request(
                        "PUT", target.upload_url, body=data, headers=sent, timeout=self._timeout
                    )
                assert path is not None
                with path.open("rb") as stream:
                    return _http.request(
                        "PUT", target.upload_url, body=stream, headers=sent, timeout=self._timeout
                    )

            return _http.with_retries(once, self._retry, "result upload")

        response = put(with_checksum=True)
        checksum_sent = True
        if response.status in (400, 403) and any(
            hint in response.body.decode(errors="replace") for hint in _UNSIGNED_HEADER_HINTS
        ):
            logger.info("upload URL refused the unsigned checksum header; uploading without it")
            response = put(with_checksum=False)
            checksum_sent = False
        if not 200 <= response.status < 300:
            raise ApiError(
                f"result upload: S3 answered {response.status}: "
                f"{response.body[:300].decode(errors='replace')}",
                status=response.status,
            )
        etag = response.headers.get("etag")
        return Upload(
            bucket=target.bucket,
            key=target.key,
            size=size,
            checksum_sha256=checksum,
            checksum_sent=checksum_sent,
            etag=etag.strip('"') if etag else None,
        )

    # -- heartbeats ----------------------------------------------------------------------

    def heartbeat(self, progress: int | None = None, message: str | None = None) -> HeartbeatAnswer:
        """Tell Baton the attempt is alive (extending its deadline) and how far it got.

        Takes the fresh upload URL when the answer carries one. Raises ``AttemptEnded``
        when Baton answers 409: stop working on this attempt.
        """
        body = HeartbeatBody(attempt=self.number, progress=progress, message=message)
        # A heartbeat is worth less than a callback: a few tries, then the next beat.
        policy = dataclasses.replace(self._retry, attempts=min(3, self._retry.attempts))
        answer = self._post(self._heartbeat_url(), body, policy, "heartbeat")
        beat = HeartbeatAnswer.model_validate_json(answer.body)
        with self._lock:
            self._deadline = beat.deadline
            if beat.result is not None:
                self._result = beat.result
        return beat

    @contextmanager
    def heartbeating(
        self, every: float = 60.0, *, progress: int | None = None, message: str | None = None
    ) -> Iterator[Heartbeats]:
        """Heartbeat every ``every`` seconds in a background thread while the block runs.

        The block may report progress through the yielded ``Heartbeats`` and should check
        ``heartbeats.ended`` (or call ``raise_if_ended()``) between steps. If Baton ended
        the attempt, leaving the block raises ``AttemptEnded``.
        """
        beats = Heartbeats(self, every, progress, message)
        beats.start()
        try:
            yield beats
        finally:
            beats.stop()
        beats.raise_if_ended()

    # -- callback ------------------------------------------------------------------------

    def succeed(self) -> CallbackAnswer:
        """Report success; the result must have been uploaded (else ``ResultMissing``)."""
        return self._call_back(CallbackBody(attempt=self.number, status="succeeded"))

    def fail(self, code: str, message: str = "") -> CallbackAnswer:
        """Report failure with the algorithm's own error ``code`` (1-64 characters)."""
        return self._call_back(
            CallbackBody(
                attempt=self.number,
                status="failed",
                error=ErrorDetail(code=code, message=message[:1024]),
            )
        )

    def _call_back(self, body: CallbackBody) -> CallbackAnswer:
        # 200 with applied false is a repeat of an outcome already recorded: success.
        answer = self._post(self.request.callback.url, body, self._retry, "callback")
        return CallbackAnswer.model_validate_json(answer.body)

    def _heartbeat_url(self) -> str:
        url = self.request.callback.url
        base, _, last = url.rpartition("/")
        if last != "callback":
            raise BatonError(f"callback URL does not end in /callback: {url}")
        return f"{base}/heartbeat"

    def _post(
        self, url: str, body: BaseModel, policy: _http.RetryPolicy, what: str
    ) -> _http.Response:
        payload = body.model_dump_json(exclude_none=True).encode()
        headers = {
            "Authorization": f"Bearer {self.request.callback.token}",
            "Content-Type": "application/json",
        }
        response = _http.with_retries(
            lambda: _http.request(
                "POST", url, body=payload, headers=headers, timeout=self._timeout
            ),
            policy,
            f"{what} of {self.task_id}:{self.number}",
        )
        _http.raise_for_answer(response, f"{what} of {self.task_id}:{self.number}")
        return response


class Heartbeats:
    """Background heartbeats of one attempt (see ``Attempt.heartbeating``)."""

    def __init__(
        self, attempt: Attempt, every: float, progress: int | None, message: str | None
    ) -> None:
        if every <= 0:
            raise ValueError("every must be positive")
        self._attempt = attempt
        self._every = every
        self._progress = progress
        self._message = message
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.ended = threading.Event()
        """Set once Baton answered 409: the attempt is over, stop working on it."""
        self.error: AttemptEnded | None = None
        self.beats = 0
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{attempt.task_id}:{attempt.number}", daemon=True
        )

    def report(self, progress: int | None = None, message: str | None = None) -> None:
        """What the next heartbeat says (progress 0-100)."""
        with self._lock:
            self._progress, self._message = progress, message

    def raise_if_ended(self) -> None:
        if self.error is not None:
            raise self.error

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            with self._lock:
                progress, message = self._progress, self._message
            try:
                self._attempt.heartbeat(progress, message)
            except AttemptEnded as exc:
                self.error = exc
                self.ended.set()
                return
            except BatonError as exc:
                # The deadline still has this beat's worth of slack: try at the next one.
                logger.warning("heartbeat failed, trying again in %.0f s: %s", self._every, exc)
                continue
            self.beats += 1


def _sha256_of(data: bytes | Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    if isinstance(data, bytes):
        digest.update(data)
        size = len(data)
    else:
        stream: IO[bytes]
        with data.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
    return size, base64.b64encode(digest.digest()).decode()
