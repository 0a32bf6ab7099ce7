"""The business app's half of the contract: submit and cancel tasks on the intake
queue, look them up on the status API, read notifications and fetch results.

    client = BatonClient(queue_url, api_url="https://abc123.execute-api.eu-west-1.amazonaws.com/prod")
    key = client.submit(TaskMessage(app="review-portal", algorithm="ocr", input={"doc": "s3://..."}))
    for note in client.notifications(my_queue_url):
        if note.status == "succeeded":
            data = client.read_result(note)

Every task goes out with an explicit ``idempotency_key``: the caller's, or one derived
from the message's content (``contracts.derive_idempotency_key``, the same derivation
Baton applies to a message without one), so the caller always knows the key that
names its task, and sending the same message twice is the same task. Give your own
key (e.g. a document id and version) when the same input must run again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlencode, urlsplit

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from baton_sdk import _http
from baton_sdk.contracts import (
    AlreadyFinalAnswer,
    CancelById,
    CancelByKey,
    CancelByKeyBody,
    CancelMessage,
    CancelTaskBody,
    Notification,
    RejectedNotification,
    TaskMessage,
    TaskView,
    derive_idempotency_key,
    message_body,
    parse_notification,
)
from baton_sdk.errors import BatonError, ResultIntegrityError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

logger = logging.getLogger("baton_sdk")

SQS_BATCH_ENTRIES = 10
SQS_BATCH_BYTES = 256 * 1024
"""What one SendMessageBatch carries at most (Baton's intake takes 256 KiB per message
by default too, so a larger message would be refused there anyway)."""


@dataclass(frozen=True)
class BatchEntry:
    """One message of ``submit_many``, in the order given."""

    index: int
    idempotency_key: str
    message_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    sender_fault: bool = False
    """True when resending the same message cannot succeed (SQS says it is the sender's)."""

    @property
    def ok(self) -> bool:
        return self.message_id is not None


@dataclass(frozen=True)
class BatchResult:
    entries: list[BatchEntry]

    @property
    def ok(self) -> bool:
        return all(entry.ok for entry in self.entries)

    @property
    def succeeded(self) -> list[BatchEntry]:
        return [entry for entry in self.entries if entry.ok]

    @property
    def failed(self) -> list[BatchEntry]:
        return [entry for entry in self.entries if not entry.ok]

    @property
    def keys(self) -> list[str]:
        """The idempotency key of every message, sent or not, in the order given."""
        return [entry.idempotency_key for entry in self.entries]


@dataclass(frozen=True)
class CancelOutcome:
    """The status API's answer to a cancel."""

    outcome: Literal["cancelled", "already_final", "kept"]
    """``kept``: a cancel by key for a task that has not arrived yet (it will end cancelled)."""
    task: TaskView | None = None
    status: str | None = None
    """The final status of a task that was already final."""


class RecentIds:
    """The last ``size`` notification ids seen, oldest forgotten first."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def seen(self, notification_id: str) -> bool:
        """Whether the id was seen before; remembers it either way."""
        if notification_id in self._ids:
            self._ids.move_to_end(notification_id)
            return True
        self._ids[notification_id] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return False


def unwrap_sns(body: str) -> str:
    """The notification inside an SQS message body: SNS's envelope
    (``{"Type": "Notification", "Message": "..."}``) unless raw delivery is on."""
    try:
        document = json.loads(body)
    except ValueError:
        return body
    if (
        isinstance(document, dict)
        and document.get("Type") == "Notification"
        and isinstance(document.get("Message"), str)
    ):
        return str(document["Message"])
    return body


class BatonClient:
    """A business app's client of one Baton deployment.

    ``queue_url`` is Baton's intake queue; ``api_url`` the base URL of its status API
    (the stage URL, no trailing slash needed). Clients are created from ``session``
    (default: boto3's default session) when not given.
    """

    def __init__(
        self,
        queue_url: str,
        *,
        sqs: SQSClient | None = None,
        s3: S3Client | None = None,
        api_url: str | None = None,
        session: boto3.session.Session | None = None,
        region: str | None = None,
        timeout: float = _http.DEFAULT_TIMEOUT_SECONDS,
        retry: _http.RetryPolicy | None = None,
    ) -> None:
        self.queue_url = queue_url
        self._given_sqs = sqs
        self._given_s3 = s3
        self._api_url = api_url.rstrip("/") if api_url else None
        self._given_session = session
        self._region = region
        self._timeout = timeout
        self._retry = retry or _http.RetryPolicy(attempts=4)

    @cached_property
    def _session(self) -> boto3.session.Session:
        return self._given_session or boto3.session.Session(region_name=self._region)

    @cached_property
    def sqs(self) -> SQSClient:
        return self._given_sqs or self._session.client("sqs")

    @cached_property
    def s3(self) -> S3Client:
        return self._given_s3 or self._session.client("s3")

    # -- intake queue --------------------------------------------------------------------

    @staticmethod
    def with_key(message: TaskMessage) -> TaskMessage:
        """The message with its idempotency key: its own, or the derived one."""
        if message.idempotency_key is not None:
            return message
        return message.model_copy(update={"idempotency_key": derive_idempotency_key(message)})

    def submit(self, message: TaskMessage) -> str:
        """Send one task message; returns its idempotency key. Errors are raised."""
        keyed = self.with_key(message)
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=message_body(keyed))
        assert keyed.idempotency_key is not None
        return keyed.idempotency_key

    def submit_many(self, messages: Iterable[TaskMessage]) -> BatchResult:
        """Send task messages in batches of ten (SendMessageBatch).

        A message SQS refuses, or a batch call that fails, is reported in its entry of
        the result, not raised: resend ``result.failed`` (with the same keys, so a
        message that did arrive after all is not a second task).
        """
        entries: dict[int, BatchEntry] = {}
        pending: list[tuple[int, str, str]] = []
        for index, message in enumerate(messages):
            keyed = self.with_key(message)
            assert keyed.idempotency_key is not None
            body = message_body(keyed)
            if len(body.encode()) > SQS_BATCH_BYTES:
                entries[index] = BatchEntry(
                    index,
                    keyed.idempotency_key,
                    error_code="MessageTooLong",
                    error_message=f"{len(body.encode())} bytes, over {SQS_BATCH_BYTES}",
                    sender_fault=True,
                )
            else:
                pending.append((index, keyed.idempotency_key, body))
        for chunk in _batches(pending):
            for entry in self._send_batch(chunk):
                entries[entry.index] = entry
        return BatchResult([entries[index] for index in sorted(entries)])

    def _send_batch(self, chunk: list[tuple[int, str, str]]) -> list[BatchEntry]:
        keys = {str(index): key for index, key, _ in chunk}
        request: list[SendMessageBatchRequestEntryTypeDef] = [
            {"Id": str(index), "MessageBody": body} for index, _, body in chunk
        ]
        try:
            response = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=request)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            return [
                BatchEntry(
                    int(entry_id),
                    key,
                    error_code=error.get("Code", "ClientError"),
                    error_message=error.get("Message", str(exc)),
                    sender_fault=error.get("Type") == "Sender",
                )
                for entry_id, key in keys.items()
            ]
        except BotoCoreError as exc:
            return [
                BatchEntry(
                    int(entry_id), key, error_code=type(exc).__name__, error_message=str(exc)
                )
                for entry_id, key in keys.items()
            ]
        result = [
            BatchEntry(int(ok["Id"]), keys[ok["Id"]], message_id=ok["MessageId"])
            for ok in response.get("Successful", [])
        ]
        result += [
            BatchEntry(
                int(failed["Id"]),
                keys[failed["Id"]],
                error_code=failed.get("Code"),
                error_message=failed.get("Message"),
                sender_fault=bool(failed.get("SenderFault")),
            )
            for failed in response.get("Failed", [])
        ]
        answered = {entry.index for entry in result}
        result += [
            BatchEntry(int(entry_id), key, error_code="NoAnswer", error_message="not in answer")
            for entry_id, key in keys.items()
            if int(entry_id) not in answered
        ]
        return result

    def cancel(
        self,
        app: str,
        *,
        idempotency_key: str | None = None,
        task_id: str | None = None,
        reason: str | None = None,
    ) -> str:
        """Send a cancel message (by key or by task id); returns its SQS message id.

        A cancel by key may arrive before its task: Baton keeps it for a day.
        """
        if (idempotency_key is None) == (task_id is None):
            raise ValueError("give exactly one of idempotency_key and task_id")
        target = (
            CancelByKey(idempotency_key=idempotency_key)
            if idempotency_key is not None
            else CancelById(task_id=task_id)  # type: ignore[arg-type]  # not None, checked above
        )
        message = CancelMessage(app=app, cancel=target, reason=reason)
        response = self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=message_body(message))
        return response["MessageId"]

    # -- status API ----------------------------------------------------------------------

    def status(self, task_id: str) -> TaskView:
        """``GET /tasks/{task_id}``; ``TaskNotFound`` for an unknown task (or another app's)."""
        response = self._api("GET", f"/tasks/{quote(task_id, safe='')}")
        _http.raise_for_answer(response, f"status of {task_id}")
        return TaskView.model_validate_json(response.body)

    def status_by_key(self, app: str, idempotency_key: str) -> TaskView:
        """``GET /apps/{app}/tasks?idempotency_key=...`` (a key travels in the query string,
        never in the path: it may hold ``/``, ``?`` or ``%``)."""
        response = self._api(
            "GET",
            f"/apps/{quote(app, safe='')}/tasks",
            query={"idempotency_key": idempotency_key},
        )
        _http.raise_for_answer(response, f"status of {app}/{idempotency_key}")
        return TaskView.model_validate_json(response.body)

    def cancel_via_api(
        self,
        task_id: str | None = None,
        *,
        app: str | None = None,
        idempotency_key: str | None = None,
        reason: str | None = None,
    ) -> CancelOutcome:
        """Cancel through the status API, by task id or by ``app`` and key.

        A task already final is no error: ``outcome == "already_final"`` and its status.
        """
        body: CancelTaskBody | CancelByKeyBody
        if task_id is not None and idempotency_key is None:
            path = f"/tasks/{quote(task_id, safe='')}/cancel"
            body = CancelTaskBody(reason=reason)
        elif task_id is None and app is not None and idempotency_key is not None:
            path = f"/apps/{quote(app, safe='')}/tasks/cancel"
            body = CancelByKeyBody(idempotency_key=idempotency_key, reason=reason)
        else:
            raise ValueError("give task_id, or app and idempotency_key")
        response = self._api("POST", path, body=body.model_dump_json(exclude_none=True).encode())
        if response.status == 409:
            code, _ = _http.error_code(response)
            if code == "already_final":
                final = AlreadyFinalAnswer.model_validate_json(response.body)
                return CancelOutcome("already_final", status=final.status)
        if response.status == 202:
            return CancelOutcome("kept")
        _http.raise_for_answer(response, f"cancel of {task_id or idempotency_key}")
        task = TaskView.model_validate_json(response.body)
        return CancelOutcome("cancelled", task=task, status=task.status)

    def _api(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> _http.Response:
        if self._api_url is None:
            raise BatonError("this client has no api_url: the status API is not configured")
        url = self._api_url + path
        if query:
            url += "?" + urlencode(query, quote_via=quote, safe="")
        credentials = self._session.get_credentials()
        if credentials is None:
            raise BatonError("no AWS credentials to sign the status API request with")
        region = self._region or self._session.region_name or _region_of(url)
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"

        def send() -> _http.Response:
            # Signed afresh on every try: a SigV4 signature is only good for 5 minutes.
            signed = AWSRequest(method=method, url=url, data=body or b"", headers=headers)
            SigV4Auth(credentials.get_frozen_credentials(), "execute-api", region).add_auth(signed)
            return _http.request(
                method, url, body=body, headers=dict(signed.headers.items()), timeout=self._timeout
            )

        return _http.with_retries(send, self._retry, f"{method} {path}")

    # -- notifications -------------------------------------------------------------------

    def notifications(
        self,
        queue_url: str,
        *,
        wait_seconds: int = 20,
        max_messages: int = 10,
        visibility_timeout: int | None = None,
        dedupe_window: int = 10_000,
        stop_when_empty: bool = False,
    ) -> Iterator[Notification | RejectedNotification]:
        """The notifications on the app's own queue, each handed over once.

        Reads SNS-enveloped and raw-delivered messages alike. A message is deleted once
        the loop asks for the next one (its handling is then done), so a consumer that
        dies mid-way gets it again; a duplicate of one of the last ``dedupe_window``
        ``notification_id`` values is deleted without being handed over. A message that
        is no notification is left on the queue (its redrive policy takes it to a DLQ)
        and logged. ``stop_when_empty`` ends the loop at the first empty receive.
        """
        recent = RecentIds(dedupe_window)
        while True:
            options: dict[str, Any] = {}
            if visibility_timeout is not None:
                options["VisibilityTimeout"] = visibility_timeout
            answer = self.sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=max_messages,
                WaitTimeSeconds=wait_seconds,
                **options,
            )
            messages = answer.get("Messages", [])
            if not messages and stop_when_empty:
                return
            for message in messages:
                receipt = message["ReceiptHandle"]
                try:
                    notification = parse_notification(unwrap_sns(message.get("Body", "")))
                except ValidationError as exc:
                    logger.warning(
                        "message %s on %s is no Baton notification, left on the queue: %s",
                        message.get("MessageId"),
                        queue_url,
                        exc.errors(include_input=False)[:3],
                    )
                    continue
                if not recent.seen(notification.notification_id):
                    yield notification
                self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=receipt)

    # -- results -------------------------------------------------------------------------

    def read_result(self, notification: Notification | TaskView) -> bytes:
        """The result object of a succeeded task.

        Through the presigned URL while it lives; once it expired (or answers 403), with
        S3 GetObject and this client's own credentials. The bytes are checked against
        the notification's ``checksum_sha256`` when it has one.
        """
        location = notification.result
        if location is None:
            raise BatonError(f"task {notification.task_id} has no result ({notification.status})")
        data: bytes | None = None
        if location.expires_at > datetime.now(UTC):
            try:
                response = _http.request("GET", location.url, timeout=self._timeout)
            except _http.TransportError as exc:
                logger.info("presigned GET failed (%s); reading from S3 directly", exc)
            else:
                if response.status == 200:
                    data = response.body
                elif response.status not in (400, 403):
                    raise BatonError(
                        f"result of {notification.task_id}: {response.status} from S3",
                        status=response.status,
                    )
        if data is None:
            data = self.s3.get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
        checksum = location.checksum_sha256
        # A multipart upload's checksum is one of its parts' ("...-3"), not of the bytes.
        if checksum and "-" not in checksum:
            actual = base64.b64encode(hashlib.sha256(data).digest()).decode()
            if actual != checksum:
                raise ResultIntegrityError(
                    f"result of {notification.task_id}: SHA-256 {actual}, expected {checksum}"
                )
        return data


def _batches(pending: list[tuple[int, str, str]]) -> Iterator[list[tuple[int, str, str]]]:
    chunk: list[tuple[int, str, str]] = []
    size = 0
    for item in pending:
        length = len(item[2].encode())
        if chunk and (len(chunk) == SQS_BATCH_ENTRIES or size + length > SQS_BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += length
    if chunk:
        yield chunk


def _region_of(url: str) -> str:
    """The region of an ``<id>.execute-api.<region>.amazonaws.com`` URL."""
    parts = (urlsplit(url).hostname or "").split(".")
    if len(parts) >= 4 and parts[1] == "execute-api":
        return parts[2]
    raise BatonError("no region: pass region=..., or give the session one")
