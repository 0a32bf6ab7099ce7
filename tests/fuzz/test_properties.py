"""Properties over generated input (hypothesis), with bounded example counts:

- any JSON value, any text and any bytes as an SQS body is accepted or refused with
  InvalidTaskMessage, never another exception; what is accepted round-trips, through
  the model and through the real database;
- a token verifies for its own (task, attempt) and for nothing else, and any bytes as a
  token (or as an Authorization header) are refused with Unauthorized;
- any JSON value as a callback or heartbeat body parses or raises ValidationError, and
  the reason made of it is bounded and names where.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from baton.contracts import CallbackBody, HeartbeatBody, TaskMessage
from baton.errors import InvalidTaskMessage, Unauthorized
from baton.input_hygiene import describe_validation_error, duplicate_key
from baton.intake import accept_task_message, derive_idempotency_key, parse_task_message
from baton.registry import AlgorithmRegistry
from baton.settings import load_settings
from baton.tokens import TokenKeyring, authenticate_token, bearer_token, issue_token, verify_token
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.support.runtime import RuntimeFactory

pytestmark = pytest.mark.fuzz

REGISTRY = {
    "ocr": {
        "endpoint": "https://ocr.example.com/run",
        "max_concurrency": 4,
        "timeout_seconds": 900,
        "max_timeout_seconds": 3600,
    },
    "nlp": {"endpoint": "https://nlp.example.com/run", "max_concurrency": 2},
}
ENVIRON = {
    "BATON_DATABASE_URL": "sqlite://",
    "BATON_REDIS_URL": "redis://127.0.0.1:6379/0",
    "BATON_RESULT_BUCKET": "results-bucket",
    "BATON_NOTIFICATION_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:baton",
    "BATON_CALLBACK_BASE_URL": "https://api.example.com/prod",
    "BATON_TOKEN_SECRET": "property-test-token-secret-0123456789",
    "BATON_ALGORITHMS": json.dumps(REGISTRY),
    "BATON_MAX_MESSAGE_BYTES": str(64 * 1024),
    "BATON_MAX_INPUT_DEPTH": "6",
}
RUNTIME = SimpleNamespace(
    settings=load_settings(ENVIRON),
    config=SimpleNamespace(registry=AlgorithmRegistry.from_json(json.dumps(REGISTRY))),
)
KEYRING = TokenKeyring.from_secret(ENVIRON["BATON_TOKEN_SECRET"])
NOW = datetime(2030, 1, 1, tzinfo=UTC)
FAST = settings(max_examples=200, deadline=None)

# -- strategies ----------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and the infinities included: json.dumps writes them as tokens
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=25,
)
NAME_CHARACTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"
names = st.text(NAME_CHARACTERS, min_size=1, max_size=64) | st.text(max_size=70)
idempotency_keys = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=200
)
finite_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=15,
)


@st.composite
def message_like(draw: st.DrawFn, value: st.SearchStrategy[Any] = json_values) -> dict[str, Any]:
    """A dict that is often a valid task message and often wrong in one or two ways."""
    message: dict[str, Any] = {
        "app": draw(names),
        "algorithm": draw(st.sampled_from(["ocr", "nlp"]) | names),
        "input": draw(st.dictionaries(st.text(max_size=8), finite_json, max_size=4) | value),
    }
    optional = {
        "idempotency_key": idempotency_keys | value,
        "priority": st.integers(-1_000_000, 1_000_000) | value,
        "timeout_seconds": st.integers(1, 3600) | value,
        "max_attempts": st.integers(1, 100) | value,
        "not_before": st.datetimes(timezones=st.timezones()).map(datetime.isoformat) | value,
        "metadata": st.dictionaries(st.text(max_size=8), finite_json, max_size=3) | value,
        "extra": value,
    }
    for field in draw(st.sets(st.sampled_from(sorted(optional)), max_size=4)):
        message[field] = draw(optional[field])
    return message


@st.composite
def valid_messages(draw: st.DrawFn) -> dict[str, Any]:
    """Messages the contract accepts: what must survive the database unchanged."""
    message: dict[str, Any] = {
        "app": draw(st.text(NAME_CHARACTERS, min_size=1, max_size=64)),
        "algorithm": draw(st.sampled_from(["ocr", "nlp"])),
        "input": draw(st.dictionaries(st.text(max_size=8), finite_json, max_size=4)),
        "priority": draw(st.integers(-1_000_000, 1_000_000)),
        "metadata": draw(st.dictionaries(st.text(max_size=8), finite_json, max_size=3)),
    }
    if draw(st.booleans()):
        message["not_before"] = draw(
            st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
                lambda moment: moment.replace(tzinfo=UTC).isoformat()
            )
        )
    if draw(st.booleans()):
        message["max_attempts"] = draw(st.integers(1, 100))
    return message


def parse_or_refuse(body: str | bytes) -> TaskMessage | None:
    """The property itself: a message, or InvalidTaskMessage with a bounded reason."""
    try:
        return parse_task_message(RUNTIME, body)  # type: ignore[arg-type]
    except InvalidTaskMessage as exc:
        reason = str(exc)
        assert reason
        assert len(reason) < 2000
        assert ": " in reason  # 'field: problem'
        return None


def assert_round_trips(message: TaskMessage) -> None:
    again = TaskMessage.model_validate_json(message.model_dump_json())
    assert again == message
    assert derive_idempotency_key(again) == derive_idempotency_key(message)


# -- task messages ---------------------------------------------------------------------------


@FAST
@given(value=json_values)
def test_any_json_value_is_a_message_or_invalid_task_message(value: Any) -> None:
    parse_or_refuse(json.dumps(value))


@FAST
@given(message=message_like())
def test_any_message_like_object_is_accepted_and_round_trips_or_is_refused(
    message: dict[str, Any],
) -> None:
    parsed = parse_or_refuse(json.dumps(message))
    if parsed is not None:
        assert_round_trips(parsed)
        assert parsed.input == message["input"]


@FAST
@given(text=st.text(max_size=300))
def test_any_text_is_a_message_or_invalid_task_message(text: str) -> None:
    parse_or_refuse(text)


@FAST
@given(data=st.binary(max_size=300))
def test_any_bytes_are_a_message_or_invalid_task_message(data: bytes) -> None:
    parse_or_refuse(data)
    # ...and so is what Lambda makes of them: text with surrogate escapes
    parse_or_refuse(data.decode("utf-8", "surrogateescape"))


@FAST
@given(message=message_like(), data=st.data())
def test_a_duplicated_field_is_always_refused(message: dict[str, Any], data: st.DataObject) -> None:
    # The same field twice, even with the same value: refused, whatever else is right
    field = data.draw(st.sampled_from(sorted(message)))
    value = data.draw(st.just(message[field]) | json_values)
    doubled = json.dumps(message)[:-1] + f", {json.dumps(field)}: {json.dumps(value)}" + "}"
    with pytest.raises(InvalidTaskMessage):
        parse_task_message(RUNTIME, doubled)  # type: ignore[arg-type]


def test_accepted_messages_round_trip_through_the_database(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(fast_path="false", algorithms=REGISTRY)

    @settings(max_examples=60, deadline=None)
    @given(message=valid_messages())
    def round_trip(message: dict[str, Any]) -> None:
        message = {**message, "idempotency_key": f"prop-{uuid.uuid4()}"}
        body = json.dumps(message)
        parsed = parse_task_message(runtime, body)
        accepted = accept_task_message(runtime, body)
        assert accepted.created
        task = runtime.repository.get_task(accepted.task_id)
        assert task is not None
        assert (task.app, task.algorithm, task.priority, task.idempotency_key) == (
            parsed.app,
            parsed.algorithm,
            parsed.priority,
            parsed.idempotency_key,
        )
        assert task.input == parsed.input
        assert task.meta == parsed.metadata
        # ...and a redelivery of the same body is the same task
        assert accept_task_message(runtime, body) == type(accepted)(
            accepted.task_id, accepted.algorithm, created=False
        )

    round_trip()


# -- tokens -------------------------------------------------------------------------------------

attempts = st.integers(1, 1000)
key_ids = st.text(NAME_CHARACTERS.replace(".", ""), min_size=1, max_size=12)
secrets = st.sampled_from(
    [f"signing-key-number-{n}-of-the-property-tests" for n in range(4)]
)  # few keys, so that two keyrings often share one


@st.composite
def keyrings(draw: st.DrawFn) -> TokenKeyring:
    keys = draw(
        st.dictionaries(key_ids | st.sampled_from(["k1", "k2"]), secrets, min_size=1, max_size=3)
    )
    current = draw(st.sampled_from(sorted(keys)))
    return TokenKeyring(current=current, keys={kid: key.encode() for kid, key in keys.items()})


@FAST
@given(
    keyring=keyrings(),
    task=st.uuids().map(str),
    attempt=attempts,
    other_task=st.uuids().map(str) | st.text(max_size=40),
    other_attempt=attempts,
)
def test_a_token_verifies_for_its_own_task_and_attempt_only(
    keyring: TokenKeyring, task: str, attempt: int, other_task: str, other_attempt: int
) -> None:
    token = issue_token(keyring, task, attempt, NOW + timedelta(hours=1))
    claims = verify_token(keyring, token, task, attempt, NOW)
    assert (claims.task_id, claims.attempt) == (task, attempt)
    if (other_task, other_attempt) != (task, attempt):
        with pytest.raises(Unauthorized):
            verify_token(keyring, token, other_task, other_attempt, NOW)
    with pytest.raises(Unauthorized):  # and not after it expires
        verify_token(keyring, token, task, attempt, NOW + timedelta(hours=1))


@FAST
@given(signer=keyrings(), verifier=keyrings(), task=st.uuids().map(str), attempt=attempts)
def test_a_token_verifies_only_where_its_key_is_known(
    signer: TokenKeyring, verifier: TokenKeyring, task: str, attempt: int
) -> None:
    token = issue_token(signer, task, attempt, NOW + timedelta(hours=1))
    knows_the_key = verifier.keys.get(signer.current) == signer.keys[signer.current]
    try:
        verify_token(verifier, token, task, attempt, NOW)
    except Unauthorized:
        assert not knows_the_key
    else:
        assert knows_the_key


@FAST
@given(data=st.binary(max_size=200), task=st.uuids().map(str))
def test_any_bytes_as_a_token_are_refused_with_unauthorized(data: bytes, task: str) -> None:
    for token in (data.decode("latin-1"), data.decode("utf-8", "surrogateescape")):
        with pytest.raises(Unauthorized):
            authenticate_token(KEYRING, token, task, NOW)


@FAST
@given(
    parts=st.lists(st.text(max_size=60) | st.binary(max_size=60).map(bytes.hex), max_size=3),
    task=st.uuids().map(str),
)
def test_any_token_shaped_text_is_refused_with_unauthorized(parts: list[str], task: str) -> None:
    # The right version and a real key id, then anything: the MAC never lets it through.
    token = ".".join(["bt1", KEYRING.current, *parts])
    with pytest.raises(Unauthorized):
        authenticate_token(KEYRING, token, task, NOW)


@FAST
@given(header=st.none() | st.text(max_size=100) | st.binary(max_size=100).map(bytes.hex))
def test_any_authorization_header_gives_a_token_or_unauthorized(header: str | None) -> None:
    try:
        token = bearer_token(header)
    except Unauthorized:
        return
    assert token
    assert token == token.strip()


# -- callback and heartbeat bodies ----------------------------------------------------------------


@FAST
@given(value=json_values | st.fixed_dictionaries({"attempt": json_values, "status": json_values}))
def test_any_json_value_as_a_callback_body_parses_or_raises_validation_error(value: Any) -> None:
    text = json.dumps(value)
    for model in (CallbackBody, HeartbeatBody):
        try:
            body = model.model_validate_json(text)
        except ValidationError as exc:
            reason = describe_validation_error(exc)
            assert 0 < len(reason) < 2000
            continue
        assert duplicate_key(text) is None  # json.dumps never writes duplicates
        assert 1 <= body.attempt <= 1000


@FAST
@given(
    attempt=st.integers(1, 1000),
    status=st.sampled_from(["succeeded", "failed"]),
    error=st.none()
    | st.fixed_dictionaries(
        {"code": st.text(min_size=1, max_size=64), "message": st.text(max_size=1024)}
    ),
)
def test_every_valid_callback_body_parses_and_round_trips(
    attempt: int, status: str, error: dict[str, str] | None
) -> None:
    body = CallbackBody.model_validate_json(
        json.dumps({"attempt": attempt, "status": status, "error": error})
    )
    assert CallbackBody.model_validate_json(body.model_dump_json()) == body


@FAST
@given(value=json_values)
def test_duplicate_key_finds_nothing_in_what_json_dumps_writes(value: Any) -> None:
    assert duplicate_key(json.dumps(value)) is None
