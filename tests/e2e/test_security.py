"""Attacks on the lifecycle, through the real handlers, over real HTTP where the real
system uses HTTP: endpoints come only from the registry, results stay under their
task's own key, a token speaks for one task and one attempt, a replayed callback
changes nothing, signing keys rotate without breaking running attempts, and the size
limits hold."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import redis
import sqlalchemy as sa
import urllib3
from baton.records import TaskStatus
from baton.runtime import Runtime

from tests.support.algorithm_service import AlgorithmService
from tests.support.aws import AwsResources
from tests.support.clock import ShiftableClock
from tests.support.database import stored_task
from tests.support.events import api_event, schedule_event, sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.runtime import RuntimeFactory
from tests.support.snapshots import database_rows, redis_state, refusals
from tests.support.waiting import wait_for

K1 = "first-signing-key-of-the-rotation-test-0001"
K2 = "second-signing-key-of-the-rotation-test-002"
SILENT = {"test": {"outcome": "silent"}}


def submit(handlers: Handlers, *bodies: str) -> tuple[dict[str, Any], list[str]]:
    records = [sqs_record(body) for body in bodies]
    answer: dict[str, Any] = handlers.invoke("intake", sqs_event(*records))
    return answer, [record["messageId"] for record in records]


def request_for(
    service: AlgorithmService, runtime: Runtime, idempotency_key: str
) -> dict[str, Any] | None:
    """The dispatch request of the task stored under this key, once it was sent."""
    task = runtime.repository.find_task("contracts", idempotency_key)
    found = service.requests_for(task.id) if task is not None else []
    return found[0] if found else None


def upload(request: dict[str, Any]) -> None:
    answer = urllib3.request("PUT", request["result"]["upload_url"], body=b'{"words": 42}')
    assert answer.status == 200


def callback(
    handlers: Handlers, task_id: str, token: str, body: dict[str, Any], route: str = "callback"
) -> tuple[int, dict[str, Any]]:
    answer = handlers.invoke(
        "callback",
        api_event(
            f"/tasks/{task_id}/{route}", json.dumps(body), {"Authorization": f"Bearer {token}"}
        ),
    )
    return int(answer["statusCode"]), json.loads(answer["body"])


@pytest.fixture
def db(clean_database: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(clean_database)
    yield engine
    engine.dispose()


@pytest.fixture
def evil_service() -> Iterator[AlgorithmService]:
    """A server an attacker would like Baton to call."""
    service = AlgorithmService().start()
    yield service
    service.stop()


# -- endpoints only from the registry ---------------------------------------------------------


@pytest.mark.parametrize("field", ["endpoint", "url", "callback_url", "callback", "result_key"])
def test_a_message_that_names_an_endpoint_or_a_key_is_rejected(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    db: sa.Engine,
    evil_service: AlgorithmService,
    field: str,
) -> None:
    make_runtime()
    answer, (message_id,) = submit(
        handlers, task_body(idempotency_key="evil-1", **{field: evil_service.endpoint("ocr")})
    )
    assert answer == {"batchItemFailures": [{"itemIdentifier": message_id}]}
    assert database_rows(db)["task"] == []
    assert evil_service.requests == []


def test_dispatch_goes_only_to_the_registry_endpoint_whatever_the_input_says(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    evil_service: AlgorithmService,
    aws: AwsResources,
) -> None:
    runtime = make_runtime()
    evil = evil_service.endpoint("ocr")
    tricky_input = {
        "document": "s3://docs/contract-17.pdf",
        "endpoint": evil,
        "url": evil,
        "callback": {"url": evil, "token": "attacker"},
        "result": {"bucket": "attacker-bucket", "key": "../../other/result"},
    }
    submit(handlers, task_body(idempotency_key="input-tricks", input=tricky_input))

    (notification,) = wait_for(aws.notifications)
    assert notification["status"] == "succeeded"
    (request,) = algorithm_service.requests
    assert request["input"] == tricky_input  # handed over as is, used for nothing
    assert request["result"]["bucket"] == aws.bucket
    assert request["result"]["key"] == f"results/ocr/{request['task_id']}/1/result"
    callback_base = runtime.settings.callback_base
    assert request["callback"]["url"] == f"{callback_base}/tasks/{request['task_id']}/callback"
    assert evil_service.requests == []


# -- result keys confined to the task's own prefix --------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "../../etc/passwd",
        "..\\..\\windows\\system32",
        "%2e%2e%2f%2e%2e%2f",
        "results/ocr/x/1/result",
    ],
)
def test_a_tricky_idempotency_key_is_only_a_key_and_the_result_stays_under_the_task(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    key: str,
) -> None:
    # Printable ASCII is a valid idempotency key; it names nothing on any disk or bucket.
    runtime = make_runtime()
    submit(handlers, task_body(idempotency_key=key, input=SILENT))
    (request,) = wait_for(lambda: algorithm_service.requests)
    task_id = request["task_id"]
    task = runtime.repository.find_task("contracts", key)
    assert task is not None
    assert task.id == task_id
    assert uuid.UUID(task_id).version == 4  # Baton makes the id; a message cannot set it
    expected = f"results/ocr/{task_id}/1/result"
    assert request["result"]["key"] == expected
    # The presigned PUT is for that key alone: its path is the bucket and the key
    # (S3 signs the path; moto does not check signatures, AWS does)
    upload_url = urlsplit(request["result"]["upload_url"])
    assert unquote(upload_url.path) == f"/{aws.bucket}/{expected}"
    query = parse_qs(upload_url.query)
    assert "Signature" in query or "X-Amz-Signature" in query


def test_a_result_uploaded_anywhere_else_does_not_make_the_attempt_succeed(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
) -> None:
    runtime = make_runtime()
    submit(handlers, task_body(idempotency_key="elsewhere", input=SILENT))
    (request,) = wait_for(lambda: algorithm_service.requests)
    task_id = request["task_id"]
    s3 = aws.session.client("s3")
    for key in (
        f"results/ocr/{task_id}/2/result",
        f"results/nlp/{task_id}/1/result",
        f"results/ocr/{task_id}/1/result/../result",
        f"results/ocr/{task_id}/1/RESULT",
    ):
        s3.put_object(Bucket=aws.bucket, Key=key, Body=b"{}")

    status, answer = callback(
        handlers, task_id, request["callback"]["token"], {"attempt": 1, "status": "succeeded"}
    )
    assert (status, answer["error"]["code"]) == (409, "result_missing")
    assert stored_task(runtime.repository, task_id).status == TaskStatus.RUNNING


# -- a token speaks for one task and one attempt ----------------------------------------------


def test_a_token_never_works_for_another_task_or_attempt(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
    db: sa.Engine,
    redis_client: redis.Redis,
    key_prefix: str,
) -> None:
    runtime = make_runtime()
    submit(
        handlers,
        task_body(idempotency_key="victim", input=SILENT, max_attempts=2, timeout_seconds=5),
        task_body(idempotency_key="attacker", input=SILENT),
    )
    victim = wait_for(lambda: request_for(algorithm_service, runtime, "victim"))
    attacker = wait_for(lambda: request_for(algorithm_service, runtime, "attacker"))
    before = database_rows(db, except_refusals=True), redis_state(redis_client, key_prefix)

    for body, route in (
        ({"attempt": 1, "status": "succeeded"}, "callback"),
        ({"attempt": 1, "status": "failed"}, "callback"),
        ({"attempt": 1, "progress": 99}, "heartbeat"),
    ):
        status, answer = callback(
            handlers, victim["task_id"], attacker["callback"]["token"], body, route
        )
        assert (status, answer["error"]["code"]) == (401, "unauthorized")
    after = database_rows(db, except_refusals=True), redis_state(redis_client, key_prefix)
    assert after == before
    # (but the refused callbacks are counted against the attempt they name, which a
    # timeout will mention; nothing else reads them)
    assert refusals(db) == {(victim["task_id"], 1): (2, "unauthorized")}

    # The victim's attempt 1 times out and attempt 2 runs: attempt 1's token is no
    # good for attempt 2, and attempt 2's is no good for attempt 1.
    clock.advance(6)
    handlers.invoke("sweep", schedule_event("sweep"))
    clock.advance(10)
    handlers.invoke("dispatch", schedule_event("dispatch"))
    second = wait_for(lambda: algorithm_service.requests_for(victim["task_id"])[1:])[0]
    assert second["attempt"] == 2
    first_token, second_token = victim["callback"]["token"], second["callback"]["token"]
    status, answer = callback(
        handlers, victim["task_id"], first_token, {"attempt": 2, "status": "failed"}
    )
    assert (status, answer["error"]["code"]) == (401, "unauthorized")
    status, answer = callback(
        handlers, victim["task_id"], second_token, {"attempt": 1, "status": "failed"}
    )
    assert (status, answer["error"]["code"]) == (401, "unauthorized")
    status, answer = callback(
        handlers, victim["task_id"], first_token, {"attempt": 1, "status": "failed"}
    )
    assert status == 409  # its own, but over: a clear answer, no change
    assert aws.notifications() == []


# -- replay -----------------------------------------------------------------------------------


def test_replaying_a_completed_callback_changes_nothing(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    db: sa.Engine,
    redis_client: redis.Redis,
    key_prefix: str,
) -> None:
    make_runtime()
    submit(handlers, task_body(idempotency_key="replayed"))
    (notification,) = wait_for(aws.notifications)
    assert notification["status"] == "succeeded"
    algorithm_service.wait_idle()
    (request,) = algorithm_service.requests
    task_id, token = request["task_id"], request["callback"]["token"]
    before = database_rows(db), redis_state(redis_client, key_prefix)

    for _ in range(3):
        status, answer = callback(handlers, task_id, token, {"attempt": 1, "status": "succeeded"})
        assert (status, answer["applied"]) == (200, False)
    for body, route in (
        ({"attempt": 1, "status": "failed", "error": {"code": "x", "message": "y"}}, "callback"),
        ({"attempt": 1, "progress": 50}, "heartbeat"),
    ):
        status, answer = callback(handlers, task_id, token, body, route)
        assert (status, answer["error"]["code"]) == (409, "outcome_conflict")

    assert (database_rows(db), redis_state(redis_client, key_prefix)) == before
    handlers.invoke("sweep", schedule_event("sweep"))
    assert len(aws.notifications(wait_seconds=1)) == 1


# -- key rotation -----------------------------------------------------------------------------


def keyring(current: str, **keys: str) -> str:
    return json.dumps({"current": current, "keys": keys})


def test_signing_keys_rotate_without_breaking_running_attempts(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
) -> None:
    # Tasks dispatched under k1...
    runtime = make_runtime(token_secret=keyring("k1", k1=K1))
    submit(
        handlers,
        task_body(idempotency_key="rot-1", input=SILENT),
        task_body(idempotency_key="rot-2", input=SILENT),
    )
    first, second = wait_for(
        lambda: len(algorithm_service.requests) == 2 and algorithm_service.requests
    )
    assert {r["callback"]["token"].split(".")[1] for r in (first, second)} == {"k1"}

    # ...finish after the keyring becomes {current: k2, keys: {k1, k2}}
    make_runtime(token_secret=keyring("k2", k1=K1, k2=K2))
    upload(first)
    done = algorithm_service.call_back(first, {"attempt": 1, "status": "succeeded"})
    assert (done.http_status, done.answer["applied"]) == (200, True)
    beat = algorithm_service.call_back(second, {"attempt": 1, "progress": 50}, path="heartbeat")
    assert beat.http_status == 200

    # New attempts are signed with k2
    submit(handlers, task_body(idempotency_key="rot-3", input=SILENT))
    third = wait_for(lambda: request_for(algorithm_service, runtime, "rot-3"))
    assert third["callback"]["token"].split(".")[1] == "k2"

    # Once k1 is removed, a k1 token is refused and changes nothing
    runtime = make_runtime(token_secret=keyring("k2", k2=K2))
    refused = algorithm_service.call_back(second, {"attempt": 1, "status": "failed"})
    assert (refused.http_status, refused.answer["error"]["code"]) == (401, "unauthorized")
    assert stored_task(runtime.repository, second["task_id"]).status == TaskStatus.RUNNING
    upload(third)
    accepted = algorithm_service.call_back(third, {"attempt": 1, "status": "succeeded"})
    assert accepted.http_status == 200
    statuses = sorted(
        n["status"] for n in wait_for(lambda: len(aws.notifications()) >= 2 and aws.seen)
    )
    assert statuses == ["succeeded", "succeeded"]


# -- size limits ------------------------------------------------------------------------------


def test_a_65_kib_callback_is_413_over_http_and_changes_nothing(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    db: sa.Engine,
) -> None:
    make_runtime()
    submit(handlers, task_body(idempotency_key="big-callback", input=SILENT))
    (request,) = wait_for(lambda: algorithm_service.requests)
    algorithm_service.wait_idle()
    before = database_rows(db)
    body = {"attempt": 1, "status": "failed", "error": {"code": "E", "message": "m" * 65 * 1024}}
    record = algorithm_service.call_back(request, body)  # real HTTP through the gateway
    assert record.http_status == 413
    assert record.answer["error"]["code"] == "payload_too_large"
    assert database_rows(db) == before


def test_a_300_kib_message_is_a_batch_failure_and_stores_nothing(
    make_runtime: RuntimeFactory, handlers: Handlers, db: sa.Engine
) -> None:
    runtime = make_runtime(fast_path="false")
    big = task_body(idempotency_key="big-message", input={"pad": "x" * 300 * 1024})
    good = task_body(idempotency_key="small-message")
    answer, (big_id, _) = submit(handlers, big, good)
    assert answer == {"batchItemFailures": [{"itemIdentifier": big_id}]}
    assert runtime.repository.find_task("contracts", "small-message") is not None
    assert len(database_rows(db)["task"]) == 1
