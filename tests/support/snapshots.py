"""Snapshots of everything a refused input must leave alone: every database row and
every Redis key of the test's prefix."""

from __future__ import annotations

from typing import Any

import redis
import sqlalchemy as sa

TABLES = ("task", "task_execution", "notification_outbox")


REFUSAL_COLUMNS = frozenset({"refused_callbacks", "last_refusal"})
"""What a refused callback writes (against the attempt it names, for its timeout's
message): left out of a snapshot with ``except_refusals``."""


def database_rows(
    engine: sa.Engine, *, except_refusals: bool = False
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order (without the refused callbacks'
    count, with ``except_refusals``)."""
    left_out = REFUSAL_COLUMNS if except_refusals else frozenset()
    snapshot = {}
    with engine.connect() as connection:
        for table in TABLES:
            result = connection.exec_driver_sql(f"SELECT * FROM {table}")
            kept = [index for index, name in enumerate(result.keys()) if name not in left_out]
            snapshot[table] = sorted(
                (tuple(row[index] for index in kept) for row in result), key=repr
            )
    return snapshot


def refusals(engine: sa.Engine) -> dict[tuple[str, int], tuple[int, str | None]]:
    """The refused callbacks counted against each attempt that has any."""
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT task_id, attempt, refused_callbacks, last_refusal FROM task_execution "
            "WHERE refused_callbacks > 0"
        )
        return {(row[0], row[1]): (row[2], row[3]) for row in rows}


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
