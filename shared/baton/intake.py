"""Intake: validate a task message and store it once (steps 1-3)."""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import ValidationError

from baton.contracts import TaskMessage
from baton.errors import InvalidTaskMessage
from baton.faults import crash_point
from baton.observability import logger
from baton.repository import NewTask
from baton.runtime import Runtime
from baton.scheduling import run_fast_path


@dataclass(frozen=True)
class AcceptedTask:
    task_id: str
    algorithm: str
    created: bool


MAX_REPORTED_PROBLEMS = 10
"""A body with thousands of bad fields gets a reason of bounded size."""

MAX_FIELD_NAME_CHARS = 64


def field_name(part: object, limit: int = MAX_FIELD_NAME_CHARS) -> str:
    """A field name (or list index) fit for a reason: control characters escaped, and a
    key of any length shortened, so that a hostile name cannot flood a log or an answer."""
    text = "".join(
        char if char.isprintable() else f"\\u{ord(char):04x}" for char in str(part)[: limit + 1]
    )
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def describe_validation_error(exc: ValidationError) -> str:
    """'field.path: problem' for each error, without echoing the offending values."""
    errors = exc.errors(include_input=False, include_url=False)
    problems = []
    for error in errors[:MAX_REPORTED_PROBLEMS]:
        where = ".".join(field_name(part) for part in error["loc"]) or "body"
        problems.append(f"{where}: {error['msg']}")
    if len(errors) > MAX_REPORTED_PROBLEMS:
        problems.append(f"and {len(errors) - MAX_REPORTED_PROBLEMS} more problems")
    return "; ".join(problems)


def json_depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value, iteratively (a deep bomb cannot overflow)."""
    return _inspect_json(value)[0]


def _inspect_json(value: Any) -> tuple[int, str | None]:
    """The nesting depth of a parsed JSON value, and the path of its first number
    that JSON cannot carry (NaN, Infinity, or a float too large: 1e400), if any.
    Iterative, so a deep bomb cannot overflow the stack."""
    deepest = 0
    non_finite: str | None = None
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        item, depth, path = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend(
                (child, depth + 1, f"{path}.{field_name(key)}") for key, child in item.items()
            )
        elif isinstance(item, list):
            stack.extend((child, depth + 1, f"{path}.{index}") for index, child in enumerate(item))
        elif isinstance(item, float) and not math.isfinite(item) and non_finite is None:
            non_finite = path
    return deepest, non_finite


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as the list of its members, duplicates included."""


def duplicate_key(text: str | bytes) -> str | None:
    """The path of the first key that appears twice in one JSON object, or None.

    JSON parsers disagree on duplicates (first wins, last wins, error), so a body that
    has any is ambiguous: Baton refuses it rather than silently keep one value. Call
    it on text that already parsed (the depth is bounded by then).
    """
    document = json.loads(text, object_pairs_hook=_Pairs)
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, _Pairs):
            seen: set[str] = set()
            for key, child in value:
                where = f"{path}.{field_name(key)}" if path else field_name(key)
                if key in seen:
                    return where
                seen.add(key)
                stack.append((child, where))
        elif isinstance(value, list):
            stack.extend((child, f"{path}.{index}") for index, child in enumerate(value))
    return None


def parse_task_message(runtime: Runtime, body: str | bytes) -> TaskMessage:
    """The validated message, or ``InvalidTaskMessage`` saying what is wrong and where."""
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
        depth, non_finite = _inspect_json(value)
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
    registry = runtime.config.registry
    if message.algorithm not in registry:
        raise InvalidTaskMessage(f"algorithm: {message.algorithm!r} is not registered")
    limit = registry[message.algorithm].timeout_limit_seconds
    if message.timeout_seconds is not None and message.timeout_seconds > limit:
        raise InvalidTaskMessage(
            f"timeout_seconds: above the limit of {limit} for algorithm {message.algorithm!r}"
        )
    return message


def derive_idempotency_key(message: TaskMessage) -> str:
    """The same message content is the same task, however often it is delivered."""
    canonical = json.dumps(
        message.model_dump(mode="json", exclude={"idempotency_key"}),
        sort_keys=True,
        separators=(",", ":"),
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def accept_task_message(runtime: Runtime, body: str | bytes) -> AcceptedTask:
    """Validate and store one task message; a redelivered duplicate is a success."""
    message = parse_task_message(runtime, body)
    algorithm = runtime.config.registry[message.algorithm]
    now = runtime.clock()
    new = NewTask(
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
    )
    task, created = runtime.repository.add_task(new)
    crash_point("intake.after_task_commit")
    if created:
        logger.info("task accepted", task_id=task.id, app=task.app, algorithm=task.algorithm)
    else:
        logger.info(
            "duplicate task message ignored",
            task_id=task.id,
            app=task.app,
            idempotency_key=task.idempotency_key,
        )
    return AcceptedTask(task.id, task.algorithm, created)


def ingest_task_batch(runtime: Runtime, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Accept an SQS batch: bad records become batch item failures (SQS retries them,
    then moves them to the DLQ), good ones are stored regardless; new tasks then go
    straight to promotion and dispatch when their algorithm has a free slot."""
    touched: set[str] = set()

    def accept_record(record: SQSRecord) -> str:
        try:
            accepted = accept_task_message(runtime, record.body)
        except InvalidTaskMessage as exc:
            logger.warning("task message rejected", message_id=record.message_id, reason=str(exc))
            raise
        if accepted.created:
            touched.add(accepted.algorithm)
        return accepted.task_id

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=event, record_handler=accept_record, processor=processor, context=context
    )
    run_fast_path(runtime, touched)
    return dict(response)
