"""The HTTP side of dispatch: sign and POST the dispatch request (and the cancel request
of an attempt Baton ended), classify the answer."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

import urllib3

from baton.contracts import CancelRequest, DispatchRequest
from baton.signing import SigningKeyring


class DispatchVerdict(enum.Enum):
    ACCEPTED = "accepted"  # 2xx
    REJECTED = "rejected"  # 4xx other than 408/429: the task fails for good
    RETRY = "retry"  # 5xx, 408, 429, other answers, or no answer at all


@dataclass(frozen=True)
class DispatchAnswer:
    verdict: DispatchVerdict
    http_status: int | None
    detail: str
    retry_after_seconds: float | None = None


@dataclass(frozen=True)
class CancelAnswer:
    acknowledged: bool  # 2xx or 404: the service stopped, or never had the attempt
    http_status: int | None  # None: no answer
    detail: str


MAX_RETRY_AFTER_SECONDS = 3600.0


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped at an
    hour so that a confused service cannot park an algorithm for days."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            seconds = (parsedate_to_datetime(text) - now).total_seconds()
        except (TypeError, ValueError, IndexError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def classify(status: int) -> DispatchVerdict:
    if 200 <= status < 300:
        return DispatchVerdict.ACCEPTED
    if 400 <= status < 500 and status not in (408, 429):
        return DispatchVerdict.REJECTED
    return DispatchVerdict.RETRY


class DispatchClient(Protocol):
    def send(self, endpoint: str, request: DispatchRequest) -> DispatchAnswer: ...

    def cancel(self, cancel_url: str, request: CancelRequest) -> CancelAnswer: ...


class HttpDispatchClient:
    """urllib3 with a connection pool per cold start and no automatic retries: the
    scheduler owns retrying, with backoff and an attempt budget.

    Each request is signed with the algorithm's secrets (``baton.signing``) over the
    exact bytes it sends, at the moment it sends them: ``wall`` is real time, not the
    scheduler's clock, because the service checks the timestamp against its own clock.
    """

    def __init__(
        self,
        timeout_seconds: float,
        signing_keys: SigningKeyring,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._signing_keys = signing_keys
        self._wall = wall
        self._pool = urllib3.PoolManager(
            num_pools=32,
            maxsize=8,
            timeout=urllib3.Timeout(connect=min(timeout_seconds, 5.0), read=timeout_seconds),
            retries=False,
        )

    def send(self, endpoint: str, request: DispatchRequest) -> DispatchAnswer:
        """Step 8: POST the signed dispatch request and classify the answer; never raises."""
        body = request.model_dump_json().encode()
        # The signature covers these bytes, so they are what goes out, unchanged.
        signature = self._signing_keys.dispatch_headers(
            request.algorithm, request.task_id, request.attempt, body, int(self._wall())
        )
        try:
            response = self._post(endpoint, body, f"{request.task_id}:{request.attempt}", signature)
        except urllib3.exceptions.HTTPError as exc:
            return DispatchAnswer(DispatchVerdict.RETRY, None, f"no answer: {type(exc).__name__}")
        return DispatchAnswer(
            classify(response.status),
            response.status,
            response.data[:200].decode(errors="replace"),
            parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC)),
        )

    def cancel(self, cancel_url: str, request: CancelRequest) -> CancelAnswer:
        """POST the signed cancel request of an attempt Baton ended; never raises. Each
        try is signed afresh (a new timestamp) under the same id."""
        body = request.model_dump_json().encode()
        signature = self._signing_keys.cancel_headers(
            request.algorithm, request.task_id, request.attempt, body, int(self._wall())
        )
        try:
            response = self._post(
                cancel_url, body, f"{request.task_id}:{request.attempt}:cancel", signature
            )
        except urllib3.exceptions.HTTPError as exc:
            return CancelAnswer(False, None, f"no answer: {type(exc).__name__}")
        return CancelAnswer(
            200 <= response.status < 300 or response.status == 404,
            response.status,
            response.data[:200].decode(errors="replace"),
        )

    def _post(
        self, url: str, body: bytes, idempotency_key: str, signature: dict[str, str]
    ) -> urllib3.BaseHTTPResponse:
        return self._pool.request(
            "POST",
            url,
            body=body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": "baton-dispatch/1",
                "Idempotency-Key": idempotency_key,
                **signature,
            },
            redirect=False,
            preload_content=True,
        )
