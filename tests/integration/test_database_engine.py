"""The engine spends no round trip that does no work (baton.database), and loses no
safety for it: a read's metadata locks are still released, a dead idle connection is
still replaced, an uncommitted write is still undone."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest
import sqlalchemy as sa
from baton import database
from baton.database import create_database_engine, create_session_factory
from baton.models import Task
from baton.records import TaskStatus
from baton.repository import Repository

from tests.support.database import NewTaskFactory


@pytest.fixture
def driver_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """The driver's commits, rollbacks and pings, whoever makes them."""
    calls: Counter[str] = Counter()
    for name in ("commit", "rollback", "ping"):
        original = getattr(pymysql.connections.Connection, name)

        def counted(
            self: Any, *args: Any, _original: Any = original, _name: str = name, **kw: Any
        ) -> Any:
            calls[_name] += 1
            return _original(self, *args, **kw)

        monkeypatch.setattr(pymysql.connections.Connection, name, counted)
    return calls


def assert_task_table_alterable(url: str) -> None:
    """A migration's ALTER TABLE goes through at once: no idle connection holds the
    table's metadata lock (it waits 2 s at most, then fails)."""
    ddl = sa.create_engine(url, poolclass=sa.NullPool)
    with ddl.connect() as connection:
        connection.exec_driver_sql("SET SESSION lock_wait_timeout = 2")
        connection.exec_driver_sql("ALTER TABLE task COMMENT = 'probe'")
        connection.exec_driver_sql("ALTER TABLE task COMMENT = ''")
    ddl.dispose()


@pytest.fixture
def engine(clean_database: str) -> Iterator[sa.Engine]:
    engine = create_database_engine(clean_database, pool_size=1)
    yield engine
    engine.dispose()


def test_a_committed_unit_of_work_costs_one_commit_and_no_rollback_or_ping(
    engine: sa.Engine, new_task: NewTaskFactory, driver_calls: Counter[str]
) -> None:
    repository = Repository(create_session_factory(engine))
    repository.add_task(new_task())  # the connection exists and has been used once
    driver_calls.clear()
    for _ in range(5):
        repository.add_task(new_task())
    assert driver_calls == Counter(commit=5)


def test_a_read_is_rolled_back_once_and_leaves_no_metadata_lock(
    engine: sa.Engine, clean_database: str, new_task: NewTaskFactory, driver_calls: Counter[str]
) -> None:
    repository = Repository(create_session_factory(engine))
    task, _ = repository.add_task(new_task())
    driver_calls.clear()
    assert repository.get_task(task.id) is not None
    assert driver_calls == Counter(rollback=1)
    # The pooled connection is idle now; a transaction left open by its SELECT would
    # hold the table's metadata lock and make this ALTER wait.
    assert_task_table_alterable(clean_database)


def test_a_write_handed_back_uncommitted_is_undone(
    engine: sa.Engine, new_task: NewTaskFactory
) -> None:
    repository = Repository(create_session_factory(engine))
    task, _ = repository.add_task(new_task())
    with engine.connect() as connection:
        connection.execute(
            sa.update(Task).where(Task.id == task.id).values(status=TaskStatus.FAILED)
        )
        # closed without a commit: the pool's reset must roll it back
    stored = repository.get_task(task.id)
    assert stored is not None
    assert stored.status is TaskStatus.PENDING


def test_a_connection_in_steady_use_is_not_pinged_and_an_idle_one_is(
    engine: sa.Engine,
    new_task: NewTaskFactory,
    driver_calls: Counter[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repository = Repository(create_session_factory(engine))
    repository.add_task(new_task())
    driver_calls.clear()
    repository.add_task(new_task())
    assert driver_calls["ping"] == 0
    monkeypatch.setattr(database, "IDLE_PING_SECONDS", 0.0)
    repository.add_task(new_task())
    assert driver_calls["ping"] == 1


def test_an_idle_connection_that_died_is_replaced_before_use(
    engine: sa.Engine,
    clean_database: str,
    new_task: NewTaskFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repository = Repository(create_session_factory(engine))
    repository.add_task(new_task())
    with engine.connect() as connection:
        thread_id = connection.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one()
    killer = sa.create_engine(clean_database, poolclass=sa.NullPool)
    with killer.connect() as connection:
        connection.exec_driver_sql(f"KILL {int(thread_id)}")
    killer.dispose()
    monkeypatch.setattr(database, "IDLE_PING_SECONDS", 0.0)
    _, created = repository.add_task(new_task())  # no error: a new connection serves it
    assert created
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one() != thread_id


def test_the_repositorys_reads_end_no_transaction_and_hold_no_lock(
    clean_database: str, new_task: NewTaskFactory, driver_calls: Counter[str]
) -> None:
    repository, engine = database.create_repository(clean_database, pool_size=1)
    task, _ = repository.add_task(new_task())
    repository.get_task(task.id)
    driver_calls.clear()
    for _ in range(3):
        assert repository.get_task_with_execution(task.id, 1)[0] is not None
        assert repository.find_task(task.app, task.idempotency_key) is not None
    assert driver_calls == Counter()  # no COMMIT, no ROLLBACK, no ping
    assert_task_table_alterable(clean_database)
    engine.dispose()


def test_a_connection_lost_in_a_unit_of_work_fails_it_plainly_and_the_next_one_works(
    engine: sa.Engine, clean_database: str, new_task: NewTaskFactory
) -> None:
    repository = Repository(create_session_factory(engine))
    task, _ = repository.add_task(new_task())
    killer = sa.create_engine(clean_database, poolclass=sa.NullPool)
    sessions = create_session_factory(engine)

    def lost_unit_of_work() -> None:
        with sessions() as session, session.begin():
            session.execute(sa.update(Task).where(Task.id == task.id).values(priority=9))
            thread_id = session.execute(sa.text("SELECT CONNECTION_ID()")).scalar_one()
            with killer.connect() as connection:
                connection.exec_driver_sql(f"KILL {int(thread_id)}")
            session.execute(sa.select(Task.id))  # the server is gone: the rollback follows

    with pytest.raises(sa.exc.OperationalError):
        lost_unit_of_work()
    killer.dispose()
    stored = repository.get_task(task.id)  # a new connection, no PendingRollbackError
    assert stored is not None
    assert stored.priority == 0  # the lost transaction's write was never committed


def test_every_connection_shares_one_tls_context_and_connects_as_before(
    clean_database: str,
) -> None:
    engine = create_database_engine(clean_database, pool_size=1)
    reads = database.create_read_engine(clean_database, pool_size=1)
    contexts: list[object] = []
    for source in (engine, engine, reads):
        connection = source.raw_connection()
        try:
            dbapi = connection.dbapi_connection
            assert isinstance(dbapi, pymysql.connections.Connection)
            contexts.append(dbapi.ctx)
            cursor = dbapi.cursor()
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
        finally:
            connection.invalidate()  # the next one is a new connection
    assert len({id(context) for context in contexts}) == 1
    engine.dispose()
    reads.dispose()
