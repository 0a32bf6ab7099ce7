"""Input hygiene for anything that arrives from outside (SQS bodies, API requests):
error descriptions that name each field and problem without echoing a value, bounded
JSON depth, numbers JSON cannot carry, and duplicate keys.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from baton.errors import InvalidRequest, PayloadTooLarge

M = TypeVar("M", bound=BaseModel)
MAX_BODY_BYTES = 64 * 1024
"""What the callback and status APIs take in one request body."""

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
    return inspect_json(value)[0]


def inspect_json(value: Any) -> tuple[int, str | None]:
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


def request_body_bytes(body: str | None, base64_encoded: bool) -> tuple[bytes, str | None]:
    """An API request's body as bytes, and what is wrong with its encoding, if anything.

    API Gateway hands over text, or base64 when it treats the body as binary; neither
    has to be valid (a caller can send any bytes), so a bad one is a 422, never a crash.
    """
    if not body:
        return b"", None
    if base64_encoded:
        try:
            return base64.b64decode(body, validate=True), None
        except (binascii.Error, ValueError):
            return body.encode(errors="replace"), "body: not valid base64"
    try:
        return body.encode(), None
    except UnicodeEncodeError:
        return body.encode(errors="replace"), "body: not valid UTF-8 text"


def check_body_size(raw: bytes) -> None:
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"body is over {MAX_BODY_BYTES} bytes")


def parse_request_body(raw: bytes, encoding_problem: str | None, model: type[M]) -> M:
    """The validated body (an empty one read as ``null``), or ``InvalidRequest`` naming
    each field and problem."""
    if encoding_problem is not None:
        raise InvalidRequest(encoding_problem)
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise InvalidRequest("body: not valid UTF-8 text") from None
    try:
        body = model.model_validate_json(text or "null")
    except ValidationError as exc:
        raise InvalidRequest(describe_validation_error(exc)) from None
    duplicate = duplicate_key(text)
    if duplicate is not None:
        raise InvalidRequest(f"{duplicate}: duplicate key in one JSON object")
    return body
