"""A task message that intake rejects: the reason is logged and kept for ``baton dlq
list``, and the app that sent it is told, once per message (a ``rejected``
notification). The message still fails its batch item: SQS delivers it again, then its
dead-letter queue keeps it.

Who is told: the app the body names, when that can be read, and, with an app registry,
only if the app is registered and the message's sender is one of its senders (nobody
can have another app told of messages it never sent). What it says: the reason intake
gives (each field and problem, never a value of the message), the SQS message id, and
the ``algorithm`` and ``idempotency_key`` where they can be read (the key Baton would
have derived, for a message that gave none but parsed).

Once per message: the ``notification_id`` is derived from the SQS message id, so every
delivery would publish the same one, and a marker in Redis under the message id says
it is out, so a redelivery publishes nothing. The marker is first a claim, as an
outbox row is: two deliveries at once publish once; a delivery whose publish failed
gives the claim back and the next delivery publishes; one that died between SNS and
the marker leaves it to a delivery after the claim lapsed. At worst (that crash, or
Redis losing its data, or unreachable: then every delivery publishes), the app gets
a duplicate with the same ``notification_id``, which it drops as it drops any other.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import TypeAdapter, ValidationError

from baton.apps import sender_matches
from baton.contracts import (
    IdempotencyKey,
    Name,
    NotificationError,
    RejectedNotification,
    TaskMessage,
    derive_idempotency_key,
)
from baton.input_hygiene import duplicate_key
from baton.observability import logger
from baton.runtime import Runtime

NOTIFICATION_NAMESPACE = uuid.UUID("5b0f6f3e-8d51-4c1e-9a57-3f1f0c6e2a41")
"""The uuid5 namespace of rejected notifications' ids (``rejected:<message id>``)."""

REJECTION_CODE = "invalid_message"

KEEP_SECONDS = int(timedelta(days=14).total_seconds())
"""How long the marker and the reason live: SQS keeps a message at most 14 days (the
dead-letter queue's retention counts from the first send)."""

PUBLISH_CLAIM_SECONDS = 60
"""How long a delivery holds the right to publish before a later one may."""

_CLAIMED, _PUBLISHED = "claimed", "published"

_NAME: TypeAdapter[str] = TypeAdapter(Name)
_KEY: TypeAdapter[str] = TypeAdapter(IdempotencyKey)


@dataclass(frozen=True)
class Readable:
    """What a rejected body still tells, each field only where it is well formed."""

    app: str | None = None
    algorithm: str | None = None
    idempotency_key: str | None = None


class _Members(list[tuple[str, Any]]):
    """A JSON object as its members, duplicates included."""


def readable_fields(body: str | bytes) -> Readable:
    """The app, algorithm and idempotency key of a body intake refused, where each is
    there once and well formed; for a body that parses as a task message but gave no
    key, the key Baton would have derived. Never trusted for anything but telling."""
    try:
        document = json.loads(body, object_pairs_hook=_Members)
    except (ValueError, RecursionError):  # not JSON (or not text), or nested past reading
        return Readable()
    if not isinstance(document, _Members):
        return Readable()
    values: dict[str, Any] = {}
    twice: set[str] = set()
    for key, value in document:
        if key in values:
            twice.add(key)  # ambiguous: parsers disagree on which one counts
        values[key] = value

    def read(name: str, adapter: TypeAdapter[str]) -> str | None:
        if name in twice or not isinstance(values.get(name), str):
            return None
        try:
            return adapter.validate_python(values[name], strict=True)
        except ValidationError:
            return None

    idempotency_key = read("idempotency_key", _KEY)
    if "idempotency_key" not in values:
        idempotency_key = _derived_key(body)
    return Readable(read("app", _NAME), read("algorithm", _NAME), idempotency_key)


def _derived_key(body: str | bytes) -> str | None:
    try:
        message = TaskMessage.model_validate_json(body)
    except ValidationError:
        return None
    if duplicate_key(body) is not None:
        return None
    return derive_idempotency_key(message)


def rejected_notification_id(message_id: str) -> str:
    """The same for every delivery of one SQS message."""
    return str(uuid.uuid5(NOTIFICATION_NAMESPACE, f"rejected:{message_id}"))


