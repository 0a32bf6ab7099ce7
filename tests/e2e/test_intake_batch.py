"""An intake batch is stored in one transaction (``intake.store_task_messages``,
``Repository.add_tasks``): its duplicates resolved by the unique key, not by a
rollback each; a task the database refuses still fails alone; a cancel and its task
in one batch never miss each other."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from baton.records import TaskStatus
from baton.runtime import Runtime

from tests.support.algorithm_service import AlgorithmService
from tests.support.aws import AwsResources
from tests.support.database import stored_task
from tests.support.events import sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.runtime import RuntimeFactory
from tests.support.waiting import wait_for


def _engine(runtime: Runtime) -> sa.Engine:
    engine: sa.Engine = runtime.repository._sessions.kw["bind"]
    return engine


@pytest.fixture
def statements() -> Iterator[list[str]]:
    """Every statement and transaction end of the engines built while it is open."""
    seen: list[str] = []

    def count(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.split()[:3]))

    def ended(kind: str) -> Any:
        return lambda _conn: seen.append(kind)

    listeners = [
        ("before_cursor_execute", count),
        ("commit", ended("COMMIT")),
        ("rollback", ended("ROLLBACK")),
    ]
    for name, listener in listeners:
        sa.event.listen(sa.Engine, name, listener)
    yield seen
    for name, listener in listeners:
        sa.event.remove(sa.Engine, name, listener)


def test_a_batch_is_stored_in_one_transaction_with_its_duplicates_resolved_by_the_key(
    make_runtime: RuntimeFactory, handlers: Handlers, statements: list[str]
) -> None:
    runtime = make_runtime(fast_path="false")
    handlers.invoke("intake", sqs_event(sqs_record(task_body(idempotency_key="stored-before"))))
    statements.clear()
    bodies = [task_body(idempotency_key=f"batch-{n}") for n in range(7)]
    bodies += [
        task_body(idempotency_key="batch-0"),  # a twin in the same batch
        task_body(idempotency_key="stored-before"),  # a redelivery
        task_body(idempotency_key="batch-7"),
    ]

    answer = handlers.invoke("intake", sqs_event(*(sqs_record(body) for body in bodies)))

    assert answer == {"batchItemFailures": []}
    assert Counter(statements) == Counter(
        {
            "INSERT INTO task": 1,
            "SELECT task.id, task.app,": 1,  # the batch's rows, by their keys
            "SELECT cancel_tombstone.app, cancel_tombstone.idempotency_key,": 1,
            "COMMIT": 1,
        }
    )
    keys = [f"batch-{n}" for n in range(8)] + ["stored-before"]
    tasks = [runtime.repository.find_task("contracts", key) for key in keys]
    assert all(task is not None and task.status == TaskStatus.PENDING for task in tasks)


def test_a_task_the_database_refuses_fails_alone(
    make_runtime: RuntimeFactory, handlers: Handlers, aws: AwsResources
) -> None:
    runtime = make_runtime(fast_path="false")
    engine = _engine(runtime)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TRIGGER refuse_one_task BEFORE INSERT ON task FOR EACH ROW "
            "IF NEW.idempotency_key = 'refused' THEN "
            "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by the database'; END IF"
        )
    try:
        records = [sqs_record(task_body(idempotency_key=f"fine-{n}")) for n in range(4)]
        refused = sqs_record(task_body(idempotency_key="refused"))
        records.insert(2, refused)

        answer = handlers.invoke("intake", sqs_event(*records))
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP TRIGGER IF EXISTS refuse_one_task")

    assert answer == {"batchItemFailures": [{"itemIdentifier": refused["messageId"]}]}
    for n in range(4):
        assert runtime.repository.find_task("contracts", f"fine-{n}") is not None
    assert runtime.repository.find_task("contracts", "refused") is None


@pytest.mark.parametrize("cancel_first", [True, False])
def test_a_cancel_and_its_task_in_one_batch_end_the_task_cancelled(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    cancel_first: bool,
) -> None:
    runtime = make_runtime()
    task = sqs_record(task_body(idempotency_key="cancelled-in-batch"))
    cancel = sqs_record(
        json.dumps({"app": "contracts", "cancel": {"idempotency_key": "cancelled-in-batch"}})
    )
    other = sqs_record(task_body(idempotency_key="runs"))
    batch = [cancel, task, other] if cancel_first else [task, other, cancel]

    assert handlers.invoke("intake", sqs_event(*batch)) == {"batchItemFailures": []}

    stored = runtime.repository.find_task("contracts", "cancelled-in-batch")
    assert stored is not None
    notifications = wait_for(lambda: len(aws.notifications()) >= 2 and aws.seen)
    assert Counter((n["idempotency_key"], n["status"]) for n in notifications) == {
        ("cancelled-in-batch", "cancelled"): 1,
        ("runs", "succeeded"): 1,
    }
    assert stored_task(runtime.repository, stored.id).status == TaskStatus.CANCELLED
    # Never dispatched: the service saw the other task alone.
    assert [r["task_id"] for r in algorithm_service.requests] == [
        n["task_id"] for n in notifications if n["idempotency_key"] == "runs"
    ]
