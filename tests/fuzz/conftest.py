"""Fixtures of the fuzz tier: the log lines the handlers write, and a look at the
database that a refused input must leave alone (helpers in tests/support: corpus.py,
logs.py, snapshots.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.support.logs import CapturedLogs, captured_log_lines

# -- log lines -----------------------------------------------------------------------------


@pytest.fixture
def captured_logs() -> Iterator[CapturedLogs]:
    with captured_log_lines() as sink:
        yield sink


# -- what a refused input must not change -----------------------------------------------------


@pytest.fixture
def db(clean_database: str) -> Iterator[sa.Engine]:
    """A connection pool of the test's own on the emptied database (for looking only)."""
    engine = sa.create_engine(clean_database)
    yield engine
    engine.dispose()
