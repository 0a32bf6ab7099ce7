"""Every malformed body of the SQS corpus, each in a batch between two valid messages,
through the real intake handler: the bad record alone is a batch item failure, its
logged reason names the field, the valid records are stored, and nothing at all is
written for the rejected one (invariant 6)."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from tests.support.corpus import load_corpus, names_field, raw_body
from tests.support.events import sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.logs import CapturedLogs
from tests.support.runtime import RuntimeFactory
from tests.support.snapshots import database_rows, redis_state

pytestmark = pytest.mark.fuzz

CORPUS = load_corpus("sqs_bodies.jsonl")
SECRET_LOOKING = "sk_live_0123456789abcdef"  # the value of the corpus' extra api_key field


def record_of(body: bytes) -> dict[str, Any]:
    """An SQS record carrying these bytes. Lambda hands the body over as text, so bytes
    that are not UTF-8 arrive as what Python makes of them (surrogate escapes)."""
    record = sqs_record("{}")
    record["body"] = body.decode("utf-8", "surrogateescape")
    record["md5OfBody"] = hashlib.md5(body).hexdigest()
    return record


def task_keys(db: sa.Engine) -> set[tuple[str, str]]:
    with db.connect() as connection:
        rows = connection.exec_driver_sql("SELECT app, idempotency_key FROM task")
        return {(str(app), str(key)) for app, key in rows}


def test_the_corpus_covers_every_category_with_over_100_bodies() -> None:
    categories = Counter(entry["category"] for entry in CORPUS)
    assert len(CORPUS) >= 100
    assert set(categories) >= {
        "not-an-object",
        "encoding",
        "non-finite",
        "duplicate-keys",
        "nesting",
        "missing-field",
        "wrong-type",
        "extra-field",
        "size-and-range",
        "not-before",
        "path-tricks",
    }
    assert len({entry["name"] for entry in CORPUS}) == len(CORPUS)
    sizes = [len(raw_body(entry)) for entry in CORPUS]
    assert max(sizes) > 256 * 1024


def test_every_bad_body_fails_alone_names_its_field_and_writes_nothing(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    db: sa.Engine,
    redis_client: redis.Redis,
    key_prefix: str,
    captured_logs: CapturedLogs,
    subtests: pytest.Subtests,
) -> None:
    make_runtime(fast_path="false")  # nothing but intake runs: every write is intake's
    untouched = {table: rows for table, rows in database_rows(db).items() if table != "task"}
    for number, entry in enumerate(CORPUS):
        with subtests.test(msg=entry["name"], category=entry["category"]):
            good = [
                sqs_record(task_body(idempotency_key=f"good-{number}-{side}"))
                for side in ("before", "after")
            ]
            bad = record_of(raw_body(entry))
            stored_before = task_keys(db)
            captured_logs.clear()

            answer = handlers.invoke("intake", sqs_event(good[0], bad, good[1]))

            # The bad record alone is a batch item failure...
            assert answer == {"batchItemFailures": [{"itemIdentifier": bad["messageId"]}]}
            # ...with one logged reason that names the field, without echoing values...
            (rejection,) = [
                record
                for record in captured_logs.with_message("task message rejected")
                if record.get("message_id") == bad["messageId"]
            ]
            reason = rejection["reason"]
            assert names_field(reason, entry["field"]), reason
            assert rejection["level"] == "WARNING"
            assert len(reason) < 2000
            assert SECRET_LOOKING not in reason
            assert re.search(r"(.)\1{99}", reason) is None, "a long value was echoed"
            # ...the valid records of the same batch are stored, and nothing else is.
            added = task_keys(db) - stored_before
            assert added == {("contracts", f"good-{number}-{side}") for side in ("before", "after")}
            # In Redis, only the reason kept for the DLQ listing, and the note that the
            # app was told (when its app could be read), under the message id
            state = redis_state(redis_client, key_prefix)
            rejected = f"{key_prefix}:rejected:".encode()
            assert {key for key in state if not key.startswith(rejected)} == set(), state
            kept = f"{key_prefix}:rejected:{bad['messageId']}:reason".encode()
            assert state[kept] == reason.encode()
    assert {
        table: rows for table, rows in database_rows(db).items() if table != "task"
    } == untouched


def test_a_batch_of_only_bad_bodies_fails_every_record_and_stores_nothing(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    db: sa.Engine,
    captured_logs: CapturedLogs,
) -> None:
    make_runtime(fast_path="false")
    # One body from each category, ten to a batch as SQS delivers them
    picked = list({entry["category"]: entry for entry in CORPUS}.values())[:10]
    records = [record_of(raw_body(entry)) for entry in picked]

    answer = handlers.invoke("intake", sqs_event(*records))

    assert sorted(item["itemIdentifier"] for item in answer["batchItemFailures"]) == sorted(
        record["messageId"] for record in records
    )
    assert len(captured_logs.with_message("task message rejected")) == len(records)
    assert database_rows(db) == {
        "task": [],
        "task_execution": [],
        "notification_outbox": [],
    }


def test_a_redelivered_bad_body_is_rejected_the_same_way_every_time(
    make_runtime: RuntimeFactory, handlers: Handlers, captured_logs: CapturedLogs
) -> None:
    # SQS retries a failed record (maxReceiveCount) before the DLQ: each delivery is
    # refused with the same reason, so the log tells one story.
    make_runtime(fast_path="false")
    entry = next(e for e in CORPUS if e["category"] == "duplicate-keys")
    reasons = []
    for receive_count in (1, 2, 3):
        record = record_of(raw_body(entry))
        record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
        answer = handlers.invoke("intake", sqs_event(record))
        assert answer == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
        reasons.append(captured_logs.with_message("task message rejected")[-1]["reason"])
    assert len(set(reasons)) == 1