def _marker_key(runtime: Runtime, message_id: str) -> str:
    return f"{runtime.settings.key_prefix}:rejected:{message_id}"


def _reason_key(runtime: Runtime, message_id: str) -> str:
    return f"{runtime.settings.key_prefix}:rejected:{message_id}:reason"


def report_rejection(
    runtime: Runtime, message_id: str, body: str, sender_id: str | None, reason: str
) -> RejectedNotification | None:
    """Log why a task message was rejected, keep the reason for the DLQ listing, and
    tell its app once (see the module). Returns the notification the app is told (or
    was told by an earlier delivery), or None when no app may be told."""
    readable = readable_fields(body)
    logger.warning(
        "task message rejected",
        message_id=message_id,
        app=readable.app,
        algorithm=readable.algorithm,
        idempotency_key=readable.idempotency_key,
        # An IAM unique id (and a role session name), not a secret: it tells the
        # operator who sent what ended in the DLQ.
        sender_id=sender_id,
        reason=reason,
    )
    client = runtime.queue.client
    try:
        client.set(_reason_key(runtime, message_id), reason, ex=KEEP_SECONDS)
    except redis.RedisError as exc:
        logger.warning("rejection reason not kept", message_id=message_id, error=type(exc).__name__)
    if readable.app is None or not _may_tell(runtime, readable.app, sender_id):
        return None
    notification = RejectedNotification(
        notification_id=rejected_notification_id(message_id),
        status="rejected",
        app=readable.app,
        algorithm=readable.algorithm,
        idempotency_key=readable.idempotency_key,
        message_id=message_id,
        error=NotificationError(code=REJECTION_CODE, message=reason),
    )
    _publish_once(runtime, notification)
    return notification


def _may_tell(runtime: Runtime, app: str, sender_id: str | None) -> bool:
    apps = runtime.config.apps
    if apps is None:  # open mode: any name is any sender's
        return True
    config = apps.get(app)
    return config is not None and sender_matches(sender_id, config.senders)


def _publish_once(runtime: Runtime, notification: RejectedNotification) -> bool:
    client = runtime.queue.client
    key = _marker_key(runtime, notification.message_id)
    log = {
        "message_id": notification.message_id,
        "app": notification.app,
        "idempotency_key": notification.idempotency_key,
        "notification_id": notification.notification_id,
    }
    marked = True
    try:
        if not client.set(key, _CLAIMED, nx=True, ex=PUBLISH_CLAIM_SECONDS):
            return False  # out already, or an earlier delivery is publishing it
    except redis.RedisError as exc:
        # Told at least once rather than never: the id stays the same.
        logger.warning("rejection marker unavailable", extra={**log, "error": type(exc).__name__})
        marked = False
    try:
        runtime.notifier.publish(notification)
    except (BotoCoreError, ClientError) as exc:
        logger.warning(
            "rejected notification not published yet",
            extra={**log, "error": type(exc).__name__},
        )
        if marked:
            _forget(client, key)  # the next delivery publishes it
        return False
    if marked:
        try:
            client.set(key, _PUBLISHED, ex=KEEP_SECONDS)
        except redis.RedisError as exc:  # the claim lapses: a later delivery repeats it
            logger.warning(
                "rejection marker not written", extra={**log, "error": type(exc).__name__}
            )
    logger.info("rejected notification published", extra=log)
    return True


def _forget(client: Any, key: str) -> None:
    with contextlib.suppress(redis.RedisError):  # the claim lapses on its own
        client.delete(key)


def kept_reasons(runtime: Runtime, message_ids: Iterable[str]) -> dict[str, str]:
    """The reasons intake kept for these messages (those it still has)."""
    ids = list(message_ids)
    if not ids:
        return {}
    client = runtime.queue.client
    # One GET each: in cluster mode the keys of several messages are in several slots.
    pipe = client.pipeline(transaction=False)
    for message_id in ids:
        pipe.get(_reason_key(runtime, message_id))
    found = pipe.execute()
    return {
        message_id: value.decode() if isinstance(value, bytes) else str(value)
        for message_id, value in zip(ids, found, strict=True)
        if value is not None
    }
