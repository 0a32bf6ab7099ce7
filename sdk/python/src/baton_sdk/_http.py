"""A small HTTP client over the standard library, and the retry policy of calls to Baton.

``http.client`` rather than ``urllib.request``: it follows no redirect, adds no
``Content-Type`` of its own (a presigned URL may sign one) and sends the path and
query exactly as given (a presigned URL's signature covers them byte for byte).
"""

from __future__ import annotations

import http.client
import json
import random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import IO, Any
from urllib.parse import urlsplit

from baton_sdk.errors import (
    ApiError,
    AttemptEnded,
    BatonError,
    Forbidden,
    InvalidRequest,
    ResultMissing,
    TaskNotFound,
    Unauthorized,
    Unavailable,
)

USER_AGENT = "baton-sdk/0.1"
DEFAULT_TIMEOUT_SECONDS = 30.0


class TransportError(BatonError):
    """No answer: the connection failed, was dropped, or timed out."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Body = bytes | IO[bytes] | None


def request(
    method: str,
    url: str,
    *,
    body: Body = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    context: ssl.SSLContext | None = None,
) -> Response:
    """One request, one answer; ``TransportError`` when there was no answer."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {parts.scheme}://{parts.hostname}")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=context
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    sent = {"User-Agent": USER_AGENT, **(headers or {})}
    try:
        connection.request(method, target, body=body, headers=sent)
        answer = connection.getresponse()
        data = answer.read()
    except (OSError, http.client.HTTPException) as exc:
        raise TransportError(
            f"{method} {parts.hostname}: no answer ({type(exc).__name__})"
        ) from exc
    finally:
        connection.close()
    return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, data)


MAX_RETRY_AFTER_SECONDS = 300.0


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            seconds = parsedate_to_datetime(text).timestamp() - time.time()
        except (TypeError, ValueError, IndexError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter, for 5xx answers and no answer.

    A ``Retry-After`` (Baton sends one with its 503) is honoured instead of the backoff.
    """

    attempts: int = 8
    base_seconds: float = 0.5
    max_seconds: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def delay(self, retry: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        ceiling = min(self.max_seconds, self.base_seconds * 2**retry)
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 -- jitter, not a secret


def with_retries(send: Callable[[], Response], policy: RetryPolicy, what: str) -> Response:
    """``send()`` until it gets an answer below 500, or the policy gives up."""
    last = ""
    last_status: int | None = None
    retry_after: float | None = None
    for retry in range(policy.attempts):
        if retry:
            policy.sleep(policy.delay(retry - 1, retry_after))
        retry_after = None
        try:
            response = send()
        except TransportError as exc:
            last, last_status = str(exc), None
            continue
        if response.status < 500:
            return response
        retry_after = retry_after_seconds(response.headers.get("retry-after"))
        last, last_status = f"{response.status} {error_text(response)}", response.status
    # The last answer's status (None: the last try got no answer), for a caller that
    # tells "Baton kept failing" from "Baton could not be reached" without the text.
    raise Unavailable(
        f"{what}: gave up after {policy.attempts} tries; last: {last}", status=last_status
    )


def error_code(response: Response) -> tuple[str | None, str]:
    """Baton's ``{"error": {"code", "message"}}``, read leniently (a proxy's own error
    page has neither)."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        code = error.get("code")
        return (str(code) if code is not None else None), str(error.get("message", ""))
    return None, response.body[:200].decode(errors="replace")


def error_text(response: Response) -> str:
    code, message = error_code(response)
    return f"{code}: {message}" if code else message


def raise_for_answer(response: Response, what: str) -> None:
    """The error of a refusal by Baton's callback or status API."""
    if response.status < 400:
        return
    code, message = error_code(response)
    text = f"{what}: {response.status} {code or ''} {message}".replace("  ", " ").strip()
    kind: type[BatonError] = ApiError
    if response.status == 409:
        kind = ResultMissing if code == "result_missing" else AttemptEnded
        if kind is AttemptEnded:
            text = f"stop: this attempt ended ({text})"
    elif response.status == 401:
        kind = Unauthorized
    elif response.status == 403:
        kind = Forbidden
    elif response.status == 404:
        kind = TaskNotFound
    elif response.status in (413, 422):
        kind = InvalidRequest
    raise kind(text, status=response.status, code=code)
