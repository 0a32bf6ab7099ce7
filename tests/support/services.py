"""Where the real services are (MariaDB and Redis on this machine, overridable by
environment), and how a test run keeps to its own share of them: one database per
run, one Redis key prefix per test."""

from __future__ import annotations

import os
import socket
import uuid

import redis

MYSQL_SERVER_URL = os.environ.get("BATON_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
REDIS_URL = os.environ.get("BATON_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Names this run's database and prefixes its Redis keys; fixed at import, so one per run.
RUN_ID = uuid.uuid4().hex[:10]


def flush_prefix(client: redis.Redis, prefix: str) -> int:
    """What a flush or failover does to Baton, limited to this test's keys."""
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    return int(client.delete(*keys)) if keys else 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
