"""Fixtures for the integration tier: a Repository over the run's MariaDB database
(emptied for each test), a TaskQueue over this test's Redis key prefix, and a factory
of NewTask values."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from baton.database import create_database_engine, create_session_factory
from baton.queue import TaskQueue
from baton.records import NewTask
from baton.repository import Repository

ALGORITHM = "ocr"

NewTaskFactory = Callable[..., NewTask]


def utcnow() -> datetime:
    """Now, at the microsecond precision the DATETIME(6) columns keep."""
    return datetime.now(UTC)


def build_repository(url: str, pool_size: int = 5) -> tuple[Repository, sa.Engine]:
    engine = create_database_engine(url, pool_size=pool_size)
    return Repository(create_session_factory(engine)), engine


@pytest.fixture
def engine(clean_database: str) -> Iterator[sa.Engine]:
    engine = create_database_engine(clean_database, pool_size=10)
    yield engine
    engine.dispose()


@pytest.fixture
def repository(engine: sa.Engine) -> Repository:
    return Repository(create_session_factory(engine))


@pytest.fixture
def task_queue(redis_client: redis.Redis, key_prefix: str) -> TaskQueue:
    return TaskQueue(redis_client, key_prefix)


@pytest.fixture
def new_task() -> NewTaskFactory:
    """NewTask values with fresh ids and keys; each call is created 1 ms after the
    previous one (unless ``created_at`` is given), so age order is deterministic."""
    base = utcnow() - timedelta(minutes=10)
    counter = itertools.count()

    def factory(**overrides: Any) -> NewTask:
        created_at = overrides.pop("created_at", None) or base + timedelta(
            milliseconds=next(counter)
        )
        fields: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "app": "contracts",
            "algorithm": ALGORITHM,
            "idempotency_key": uuid.uuid4().hex,
            "priority": 0,
            "input": {"document": "s3://in/doc.pdf"},
            "metadata": {"ref": "r-1"},
            "timeout_seconds": 30,
            "max_attempts": 3,
            "not_before": created_at,
            "created_at": created_at,
        }
        fields.update(overrides)
        return NewTask(**fields)

    return factory


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
    rows = []
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
