"""Task rows as the tests see them: NewTask values, a repository over a URL, rows
counted or seeded with plain SQL (seeding a race test through the repository would
take longer than the race), and rows that a test knows exist."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from baton.database import create_repository
from baton.models import Task, TaskExecution
from baton.records import NewTask
from baton.repository import Repository

ALGORITHM = "ocr"

NewTaskFactory = Callable[..., NewTask]


def utcnow() -> datetime:
    """Now, at the microsecond precision the DATETIME(6) columns keep."""
    return datetime.now(UTC)


def build_repository(url: str, pool_size: int = 5) -> tuple[Repository, sa.Engine]:
    return create_repository(url, pool_size=pool_size)


def count_rows(engine: sa.Engine, table: str, where: str = "", **params: Any) -> int:
    sql = f"SELECT COUNT(*) FROM {table}" + (f" WHERE {where}" if where else "")
    with engine.connect() as connection:
        return int(connection.execute(sa.text(sql), params).scalar_one())


def seed_tasks(
    engine: sa.Engine, count: int, *, algorithm: str = ALGORITHM, status: str = "pending"
) -> list[str]:
    """Insert ``count`` tasks in one statement (fast seeding for the race tests),
    created 1 ms apart, oldest first; returns their ids in creation order."""
    base = utcnow().replace(tzinfo=None) - timedelta(minutes=5)
    rows: list[dict[str, Any]] = []
    for index in range(count):
        created = base + timedelta(milliseconds=index)
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "app": "contracts",
                "algorithm": algorithm,
                "key": f"seed-{uuid.uuid4().hex}",
                "created": created,
                "status": status,
            }
        )
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO task (id, app, algorithm, idempotency_key, priority, input,"
                " metadata, timeout_seconds, max_attempts, status, attempts, not_before,"
                " created_at, updated_at) VALUES (:id, :app, :algorithm, :key, 0, '{}', '{}',"
                " 60, 3, :status, 0, :created, :created, :created)"
            ),
            rows,
        )
    return [row["id"] for row in rows]


# The repository answers None for a missing row; these are for tests that know the row
# exists, so a missing one fails as an assertion naming it, not as an AttributeError.
def stored_task(repository: Repository, task_id: str) -> Task:
    task = repository.get_task(task_id)
    assert task is not None, f"no task {task_id}"
    return task


def stored_execution(repository: Repository, task_id: str, attempt: int) -> TaskExecution:
    execution = repository.get_execution(task_id, attempt)
    assert execution is not None, f"no attempt {attempt} of task {task_id}"
    return execution


def found_task(repository: Repository, app: str, idempotency_key: str) -> Task:
    task = repository.find_task(app, idempotency_key)
    assert task is not None, f"no task of {app} with key {idempotency_key}"
    return task
