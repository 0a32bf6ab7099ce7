"""Promotion and the sweep stay flat as the backlog grows: MariaDB's plans for their
queries walk the indexes made for them, and read about as many rows for a backlog of
20,000 finished tasks as for an empty table."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from baton.repository import (
    accept_dispatches_statement,
    apps_with_pending_query,
    kept_cancels_query,
    lock_tasks_query,
    overdue_attempts_query,
    past_queue_deadline_query,
    past_total_deadline_query,
    promotion_candidates,
    tasks_by_key_query,
)
from sqlalchemy.dialects import mysql

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def explain(engine: sa.Engine, statement: Any) -> list[dict[str, Any]]:
    sql = str(statement.compile(dialect=mysql.dialect(), compile_kwargs={"literal_binds": True}))
    with engine.connect() as connection:
        result = connection.exec_driver_sql("EXPLAIN " + sql)
        return [dict(row._mapping) for row in result]


def seed(engine: sa.Engine, finished: int, pending: int) -> None:
    """A long history of finished tasks and attempts, and a few waiting ones."""
    created = NOW - timedelta(days=1)
    tasks, executions = [], []
    for n in range(finished + pending):
        task_id = str(uuid.uuid4())
        done = n < finished
        tasks.append(
            {
                "id": task_id,
                "app": "contracts",
                "algorithm": "ocr" if n % 2 else "nlp",
                "idempotency_key": f"k-{n}",
                "priority": n % 5,
                "input": "{}",
                "metadata": "{}",
                "timeout_seconds": 60,
                "max_attempts": 3,
                "status": "succeeded" if done else "pending",
                "attempts": 1 if done else 0,
                "not_before": created,
                # every task had deadlines, and the finished ones are long past them
                "queue_deadline": created + timedelta(hours=1),
                "total_deadline": created + timedelta(hours=2),
                "created_at": created + timedelta(milliseconds=n),
                "updated_at": created,
            }
        )
        if done:
            executions.append(
                {
                    "task_id": task_id,
                    "attempt": 1,
                    "algorithm": "ocr",
                    "app": "contracts",
                    "status": "succeeded",
                    "result_key": "k",
                    "created_at": created,
                    "deadline": created + timedelta(minutes=1),
                    "upload_expires_at": created + timedelta(hours=1),
                }
            )
    metadata = sa.MetaData()
    task = sa.Table("task", metadata, autoload_with=engine)
    execution = sa.Table("task_execution", metadata, autoload_with=engine)
    with engine.begin() as connection:
        for rows, table in ((tasks, task), (executions, execution)):
            for start in range(0, len(rows), 2000):
                connection.execute(
                    table.insert(),
                    [
                        {
                            k: v.replace(tzinfo=None) if isinstance(v, datetime) else v
                            for k, v in row.items()
                        }
                        for row in rows[start : start + 2000]
                    ],
                )
        connection.exec_driver_sql("ANALYZE TABLE task, task_execution")


@pytest.fixture
def engine(clean_database: str) -> Any:
    engine = sa.create_engine(clean_database)
    yield engine
    engine.dispose()


def test_promotion_walks_its_index_and_reads_few_rows(engine: sa.Engine) -> None:
    seed(engine, finished=20_000, pending=30)
    plan, *subqueries = explain(engine, promotion_candidates("ocr", NOW, 100, "contracts"))
    assert plan["key"] == "ix_task_promotion"
    assert "filesort" not in (plan["Extra"] or "")  # rows come out in index order
    assert int(plan["rows"]) < 200, plan  # the PENDING ones, not the 20,000 finished
    # The draining check reads the attempts that drain now (a range of their index, set
    # only while draining) or a candidate's own attempts, never the whole history's
    for draining in subqueries:
        assert draining["table"] == "task_execution", draining
        assert (draining["type"], draining["key"]) in {
            ("range", "ix_task_execution_drain_until"),
            ("ref", "uq_task_execution_task_id_attempt"),
            ("eq_ref", "uq_task_execution_task_id_attempt"),
        }, draining
        assert int(draining["rows"]) < 10, draining


def test_the_apps_to_promote_are_read_from_the_index_alone(engine: sa.Engine) -> None:
    seed(engine, finished=20_000, pending=30)
    (plan,) = explain(engine, apps_with_pending_query("ocr"))
    assert plan["key"] == "ix_task_promotion"
    assert "Using index" in (plan["Extra"] or ""), plan  # no row read
    assert "filesort" not in (plan["Extra"] or "")
    assert int(plan["rows"]) < 200, plan


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (past_queue_deadline_query, "ix_task_status_queue_deadline"),
        (past_total_deadline_query, "ix_task_status_total_deadline"),
    ],
)
def test_the_sweep_reads_only_tasks_that_are_not_final_for_their_deadlines(
    engine: sa.Engine, query: Any, index: str
) -> None:
    seed(engine, finished=20_000, pending=30)
    (plan,) = explain(engine, query(NOW, 500))
    # An index led by the status (the one made for it, or the status/updated one when
    # MariaDB's estimates favour it): a range per waiting state, whatever the history.
    assert plan["key"] in (index, "ix_task_status_updated"), plan
    assert int(plan["rows"]) < 200, plan  # the 30 waiting ones, not the 20,000 finished


def test_sweep_reads_only_active_attempts(engine: sa.Engine) -> None:
    seed(engine, finished=20_000, pending=0)
    (plan,) = explain(engine, overdue_attempts_query(NOW, 500))
    assert plan["key"] == "ix_task_execution_status_deadline"
    assert int(plan["rows"]) < 100, plan


def _dispatching(engine: sa.Engine, count: int) -> list[tuple[str, int]]:
    """``count`` attempts being dispatched, their tasks running."""
    with engine.begin() as connection:
        rows = connection.exec_driver_sql(
            "SELECT id FROM task WHERE status = 'pending' LIMIT %s", (count,)
        ).all()
        pairs = [(row.id, 1) for row in rows]
        connection.exec_driver_sql(
            "UPDATE task SET status = 'running', attempts = 1 WHERE status = 'pending'"
        )
        created = (NOW - timedelta(minutes=1)).replace(tzinfo=None)
        connection.exec_driver_sql(
            "INSERT INTO task_execution (task_id, attempt, algorithm, app, cost, status, "
            "result_key, created_at, deadline, upload_expires_at) VALUES "
            + ", ".join(
                f"('{task_id}', 1, 'ocr', 'contracts', 1, 'dispatching', 'k', "
                f"'{created}', '{created}', '{created}')"
                for task_id, _ in pairs
            )
        )
        connection.exec_driver_sql("ANALYZE TABLE task, task_execution")
    return pairs


def test_a_dispatch_rounds_statements_take_their_rows_by_key_whatever_the_history(
    engine: sa.Engine,
) -> None:
    # Given a long history, and a round of ten attempts, the only ones being dispatched:
    # to the optimizer, the status index then looks as good as the unique key
    seed(engine, finished=20_000, pending=40)
    ours = _dispatching(engine, 10)

    (lock,) = explain(engine, lock_tasks_query([task_id for task_id, _ in ours]))
    (accept,) = explain(engine, accept_dispatches_statement(ours, NOW, 202))

    # The tasks by their primary key, the attempts by their unique key: never a range of
    # a status index (every attempt being dispatched), whose entries would be locked first
    assert (lock["key"], int(lock["rows"])) == ("PRIMARY", 10), lock
    assert accept["key"] == "uq_task_execution_task_id_attempt", accept
    assert int(accept["rows"]) <= 10, accept


def test_an_intake_batch_reads_its_tasks_and_kept_cancels_by_key(engine: sa.Engine) -> None:
    seed(engine, finished=20_000, pending=30)
    expires = (NOW + timedelta(hours=1)).replace(tzinfo=None)
    with engine.begin() as connection:  # a day's cancels kept, none of them this batch's
        connection.exec_driver_sql(
            "INSERT INTO cancel_tombstone (app, idempotency_key, created_at, expires_at) VALUES "
            + ", ".join(f"('contracts', 'gone-{n}', '{expires}', '{expires}')" for n in range(500))
        )
        connection.exec_driver_sql("ANALYZE TABLE cancel_tombstone")
    keys = [("contracts", f"k-{n}") for n in range(20_000, 20_010)]

    (tasks,) = explain(engine, tasks_by_key_query(keys))
    (cancels,) = explain(engine, kept_cancels_query(keys))

    assert tasks["key"] == "uq_task_app_idempotency_key", tasks
    assert int(tasks["rows"]) <= 10, tasks
    assert cancels["key"] == "PRIMARY", cancels  # not every cancel not expired yet
    assert int(cancels["rows"]) <= 10, cancels
