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
from baton.database import create_repository
from baton.queue import TaskQueue
from baton.records import NewTask
from baton.repository import Repository

from tests.support.database import ALGORITHM, NewTaskFactory, utcnow


@pytest.fixture
def built(clean_database: str) -> Iterator[tuple[Repository, sa.Engine]]:
    """The repository as functions build it (its reads on an engine of their own), and
    the engine of its units of work."""
    repository, engine = create_repository(clean_database, pool_size=10)
    yield repository, engine
    engine.dispose()
    repository._reads.kw["bind"].dispose()


@pytest.fixture
def engine(built: tuple[Repository, sa.Engine]) -> sa.Engine:
    return built[1]


@pytest.fixture
def repository(built: tuple[Repository, sa.Engine]) -> Repository:
    return built[0]


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
