"""Helpers of the fuzz tier: the corpora, the log lines the handlers write, and
snapshots of everything a refused input must leave alone (database rows, Redis keys)."""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from baton.observability import logger as baton_logger

CORPUS = Path(__file__).parent / "corpus"
TABLES = ("task", "task_execution", "notification_outbox")


# -- corpora -------------------------------------------------------------------------------


def load_corpus(name: str) -> list[dict[str, Any]]:
    """One JSON object per line; ``repeat`` entries expand markers into long runs
    (a 300 KiB body is stored as a marker, not as 300 KiB of 'x')."""
    entries = []
    for line in (CORPUS / name).read_text().splitlines():
        if line.strip():
            entries.append(_expand(json.loads(line)))
    return entries


def _expand(entry: dict[str, Any]) -> dict[str, Any]:
    repeats = entry.get("repeat") or []

    def expand(value: Any) -> Any:
        if isinstance(value, str):
            for repeat in repeats:
                value = value.replace(repeat["marker"], repeat["text"] * repeat["times"])
            return value
        if isinstance(value, dict):
            return {key: expand(item) for key, item in value.items()}
        if isinstance(value, list):
            return [expand(item) for item in value]
        return value

    return {key: (value if key == "repeat" else expand(value)) for key, value in entry.items()}


def raw_body(entry: dict[str, Any]) -> bytes:
    """The bytes of an SQS corpus body."""
    if "body_base64" in entry:
        return base64.b64decode(entry["body_base64"])
    return str(entry["body"]).encode("utf-8", "surrogatepass")


def names_field(reason: str, field: str) -> bool:
    """The reason has a 'field: ...' or 'field.sub: ...' problem (as the unit tests say)."""
    return re.search(rf"(^|; ){re.escape(field)}(\.[^:]*)?: ", reason) is not None


# -- log lines -----------------------------------------------------------------------------


@dataclass
class CapturedLogs:
    """Every line the package's Powertools logger wrote, as the JSON it puts on stdout."""

    lines: list[str] = field(default_factory=list)

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]

    def with_message(self, message: str) -> list[dict[str, Any]]:
        return [record for record in self.records if record.get("message") == message]

    def clear(self) -> None:
        self.lines.clear()


class _Collector(logging.Handler):
    def __init__(self, sink: CapturedLogs) -> None:
        super().__init__()
        self._sink = sink
        self.setFormatter(baton_logger.registered_formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self._sink.lines.append(self.format(record))


@pytest.fixture
def captured_logs() -> Iterator[CapturedLogs]:
    sink = CapturedLogs()
    collector = _Collector(sink)
    target = logging.getLogger(baton_logger.service)
    target.addHandler(collector)
    try:
        yield sink
    finally:
        target.removeHandler(collector)


# -- what a refused input must not change -----------------------------------------------------


@pytest.fixture
def db(clean_database: str) -> Iterator[sa.Engine]:
    """A connection pool of the test's own on the emptied database (for looking only)."""
    engine = sa.create_engine(clean_database)
    yield engine
    engine.dispose()


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
