"""Fixtures of the fuzz tier: the log lines the handlers write, and a look at the
database that a refused input must leave alone (helpers in tests/support: corpus.py,
logs.py, snapshots.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from baton.observability import logger as baton_logger

from tests.support.logs import CapturedLogs, LogCollector

# -- log lines -----------------------------------------------------------------------------


@pytest.fixture
def captured_logs() -> Iterator[CapturedLogs]:
    sink = CapturedLogs()
    collector = LogCollector(sink)
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
