"""Fixtures for the integration tier: a Repository over the run's MariaDB database
(emptied for each test), a TaskQueue over this test's Redis key prefix, and a factory
of NewTask values."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from baton.database import create_database_engine, create_session_factory
from baton.queue import TaskQueue
from baton.records import NewTask
from baton.repository import Repository

from tests.support.database import ALGORITHM, NewTaskFactory, utcnow


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
