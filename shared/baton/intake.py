"""Intake: validate a task message, check that its app may send it, and store it once
(steps 1-3). The same queue carries the apps' cancel messages (``baton.cancellation``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import ValidationError

from baton.apps import AppRegistry, sender_matches
from baton.cancellation import accept_cancel_message, parse_cancel_message
from baton.contracts import TaskMessage, derive_idempotency_key
from baton.errors import InvalidTaskMessage
from baton.faults import crash_point
from baton.input_hygiene import describe_validation_error, duplicate_key, inspect_json
from baton.models import Task
from baton.observability import logger
from baton.outbox import publish_notification, republish_notification
from baton.records import NewTask
from baton.registry import AlgorithmRegistry
from baton.rejections import report_rejection
from baton.runtime import Runtime
from baton.scheduling import run_fast_path

__all__ = [
    "AcceptedTask",
    "accept_cancel",
    "accept_task_message",
    # The SDK's derivation, the one a business app applies before it sends: the same
    # message has the same key on both sides (and keeps the key it always had).
    "derive_idempotency_key",
    "enforce_app_registry",
    "ingest_task_batch",
    "is_cancel_message",
    "parse_task_message",
]


@dataclass(frozen=True)
class AcceptedTask:
    task_id: str
    algorithm: str
    created: bool


def parse_task_message(runtime: Runtime, body: str | bytes) -> TaskMessage:
    """The validated message, or ``InvalidTaskMessage`` saying what is wrong and where."""
    return _parse_task_message(runtime, body, runtime.config.registry)


def _parse_task_message(
    runtime: Runtime, body: str | bytes, registry: AlgorithmRegistry
) -> TaskMessage:
    settings = runtime.settings
    try:
        size = len(body.encode() if isinstance(body, str) else body)
    except UnicodeEncodeError:
        raise InvalidTaskMessage("body: not valid UTF-8 text") from None
    if size > settings.max_message_bytes:
        raise InvalidTaskMessage(
            f"body: message is {size} bytes; the limit is {settings.max_message_bytes}"
        )
    try:
        message = TaskMessage.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidTaskMessage(describe_validation_error(exc)) from None
    for name, value in (("input", message.input), ("metadata", message.metadata)):
        depth, non_finite = inspect_json(value)
        if depth > settings.max_input_depth:
            raise InvalidTaskMessage(
                f"{name}: nested deeper than {settings.max_input_depth} levels"
            )
        if non_finite is not None:
            raise InvalidTaskMessage(
                f"{name}{non_finite}: NaN, Infinity and numbers beyond the float range "
                "are not JSON numbers"
            )
    duplicate = duplicate_key(body)
    if duplicate is not None:
        raise InvalidTaskMessage(f"{duplicate}: duplicate key in one JSON object")
    if message.algorithm not in registry:
        raise InvalidTaskMessage(f"algorithm: {message.algorithm!r} is not registered")
    algorithm = registry[message.algorithm]
    limit = algorithm.timeout_limit_seconds
    if message.timeout_seconds is not None and message.timeout_seconds > limit:
        raise InvalidTaskMessage(
            f"timeout_seconds: above the limit of {limit} for algorithm {message.algorithm!r}"
        )
    for name in ("queue_timeout_seconds", "total_timeout_seconds"):
        asked, bound = getattr(message, name), getattr(algorithm, name)
        if asked is not None and bound is not None and asked > bound:
            raise InvalidTaskMessage(
                f"{name}: above the limit of {bound} for algorithm {message.algorithm!r}"
            )
    if message.cost > algorithm.largest_cost:
        raise InvalidTaskMessage(
            f"cost: above {algorithm.largest_cost}, the most algorithm "
            f"{message.algorithm!r} can run at once on one endpoint"
        )
    return message


def enforce_app_registry(
    apps: AppRegistry | None, app: str, sender_id: str | None, priority: int | None = None
) -> None:
    """Invariant 9 at intake: with an app registry, a message is accepted for ``app`` only
    if the app is registered, the SQS sender is one of its senders, and the priority (of
    a task message) is within its bound. Without one (open mode), anything goes."""
    if apps is None:
        return
    config = apps.get(app)
    if config is None:
        raise InvalidTaskMessage(f"app: {app!r} is not registered")
    if not sender_matches(sender_id, config.senders):
        raise InvalidTaskMessage("app: sender is not one of the app's senders")
    if priority is not None and priority > config.max_priority:
        raise InvalidTaskMessage(f"priority: above the app's max_priority of {config.max_priority}")


def _after(moment: datetime, seconds: int | None) -> datetime | None:
    return None if seconds is None else moment + timedelta(seconds=seconds)


def accept_task_message(
    runtime: Runtime, body: str | bytes, sender_id: str | None = None
) -> AcceptedTask:
    """Step 3: validate and store one task message; a redelivered duplicate is a success.

    ``sender_id`` is the SQS record's ``SenderId``: with an app registry, a message
    without one is refused.
    """
    new = new_task_of(runtime, body, sender_id, runtime.config.registry)
    task, created = runtime.repository.add_task(new)
    crash_point("intake.after_task_commit")
    return _announce_stored(runtime, task, created)


def new_task_of(
    runtime: Runtime, body: str | bytes, sender_id: str | None, registry: AlgorithmRegistry
) -> NewTask:
    """The task a message asks for, validated and checked against the app registry,
    with the algorithm's defaults filled in (``registry``: one copy for the whole
    message, so that a refresh in between cannot check it against one and store it
    against the other)."""
    message = _parse_task_message(runtime, body, registry)
    enforce_app_registry(runtime.config.apps, message.app, sender_id, message.priority)
    algorithm = registry[message.algorithm]
    now = runtime.clock()
    return NewTask(
        id=str(uuid.uuid4()),
        app=message.app,
        algorithm=message.algorithm,
        idempotency_key=message.idempotency_key or derive_idempotency_key(message),
        priority=message.priority,
        input=message.input,
        metadata=message.metadata,
        timeout_seconds=message.timeout_seconds or algorithm.timeout_seconds,
        max_attempts=message.max_attempts or algorithm.max_attempts,
        not_before=max(message.not_before or now, now),
        created_at=now,
        cost=message.cost,
        queue_deadline=_after(
            now, message.queue_timeout_seconds or algorithm.queue_timeout_seconds
        ),
        total_deadline=_after(
            now, message.total_timeout_seconds or algorithm.total_timeout_seconds
        ),
        attempt_budget=message.max_attempts,
    )


def _announce_stored(runtime: Runtime, task: Task, created: bool) -> AcceptedTask:
    """What follows a task message's store: a new task is logged; one whose cancel came
    first, or a duplicate of a final task, has its notification published."""
    if created and task.status.is_terminal:
        # Its cancel came first: stored cancelled, never dispatched, announced once.
        logger.info(
            "task arrived after its cancel",
            task_id=task.id,
            app=task.app,
            idempotency_key=task.idempotency_key,
        )
        publish_notification(runtime, task.id, task)
        return AcceptedTask(task.id, task.algorithm, created=False)
    if created:
        logger.info(
            "task accepted",
            task_id=task.id,
            app=task.app,
            algorithm=task.algorithm,
            idempotency_key=task.idempotency_key,
        )
    elif task.status.is_terminal:
        # The design's way for an app to get a lost notification back: send the
        # message again.
        logger.info(
            "duplicate of a final task: its notification is published again",
            task_id=task.id,
            app=task.app,
            idempotency_key=task.idempotency_key,
            status=task.status.value,
        )
        republish_notification(runtime, task)
    else:
        logger.info(
            "duplicate task message ignored",
            task_id=task.id,
            app=task.app,
            idempotency_key=task.idempotency_key,
        )
    return AcceptedTask(task.id, task.algorithm, created)


def is_cancel_message(body: str | bytes) -> bool:
    """A cancel message has ``cancel`` at its top level and no ``algorithm``; anything
    else is read (and refused, if need be) as a task message."""
    marker = '"cancel"' if isinstance(body, str) else b'"cancel"'
    if marker not in body:  # type: ignore[operator]  # str in str, bytes in bytes
        return False
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and "cancel" in data and "algorithm" not in data


def accept_cancel(runtime: Runtime, body: str | bytes, sender_id: str | None = None) -> str:
    """A cancel message: validated, its sender checked like a task message's, then
    applied (``baton.cancellation``); returns what it did."""
    size = len(body.encode() if isinstance(body, str) else body)
    if size > runtime.settings.max_message_bytes:
        raise InvalidTaskMessage(
            f"body: message is {size} bytes; the limit is {runtime.settings.max_message_bytes}"
        )
    message = parse_cancel_message(body)
    enforce_app_registry(runtime.config.apps, message.app, sender_id)
    return accept_cancel_message(runtime, message).outcome.value


def store_task_messages(
    runtime: Runtime, records: Iterable[SQSRecord]
) -> dict[str, tuple[Task, bool] | Exception]:
    """Step 3 for a batch: every task message (cancel messages are left for their
    turn) validated, then all the valid ones stored in one transaction
    (``Repository.add_tasks``); by message id, the stored task and whether it is new,
    or what was wrong with the message. Should the batch's transaction fail, its tasks
    are stored one by one, so that a task the database refuses fails alone."""
    registry = runtime.config.registry
    outcomes: dict[str, tuple[Task, bool] | Exception] = {}
    news: dict[str, NewTask] = {}
    for record in records:
        try:
            if is_cancel_message(record.body):
                continue
            news[record.message_id] = new_task_of(
                runtime, record.body, record.attributes.get("SenderId"), registry
            )
        except Exception as exc:  # the record's own failure, raised again in its turn
            outcomes[record.message_id] = exc
    if not news:
        return outcomes
    try:
        stored = runtime.repository.add_tasks(list(news.values()))
    except Exception as exc:
        logger.warning(
            "intake batch not stored at once; storing its tasks one by one",
            error=type(exc).__name__,
        )
        for message_id, new in news.items():
            try:
                outcomes[message_id] = runtime.repository.add_task(new)
            except Exception as single:
                outcomes[message_id] = single
    else:
        outcomes.update(zip(news, stored, strict=True))
    crash_point("intake.after_task_commit")
    return outcomes


def ingest_task_batch(runtime: Runtime, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Steps 1-2: accept an SQS batch: bad records become batch item failures (SQS retries them,
    then moves them to the DLQ), good ones are stored regardless, in one transaction;
    new tasks then go straight to promotion and dispatch when their algorithm has a
    free slot."""
    touched: set[str] = set()
    stored = store_task_messages(runtime, (SQSRecord(raw) for raw in event.get("Records") or []))

    def accept_record(record: SQSRecord) -> str:
        sender_id: str | None = record.attributes.get("SenderId")
        # Every line logged about this message names it (this thread's lines only).
        logger.thread_safe_append_keys(message_id=record.message_id)
        try:
            if is_cancel_message(record.body):
                return accept_cancel(runtime, record.body, sender_id)
            outcome = stored[record.message_id]
            if isinstance(outcome, Exception):
                raise outcome
            accepted = _announce_stored(runtime, *outcome)
        except InvalidTaskMessage as exc:
            report_rejection(runtime, record.message_id, record.body, sender_id, str(exc))
            raise
        finally:
            logger.thread_safe_remove_keys(["message_id"])
        if accepted.created:
            touched.add(accepted.algorithm)
        return accepted.task_id

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=event, record_handler=accept_record, processor=processor, context=context
    )
    run_fast_path(runtime, touched)
    return dict(response)
