"""Snapshots of everything a refused input must leave alone: every database row and
every Redis key of the test's prefix."""

from __future__ import annotations

from typing import Any

import redis
import sqlalchemy as sa

TABLES = ("task", "task_execution", "notification_outbox")


def database_rows(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order."""
    with engine.connect() as connection:
        return {
            table: sorted(
                (tuple(row) for row in connection.exec_driver_sql(f"SELECT * FROM {table}")),
                key=repr,
            )
            for table in TABLES
        }


def redis_state(client: redis.Redis, prefix: str) -> dict[bytes, Any]:
    """Every key of the test's prefix with its whole value (sets and hashes sorted)."""
    state: dict[bytes, Any] = {}
    for key in sorted(client.scan_iter(match=f"{prefix}:*", count=1000)):
        kind = client.type(key)
        if kind == b"string":
            state[key] = client.get(key)
        elif kind == b"zset":
            state[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"hash":
            state[key] = sorted(client.hgetall(key).items())
        elif kind == b"set":
            state[key] = sorted(client.smembers(key))
        elif kind == b"list":
            state[key] = client.lrange(key, 0, -1)
        else:
            state[key] = kind
    return state
