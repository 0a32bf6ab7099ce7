"""The task message contract: what intake accepts, and for everything else an
InvalidTaskMessage that names the field without echoing the offending value."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import baton_sdk.contracts
import pytest
from baton.contracts import MAX_PRIORITY, TaskMessage
from baton.errors import InvalidTaskMessage
from baton.input_hygiene import json_depth
from baton.intake import derive_idempotency_key, parse_task_message
from baton.registry import AlgorithmRegistry
from baton.settings import load_settings

REGISTRY = {
    "ocr": {
        "endpoint": "https://ocr.example.com/run",
        "max_concurrency": 4,
        "timeout_seconds": 900,
        "max_timeout_seconds": 3600,
    },
    "nlp": {"endpoint": "https://nlp.example.com/run", "max_concurrency": 2, "timeout_seconds": 60},
}
MAX_BYTES = 4096
MAX_DEPTH = 6
SECRET = "sk_live_51HcQeRT9xYzAbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefSECRET"


def make_runtime(**settings: str) -> SimpleNamespace:
    environ = {
        "BATON_DATABASE_URL": "sqlite://",
        "BATON_REDIS_URL": "redis://127.0.0.1:6379/0",
        "BATON_RESULT_BUCKET": "results-bucket",
        "BATON_NOTIFICATION_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:baton",
        "BATON_CALLBACK_BASE_URL": "https://api.example.com/prod",
        "BATON_TOKEN_SECRET": "unit-test-token-secret-0123456789abcdef",
        "BATON_ALGORITHMS": json.dumps(REGISTRY),
    } | {f"BATON_{name.upper()}": value for name, value in settings.items()}
    return SimpleNamespace(
        settings=load_settings(environ),
        config=SimpleNamespace(registry=AlgorithmRegistry.from_json(json.dumps(REGISTRY))),
    )


RUNTIME = make_runtime(max_message_bytes=str(MAX_BYTES), max_input_depth=str(MAX_DEPTH))
DEFAULT_RUNTIME = make_runtime()

MINIMAL: dict[str, Any] = {"app": "contracts", "algorithm": "ocr", "input": {}}
FULL: dict[str, Any] = {
    "app": "contracts-app_v2.1",
    "algorithm": "ocr",
    "input": {"document": "s3://in/doc.pdf", "pages": [1, 2, 3], "options": {"lang": "de"}},
    "idempotency_key": "contract-42:v1",
    "priority": 10,
    "timeout_seconds": 1800,
    "max_attempts": 5,
    "not_before": "2030-01-01T08:30:00+02:00",
    "metadata": {"customer": "acme", "trace": {"id": "abc"}},
}


def parse(body: str | bytes, runtime: SimpleNamespace = RUNTIME) -> TaskMessage:
    return parse_task_message(runtime, body)  # type: ignore[arg-type]


DROP = object()


def message_with(**changes: Any) -> str:
    document = dict(MINIMAL)
    for name, value in changes.items():
        if value is DROP:
            document.pop(name, None)
        else:
            document[name] = value
    return json.dumps(document)


def rejection(body: str | bytes, runtime: SimpleNamespace = RUNTIME) -> str:
    with pytest.raises(InvalidTaskMessage) as caught:
        parse(body, runtime)
    return str(caught.value)


def names_field(message: str, field: str) -> bool:
    """The message has a 'field: ...' or 'field.sub: ...' problem."""
    return re.search(rf"(^|; ){re.escape(field)}(\.[^:]*)?: ", message) is not None


def nested(depth: int) -> dict[str, Any]:
    """A JSON object whose json_depth is exactly ``depth`` (>= 2)."""
    value: Any = 1
    for _ in range(depth - 1):
        value = {"a": value}
    return value  # type: ignore[no-any-return]


# -- accepted ------------------------------------------------------------------------------


def test_minimal_message_gets_the_defaults() -> None:
    message = parse(json.dumps(MINIMAL))
    assert (message.app, message.algorithm, message.input) == ("contracts", "ocr", {})
    assert message.idempotency_key is None
    assert message.priority == 0
    assert message.timeout_seconds is None
    assert message.max_attempts is None
    assert message.not_before is None
    assert message.metadata == {}


def test_full_message_keeps_every_field() -> None:
    message = parse(json.dumps(FULL))
    assert message.app == "contracts-app_v2.1"
    assert message.input == FULL["input"]
    assert message.idempotency_key == "contract-42:v1"
    assert (message.priority, message.timeout_seconds, message.max_attempts) == (10, 1800, 5)
    assert message.not_before == datetime(2030, 1, 1, 6, 30, tzinfo=UTC)
    assert message.not_before is not None
    assert message.not_before.utcoffset() == timedelta(hours=2)
    assert message.metadata == FULL["metadata"]


def test_utf8_bytes_body_is_accepted() -> None:
    body = json.dumps({**MINIMAL, "input": {"text": "Grüße, 東京"}}, ensure_ascii=False)
    assert parse(body.encode()).input == {"text": "Grüße, 東京"}


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"app": "a"}, id="app-1-char"),
        pytest.param({"app": "a" * 64}, id="app-64-chars"),
        pytest.param({"app": "A.b_c-9"}, id="app-all-classes"),
        pytest.param({"priority": MAX_PRIORITY}, id="priority-max"),
        pytest.param({"priority": -MAX_PRIORITY}, id="priority-min"),
        pytest.param({"timeout_seconds": 1}, id="timeout-1"),
        pytest.param({"timeout_seconds": 3600}, id="timeout-at-limit"),
        pytest.param({"algorithm": "nlp", "timeout_seconds": 60}, id="timeout-at-default-limit"),
        pytest.param({"max_attempts": 1}, id="attempts-1"),
        pytest.param({"max_attempts": 100}, id="attempts-100"),
        pytest.param({"idempotency_key": "k"}, id="key-1-char"),
        pytest.param({"idempotency_key": "k" * 200}, id="key-200-chars"),
        pytest.param({"idempotency_key": "!~:/#"}, id="key-punctuation"),
        pytest.param({"not_before": "2030-01-01T00:00:00Z"}, id="not-before-z"),
        pytest.param({"not_before": "2030-01-01T00:00:00-05:00"}, id="not-before-offset"),
        pytest.param({"input": nested(MAX_DEPTH)}, id="input-at-depth-limit"),
        pytest.param({"metadata": nested(MAX_DEPTH)}, id="metadata-at-depth-limit"),
        pytest.param({"input": {"list": [1, "two", None, True, 1.5]}}, id="input-any-json"),
    ],
)
def test_boundary_values_are_accepted(changes: dict[str, Any]) -> None:
    parse(message_with(**changes))


def test_body_of_exactly_the_limit_is_accepted() -> None:
    body = message_with(metadata={"pad": ""})
    body = message_with(metadata={"pad": "x" * (MAX_BYTES - len(body.encode()))})
    assert len(body.encode()) == MAX_BYTES
    parse(body)


# -- rejected, naming the field ------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "changes"),
    [
        pytest.param("app", {"app": DROP}, id="app-missing"),
        pytest.param("algorithm", {"algorithm": DROP}, id="algorithm-missing"),
        pytest.param("input", {"input": DROP}, id="input-missing"),
        pytest.param("colour", {"colour": "red"}, id="unknown-field"),
        pytest.param("app", {"app": "my app"}, id="app-space"),
        pytest.param("app", {"app": "a" * 65}, id="app-65-chars"),
        pytest.param("app", {"app": ""}, id="app-empty"),
        pytest.param("app", {"app": "app/1"}, id="app-slash"),
        pytest.param("app", {"app": "äpp"}, id="app-non-ascii"),
        pytest.param("app", {"app": 7}, id="app-number"),
        pytest.param("algorithm", {"algorithm": "o cr"}, id="algorithm-space"),
        pytest.param("input", {"input": [1, 2]}, id="input-list"),
        pytest.param("input", {"input": "text"}, id="input-string"),
        pytest.param("input", {"input": None}, id="input-null"),
        pytest.param("input", {"input": 3}, id="input-number"),
        pytest.param("priority", {"priority": "5"}, id="priority-string"),
        pytest.param("priority", {"priority": 5.0}, id="priority-float"),
        pytest.param("priority", {"priority": 5.5}, id="priority-fraction"),
        pytest.param("priority", {"priority": True}, id="priority-bool"),
        pytest.param("priority", {"priority": None}, id="priority-null"),
        pytest.param("priority", {"priority": MAX_PRIORITY + 1}, id="priority-above"),
        pytest.param("priority", {"priority": -MAX_PRIORITY - 1}, id="priority-below"),
        pytest.param("timeout_seconds", {"timeout_seconds": 0}, id="timeout-0"),
        pytest.param("timeout_seconds", {"timeout_seconds": -5}, id="timeout-negative"),
        pytest.param("timeout_seconds", {"timeout_seconds": "60"}, id="timeout-string"),
        pytest.param("timeout_seconds", {"timeout_seconds": 3601}, id="timeout-above-limit"),
        pytest.param(
            "timeout_seconds",
            {"algorithm": "nlp", "timeout_seconds": 61},
            id="timeout-above-default-limit",
        ),
        pytest.param("max_attempts", {"max_attempts": 0}, id="attempts-0"),
        pytest.param("max_attempts", {"max_attempts": 101}, id="attempts-101"),
        pytest.param("max_attempts", {"max_attempts": "3"}, id="attempts-string"),
        pytest.param("not_before", {"not_before": "2030-01-01T00:00:00"}, id="nb-no-offset"),
        pytest.param("not_before", {"not_before": "tomorrow"}, id="nb-text"),
        pytest.param("not_before", {"not_before": 1893456000}, id="nb-epoch"),
        pytest.param("idempotency_key", {"idempotency_key": ""}, id="key-empty"),
        pytest.param("idempotency_key", {"idempotency_key": "a b"}, id="key-space"),
        pytest.param("idempotency_key", {"idempotency_key": "k" * 201}, id="key-201-chars"),
        pytest.param("idempotency_key", {"idempotency_key": "clé"}, id="key-non-ascii"),
        pytest.param("idempotency_key", {"idempotency_key": "a\tb"}, id="key-tab"),
        pytest.param("idempotency_key", {"idempotency_key": 42}, id="key-number"),
        pytest.param("metadata", {"metadata": ["a"]}, id="metadata-list"),
        pytest.param("metadata", {"metadata": "a"}, id="metadata-string"),
        pytest.param("metadata", {"metadata": None}, id="metadata-null"),
        pytest.param("input", {"input": nested(MAX_DEPTH + 1)}, id="input-too-deep"),
        pytest.param("metadata", {"metadata": nested(MAX_DEPTH + 1)}, id="metadata-too-deep"),
        pytest.param("algorithm", {"algorithm": "translate"}, id="algorithm-unregistered"),
        pytest.param("algorithm", {"algorithm": "OCR"}, id="algorithm-wrong-case"),
    ],
)
def test_contract_violation_names_the_field(field: str, changes: dict[str, Any]) -> None:
    message = rejection(message_with(**changes))
    assert names_field(message, field), message


def test_unregistered_algorithm_says_so() -> None:
    assert "not registered" in rejection(message_with(algorithm="translate"))


def test_timeout_above_the_limit_says_the_limit() -> None:
    message = rejection(message_with(timeout_seconds=3601))
    assert "3600" in message
    assert "ocr" in message


def test_every_missing_field_is_reported_at_once() -> None:
    message = rejection("{}")
    for field in ("app", "algorithm", "input"):
        assert names_field(message, field), message


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("not json", id="text"),
        pytest.param("", id="empty"),
        pytest.param('{"app": "a",', id="truncated"),
        pytest.param("[]", id="array"),
        pytest.param("null", id="null"),
        pytest.param('"a string"', id="string"),
        pytest.param(b"\xff\xfe\x00{", id="binary"),
        pytest.param(b'{"app":"a\xff","algorithm":"ocr","input":{}}', id="invalid-utf8"),
        pytest.param(b'{"app":"\xc3","algorithm":"ocr","input":{}}', id="truncated-utf8"),
        pytest.param("[" * 5000 + "]" * 5000, id="deep-array-bomb"),
        pytest.param('{"input":' * 2000 + "{}" + "}" * 2000, id="deep-object-bomb"),
    ],
)
def test_body_that_is_not_a_json_object_is_rejected_as_body(body: str | bytes) -> None:
    message = rejection(body, make_runtime())
    assert names_field(message, "body"), message


@pytest.mark.parametrize("extra", [1, 1000])
def test_body_over_the_size_limit_says_its_size(extra: int) -> None:
    body = message_with(metadata={"pad": ""})
    body = message_with(metadata={"pad": "x" * (MAX_BYTES - len(body.encode()) + extra)})
    size = len(body.encode())
    message = rejection(body)
    assert names_field(message, "body")
    assert str(size) in message
    assert str(MAX_BYTES) in message


def test_size_limit_counts_bytes_not_characters() -> None:
    # 1500 three-byte characters: well under the limit in characters, over it in bytes
    body = json.dumps({**MINIMAL, "input": {"text": "東" * 1500}}, ensure_ascii=False)
    assert len(body) < MAX_BYTES < len(body.encode())
    assert str(len(body.encode())) in rejection(body)


def test_default_size_limit_is_256_kib() -> None:
    body = message_with(input={"pad": "x" * (256 * 1024)})
    assert names_field(rejection(body, DEFAULT_RUNTIME), "body")


def test_depth_limit_says_the_limit() -> None:
    message = rejection(message_with(input=nested(MAX_DEPTH + 1)))
    assert f"deeper than {MAX_DEPTH}" in message


def test_deep_list_counts_toward_depth() -> None:
    deep: Any = []
    for _ in range(MAX_DEPTH):
        deep = [deep]
    assert names_field(rejection(message_with(input={"list": deep})), "input")


# -- no echo of the offending value ------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"app": SECRET[:63] + "!"}, id="app"),
        pytest.param({"algorithm": SECRET}, id="algorithm-too-long"),
        pytest.param({"idempotency_key": SECRET + " x"}, id="idempotency-key"),
        pytest.param({"priority": SECRET}, id="priority"),
        pytest.param({"timeout_seconds": SECRET}, id="timeout"),
        pytest.param({"max_attempts": SECRET}, id="max-attempts"),
        pytest.param({"not_before": SECRET}, id="not-before"),
        pytest.param({"input": SECRET}, id="input"),
        pytest.param({"metadata": SECRET}, id="metadata"),
        pytest.param({"api_key": SECRET}, id="unknown-field-value"),
        pytest.param({"input": {"secret": SECRET}, "priority": "1"}, id="valid-input-other-error"),
    ],
)
def test_rejection_never_echoes_a_secret_like_value(changes: dict[str, Any]) -> None:
    message = rejection(message_with(**changes))
    assert SECRET not in message
    assert SECRET[:24] not in message


def test_rejection_of_invalid_json_does_not_echo_the_body() -> None:
    message = rejection('{"app": "' + SECRET + '", broken')
    assert SECRET[:24] not in message


# -- json_depth ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "depth"),
    [
        (1, 1),
        ("s", 1),
        (None, 1),
        ({}, 1),
        ([], 1),
        ({"a": 1}, 2),
        ([1, 2, 3], 2),
        ({"a": {"b": {}}}, 3),
        ({"a": [1, {"b": [None]}], "c": 1}, 5),
        (nested(10), 10),
    ],
)
def test_json_depth(value: Any, depth: int) -> None:
    assert json_depth(value) == depth


def test_json_depth_of_a_very_deep_value_does_not_overflow_the_stack() -> None:
    deep: Any = {}
    for _ in range(20_000):
        deep = {"a": deep}
    assert json_depth(deep) == 20_001


# -- derived idempotency key -----------------------------------------------------------


def test_same_content_gives_the_same_key_whatever_the_order_and_whitespace() -> None:
    first = parse(json.dumps(FULL))
    reordered = {key: FULL[key] for key in reversed(list(FULL))}
    reordered["input"] = {key: FULL["input"][key] for key in reversed(list(FULL["input"]))}
    second = parse(json.dumps(reordered, indent=4, separators=(" , ", " : ")))
    assert derive_idempotency_key(first) == derive_idempotency_key(second)


def test_explicit_idempotency_key_does_not_change_the_derived_one() -> None:
    without = parse(message_with(input={"doc": 1}))
    with_key = parse(message_with(input={"doc": 1}, idempotency_key="given"))
    assert derive_idempotency_key(without) == derive_idempotency_key(with_key)


@pytest.mark.parametrize(
    "changes",
    [
        {"input": {"doc": 2}},
        {"input": {"doc": "1"}},
        {"input": {"doc": 1, "extra": None}},
        {"input": {"Doc": 1}},
        {"app": "other-app"},
        {"algorithm": "nlp"},
        {"priority": 1},
        {"metadata": {"m": 1}},
        {"not_before": "2030-01-01T00:00:00Z"},
        {"max_attempts": 2},
        {"timeout_seconds": 30},
    ],
)
def test_different_content_gives_a_different_key(changes: dict[str, Any]) -> None:
    base = parse(message_with(input={"doc": 1}))
    other = parse(message_with(**({"input": {"doc": 1}} | changes)))
    assert derive_idempotency_key(base) != derive_idempotency_key(other)


def test_derived_key_is_itself_a_valid_idempotency_key() -> None:
    key = derive_idempotency_key(parse(json.dumps(FULL)))
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", key)
    parse(message_with(idempotency_key=key))


def test_utc_written_as_z_or_as_offset_gives_the_same_key() -> None:
    utc = parse(message_with(not_before="2030-01-01T00:00:00+00:00"))
    z = parse(message_with(not_before="2030-01-01T00:00:00Z"))
    assert derive_idempotency_key(utc) == derive_idempotency_key(z)
    assert utc.not_before == datetime(2030, 1, 1, tzinfo=timezone(timedelta(0)))


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        (FULL, "sha256:ad7e3c256909953864ad3a432ce70e687db09d1d001ed708fc2ca8ac2fbebe1f"),
        (
            {"app": "contracts", "algorithm": "ocr", "input": {"document": "doc-1"}},
            "sha256:12e6563d8cbe900b64b65a15740067ee96f34e2fccc8fa648839d541de87e715",
        ),
        (
            {"app": "contracts", "algorithm": "ocr", "input": {"document": "doc-1"}, "cost": 1},
            "sha256:12e6563d8cbe900b64b65a15740067ee96f34e2fccc8fa648839d541de87e715",
        ),
        (
            {"app": "contracts", "algorithm": "ocr", "input": {"document": "doc-1"}, "cost": 3},
            "sha256:8975725ef0c9e4cee607d9949b493de2f40e75754eb4feece722e1821103e281",
        ),
    ],
)
def test_derived_keys_of_known_messages_never_change(fields: dict[str, Any], key: str) -> None:
    # Stored tasks carry these keys: a message sent again after an upgrade must find its
    # task, so the derivation is pinned (the SDK's is the same function: a business app
    # that derives the key before sending gets the one Baton stores).
    message = parse(json.dumps(fields))
    assert derive_idempotency_key(message) == key
    assert baton_sdk.contracts.derive_idempotency_key(message) == key
    assert baton_sdk.contracts.TaskMessage is TaskMessage


@pytest.mark.parametrize("name", ["queue_timeout_seconds", "total_timeout_seconds"])
def test_every_option_of_the_sdks_message_is_taken_not_ignored(name: str) -> None:
    # The SDK's message has it, and this Baton enforces it (the sweep ends the task).
    assert getattr(parse(message_with(**{name: 600})), name) == 600
    assert getattr(parse(message_with(**{name: None})), name) is None
