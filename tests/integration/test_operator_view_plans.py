"""The operators' views stay flat as history grows: ``baton tasks list`` and ``baton
stats`` read the recent or waiting rows through the indexes that lead by state, not
the 20,000 tasks finished a day ago."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from baton.records import TaskStatus
from baton.repository import (
    TaskListing,
    recent_attempts_query,
    task_list_query,
    timeouts_query,
    waiting_stats_query,
)

from tests.integration.test_query_plans import NOW, explain, seed


@pytest.fixture
def engine(clean_database: str) -> Any:
    engine = sa.create_engine(clean_database)
    yield engine
    engine.dispose()


@pytest.fixture
def history(engine: sa.Engine) -> sa.Engine:
    seed(engine, finished=20_000, pending=30)
    return engine


@pytest.mark.parametrize(
    "selection",
    [
        TaskListing(limit=50, since=NOW - timedelta(hours=1)),
        TaskListing(limit=50, since=NOW - timedelta(hours=1), app="contracts"),
        TaskListing(limit=50, since=NOW - timedelta(hours=1), status=TaskStatus.SUCCEEDED),
    ],
)
def test_the_newest_tasks_are_read_from_the_recent_rows(
    history: sa.Engine, selection: TaskListing
) -> None:
    (plan,) = explain(history, task_list_query(selection))
    assert plan["key"] == "ix_task_status_updated", plan
    assert int(plan["rows"]) < 200, plan


def test_the_waiting_counts_read_only_the_waiting_tasks(history: sa.Engine) -> None:
    (plan,) = explain(history, waiting_stats_query(NOW))
    assert plan["key"] in ("ix_task_status_updated", "ix_task_promotion"), plan
    assert int(plan["rows"]) < 200, plan


@pytest.mark.parametrize(
    "query",
    [
        lambda: timeouts_query(NOW - timedelta(hours=1)),
        lambda: recent_attempts_query(NOW - timedelta(hours=1), 10_000),
    ],
)
def test_the_recent_attempts_are_read_by_their_deadline(history: sa.Engine, query: Any) -> None:
    plans = explain(history, query())
    first = plans[0]
    assert first["key"] == "ix_task_execution_status_deadline", plans
    assert int(first["rows"]) < 100, plans
