"""Engine and session factory: one per cold start, sessions scoped to one unit of work.

The database is the one part of the stack that does not scale out with Lambda, so the
engine spends no round trip that does no work:

- No ping on every checkout. A connection idle for longer than ``IDLE_PING_SECONDS``
  (a frozen Lambda, a quiet timer) is pinged before use and replaced if dead; one in
  steady use is not. A connection that dies in between fails its unit of work, the
  pool is invalidated (SQLAlchemy's disconnect handling) and the caller's retry (SQS
  redelivery, the next timer tick, the algorithm's callback retry) gets a new one.
  Connections are recycled after ``RECYCLE_SECONDS``, before any idle timeout of the
  server or the network between.
- No ``ROLLBACK`` for a connection handed back with nothing to undo: one whose last
  transaction committed or rolled back already. A connection that ran a statement since
  is rolled back as before: even a plain ``SELECT`` opens a transaction that holds its
  tables' metadata locks (a migration's ``ALTER TABLE`` would wait on an idle pooled
  connection), and MariaDB does not flag such a transaction in its status packets.
- No TLS context built per connection. PyMySQL builds one for each connection it
  opens, in its opportunistic mode (TLS when the server offers it, unverified): the
  system's CA store loaded each time, ~50 ms of CPU, more than the statements the
  connection then runs, for a context that verifies nothing. ``_Connection`` gives
  every connection of the process the same such context, built once, without the CA
  store it never reads.
- No transaction at all for a read (``create_read_engine``): the repository's reads
  that lock nothing run on connections in autocommit mode, each statement on its own,
  so there is nothing to roll back. Under READ COMMITTED a statement sees what was
  committed when it began, in a transaction or not, so a read loses nothing by it. It
  costs a second, small pool: a warm function holds one more connection.
"""

from __future__ import annotations

import functools
import ssl
import time
from typing import Any

import pymysql
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, PoolResetState

from baton.repository import Repository

IDLE_PING_SECONDS = 30.0
RECYCLE_SECONDS = 300

_DIRTY = "baton_dirty"
"""In a connection's ``info``: a statement ran since its last commit or rollback."""
_CHECKED_IN_AT = "baton_checked_in_at"


def create_database_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine tuned for short compare-and-set transactions from Lambda."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_pre_ping=True,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=RECYCLE_SECONDS,
        # The reset below rolls back only what needs it.
        pool_reset_on_return=None,
        # READ COMMITTED avoids InnoDB gap locks on the queue-like task table.
        isolation_level="READ COMMITTED",
        connect_args={"connect_timeout": 5, "read_timeout": 30, "write_timeout": 30},
    )
    event.listen(engine, "do_connect", _connect)
    event.listen(engine, "before_cursor_execute", _mark_dirty)
    event.listen(engine, "commit", _mark_clean)
    event.listen(engine, "rollback", _mark_clean)
    event.listen(engine.pool, "checkout", _ping_if_idle)
    event.listen(engine.pool, "checkin", _note_checkin)
    event.listen(engine.pool, "reset", _roll_back_if_dirty)
    return engine


class _Connection(pymysql.connections.Connection):
    """PyMySQL's connection, with its opportunistic TLS context shared (built once)."""

    def _create_ssl_ctx(self, sslp: Any) -> ssl.SSLContext:
        if sslp:  # explicit TLS options: PyMySQL's own context for them
            context: ssl.SSLContext = super()._create_ssl_ctx(sslp)  # type: ignore[misc]
            return context
        return _opportunistic_tls()


@functools.cache
def _opportunistic_tls() -> ssl.SSLContext:
    # What PyMySQL builds without TLS options (pinned: PyMySQL 2.2), once, and without
    # the CA store: a context that verifies no certificate never reads one.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
    return _Connection(*cargs, **cparams)


def create_read_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine for reads that lock nothing: autocommit, so no transaction to end."""
    engine = create_engine(
        url,
        pool_size=1,
        max_overflow=pool_size,
        pool_recycle=RECYCLE_SECONDS,
        pool_reset_on_return=None,
        isolation_level="AUTOCOMMIT",
        skip_autocommit_rollback=True,
        connect_args={"connect_timeout": 5, "read_timeout": 30, "write_timeout": 30},
    )
    event.listen(engine, "do_connect", _connect)
    event.listen(engine.pool, "checkout", _ping_if_idle)
    event.listen(engine.pool, "checkin", _note_checkin)
    return engine


def create_repository(url: str, *, pool_size: int = 5) -> tuple[Repository, Engine]:
    """The repository over ``url``: units of work on one engine, reads on another;
    returns the first engine too (tests and tools read and write beside it)."""
    engine = create_database_engine(url, pool_size=pool_size)
    # SQLite (the local defaults) reads where it writes: an in-memory database is
    # one per engine.
    reads = None
    if engine.dialect.name != "sqlite":
        reads = create_session_factory(create_read_engine(url, pool_size=pool_size))
    repository = Repository(create_session_factory(engine), reads=reads)
    return repository, engine


def _mark_dirty(connection: Connection, *_args: Any) -> None:
    connection.info[_DIRTY] = True


def _mark_clean(connection: Connection) -> None:
    # Fired before the driver's commit or rollback: should that fail, the pool's reset
    # below still sees the server's in-transaction flag, or the connection is invalid.
    # One invalidated by a disconnect is discarded by the pool: nothing to track (and
    # reading its info would try to reconnect in the middle of the rollback).
    if connection.invalidated or connection.closed:
        return
    connection.info[_DIRTY] = False


def _in_transaction(dbapi_connection: Any) -> bool:
    status = getattr(dbapi_connection, "server_status", None)
    return status is None or bool(status & _SERVER_STATUS_IN_TRANS)


_SERVER_STATUS_IN_TRANS = 1  # pymysql.constants.SERVER_STATUS.SERVER_STATUS_IN_TRANS


def _roll_back_if_dirty(
    dbapi_connection: Any, record: ConnectionPoolEntry, state: PoolResetState
) -> None:
    if state.terminate_only:
        return
    if record.info.get(_DIRTY, True) or _in_transaction(dbapi_connection):
        dbapi_connection.rollback()
        record.info[_DIRTY] = False


def _note_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info[_CHECKED_IN_AT] = time.monotonic()


def _ping_if_idle(
    dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
) -> None:
    checked_in_at = record.info.get(_CHECKED_IN_AT)
    if checked_in_at is None or time.monotonic() - checked_in_at < IDLE_PING_SECONDS:
        return
    try:
        dbapi_connection.ping(reconnect=False)
    except Exception as exc:
        # The pool discards this connection and checks out another (or a new one).
        raise DisconnectionError(f"connection idle for long is dead: {exc}") from exc


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy emit BEGIN itself (below) instead of pysqlite's deferred one.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _sqlite_begin_immediate(connection: Any) -> None:
    # A deferred transaction that reads, then writes, fails at once with "database is
    # locked" when another writer got in between; taking the write lock up front makes
    # SQLite's busy timeout apply, so concurrent workers queue instead of failing.
    connection.exec_driver_sql("BEGIN IMMEDIATE")
