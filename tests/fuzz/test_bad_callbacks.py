"""Every malformed request of the callback corpus, as an API Gateway REST (payload 1.0)
event through the real callback handler: never a 5xx, always a JSON error body
{"error": {"code", "message"}} with the status the contract gives (401, 404, 409, 413,
422), a message that names the field of a validation error, and not one byte changed
in the database or in Redis by a refused request."""

from __future__ import annotations

import base64
import json
import uuid
from collections import Counter
from datetime import timedelta
from string import Template
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from baton.records import TaskStatus
from baton.runtime import Runtime
from baton.tokens import TokenKeyring, issue_token

from tests.support.algorithm_service import AlgorithmService
from tests.support.aws import AwsResources
from tests.support.clock import ShiftableClock
from tests.support.corpus import load_corpus, names_field
from tests.support.events import api_event, response_headers, sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.runtime import RuntimeFactory
from tests.support.snapshots import database_rows, redis_state
from tests.support.waiting import wait_for

pytestmark = pytest.mark.fuzz

CORPUS = load_corpus("callback_requests.jsonl")
OTHER_KEY = "another-signing-key-that-is-long-enough-1234"
REFUSALS = {401: "unauthorized", 404: None, 409: None, 413: "payload_too_large", 422: None}
FULLWIDTH_DIGITS = str.maketrans(
    "0123456789", "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19"
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def placeholders(
    runtime: Runtime, clock: ShiftableClock, first: Any, second: Any
) -> dict[str, str]:
    """The values the corpus refers to as ${name}: real tokens of two running tasks,
    and authentic-but-wrong, forged and tampered ones."""
    keys = runtime.config.token_keys
    later = clock() + timedelta(hours=1)
    task_id, token = first["task_id"], first["callback"]["token"]
    version, kid, payload, mac = token.split(".")
    padded = payload + "=" * (-len(payload) % 4)
    expires = base64.urlsafe_b64decode(padded).decode().rsplit(":", 1)[1]
    middle = len(mac) // 2
    ghost = str(uuid.uuid4())
    other_key = TokenKeyring.from_secret(OTHER_KEY)
    forged_keyring = TokenKeyring(current=kid, keys={kid: OTHER_KEY.encode()})
    removed_keyring = TokenKeyring(current="k-removed", keys={"k-removed": OTHER_KEY.encode()})
    return {
        "task_id": task_id,
        "token": token,
        "other_task_id": second["task_id"],
        "other_token": second["callback"]["token"],
        "attempt2_token": issue_token(keys, task_id, 2, later),
        "ghost_id": ghost,
        "ghost_token": issue_token(keys, ghost, 1, later),
        "expired_token": issue_token(keys, task_id, 1, clock() - timedelta(seconds=1)),
        "unknown_key_token": issue_token(other_key, task_id, 1, later),
        "forged_token": issue_token(forged_keyring, task_id, 1, later),
        "removed_key_token": issue_token(removed_keyring, task_id, 1, later),
        "token_v2": "bt2" + token[len(version) :],
        "token_truncated": token[:-5],
        "token_flipped": token[: -middle - 1]
        + ("A" if token[-middle - 1] != "A" else "B")
        + token[-middle:],
        "token_tampered": ".".join([version, kid, _b64(f"{task_id}:2:{expires}".encode()), mac]),
        "token_lookalike": token.replace(".", "\u2024"),
        "task_id_upper": task_id.upper(),
        "task_id_fullwidth": task_id.translate(FULLWIDTH_DIGITS),
    }


def event_for(entry: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """The API Gateway event of a corpus request."""

    def fill(text: str) -> str:
        return Template(text).safe_substitute(values)

    path, _, query = fill(entry["path"]).partition("?")
    headers = {name: fill(value) for name, value in entry["headers"].items()}
    body = entry.get("body")
    event = api_event(path, None, headers, method=entry["method"])
    if "multi_headers" in entry:
        for name, items in entry["multi_headers"].items():
            event["multiValueHeaders"][name] = [fill(item) for item in items]
            event["headers"][name] = fill(items[-1])  # API Gateway keeps the last one there
    if query:
        name, _, value = query.partition("=")
        event["queryStringParameters"] = {name: value}
        event["multiValueQueryStringParameters"] = {name: [value]}
    if "body_base64" in entry:
        event["body"], event["isBase64Encoded"] = entry["body_base64"], True
    elif entry.get("send_as_base64"):
        event["body"] = base64.b64encode(fill(body or "").encode()).decode()
        event["isBase64Encoded"] = True
    else:
        event["body"] = None if body is None else fill(body)
        event["isBase64Encoded"] = bool(entry.get("is_base64_encoded"))
    return event


@pytest.fixture
def two_running(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    clock: ShiftableClock,
) -> tuple[Runtime, dict[str, str]]:
    """Two tasks whose first attempts run (the algorithm stays silent), and the values
    the corpus needs."""
    runtime = make_runtime()
    silent = {"test": {"outcome": "silent"}}
    handlers.invoke(
        "intake",
        sqs_event(
            sqs_record(task_body(idempotency_key="fuzz-cb-1", input=silent)),
            sqs_record(task_body(idempotency_key="fuzz-cb-2", input=silent)),
        ),
    )
    first, second = wait_for(
        lambda: len(algorithm_service.requests) == 2 and algorithm_service.requests
    )
    algorithm_service.wait_idle()
    return runtime, placeholders(runtime, clock, first, second)


def test_the_corpus_covers_every_category_with_over_100_requests() -> None:
    categories = Counter(entry["category"] for entry in CORPUS)
    assert len(CORPUS) >= 100
    assert set(categories) >= {
        "authorization",
        "path",
        "method",
        "state",
        "size",
        "body",
        "encoding",
        "content-type",
        "heartbeat",
    }
    assert {entry["status"] for entry in CORPUS} == {401, 404, 409, 413, 422}
    assert len({entry["name"] for entry in CORPUS}) == len(CORPUS)


def test_every_bad_request_is_refused_with_a_json_error_and_changes_nothing(
    two_running: tuple[Runtime, dict[str, str]],
    handlers: Handlers,
    aws: AwsResources,
    db: sa.Engine,
    redis_client: redis.Redis,
    key_prefix: str,
    subtests: pytest.Subtests,
) -> None:
    runtime, values = two_running
    rows, keys = database_rows(db, except_refusals=True), redis_state(redis_client, key_prefix)
    assert keys, "the running attempts hold their slots in Redis"

    for entry in CORPUS:
        with subtests.test(msg=entry["name"], category=entry["category"]):
            answer = handlers.invoke("callback", event_for(entry, values))

            status = int(answer["statusCode"])
            assert status < 500
            assert status == entry["status"], answer.get("body", "")[:300]
            assert response_headers(answer)["Content-Type"] == "application/json"
            document = json.loads(answer["body"])
            assert set(document) == {"error"}
            error = document["error"]
            assert set(error) == {"code", "message"}
            assert error["code"] == entry["code"]
            assert isinstance(error["message"], str)
            assert 0 < len(error["message"]) <= 1024
            if "field" in entry:
                assert names_field(error["message"], entry["field"]), error["message"]
            for secret in ("token", "other_token", "attempt2_token", "ghost_token"):
                assert values[secret] not in answer["body"]
            # A refused request changes nothing, anywhere (but the count of refused
            # callbacks of the running attempt it names, for its timeout to say)
            assert database_rows(db, except_refusals=True) == rows
            assert redis_state(redis_client, key_prefix) == keys

    for task_id in (values["task_id"], values["other_task_id"]):
        task = runtime.repository.get_task(task_id)
        assert task is not None
        assert task.status == TaskStatus.RUNNING
    assert aws.notifications() == []


def test_the_content_type_does_not_decide_a_valid_body_is_applied(
    two_running: tuple[Runtime, dict[str, str]], handlers: Handlers
) -> None:
    # Baton reads the body as JSON whatever the Content-Type says (curl -d sends
    # form-urlencoded): a valid body is applied, an invalid one is a 422 naming "body".
    runtime, values = two_running
    event = api_event(
        f"/tasks/{values['task_id']}/callback",
        '{"attempt": 1, "status": "failed"}',
        {"Authorization": f"Bearer {values['token']}", "Content-Type": "text/plain"},
    )
    answer = handlers.invoke("callback", event)
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"])["applied"] is True
    task = runtime.repository.get_task(values["task_id"])
    assert task is not None
    assert task.status == TaskStatus.FAILED


def test_a_valid_base64_body_is_read_like_text(
    two_running: tuple[Runtime, dict[str, str]], handlers: Handlers
) -> None:
    # API Gateway base64-encodes bodies of binary media types; the same JSON counts.
    _, values = two_running
    event = api_event(
        f"/tasks/{values['task_id']}/heartbeat",
        base64.b64encode(b'{"attempt": 1, "progress": 30}').decode(),
        {"Authorization": f"Bearer {values['token']}"},
    )
    event["isBase64Encoded"] = True
    answer = handlers.invoke("callback", event)
    assert answer["statusCode"] == 200, answer["body"]
    assert json.loads(answer["body"])["attempt"] == 1
