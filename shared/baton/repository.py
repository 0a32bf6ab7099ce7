"""Every read and write of the database, one unit of work per method.

State changes are compare-and-set (``UPDATE ... WHERE status = :expected``), so two
workers racing for the same task cannot both win, and a late actor changes nothing.
Locks are always taken task row first, then execution row.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    Select,
    Table,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from baton.models import (
    AlgorithmHold,
    CancelTombstone,
    NotificationOutbox,
    PolicyGap,
    Task,
    TaskExecution,
    UTCDateTime,
)
from baton.records import (
    ACTIVE_EXECUTION_STATUSES,
    AcceptedDispatch,
    ActiveAttempt,
    AttemptOutcome,
    AttemptStart,
    Drain,
    Draining,
    EndedTask,
    ExecutionStatus,
    FinishedAttempt,
    NewTask,
    QueuedTask,
    StartedAttempt,
    TaskStatus,
)

PUBLISH_CLAIM_SECONDS = 60
"""How long a publisher holds an outbox row before another may publish it again: the
transaction that ends a task claims its row so for its caller, who publishes next
(``outbox.publish_notification``); the sweep's publisher claims a row it takes so."""


def promotion_candidates(
    algorithm: str, now: datetime, limit: int, app: str | None = None
) -> Select[str, int, int, datetime, str, int]:
    """The best eligible PENDING tasks of one algorithm (of one app, when given): an
    ordered walk of ``ix_task_promotion`` that stops after ``limit`` rows, however long
    the backlog. A task whose last attempt still drains is not eligible yet."""
    conditions = [
        Task.algorithm == algorithm,
        Task.status == TaskStatus.PENDING,
        Task.not_before <= now,
        # A retry waits for its previous attempt to drain: the service may still be on
        # it, and a task never runs twice at once. One look-up of the (task_id, attempt)
        # index per candidate; the subquery's rows are not locked.
        ~exists().where(TaskExecution.task_id == Task.id, TaskExecution.drain_until.is_not(None)),
    ]
    if app is not None:
        conditions.append(Task.app == app)
    return (
        select(Task.id, Task.attempts, Task.priority, Task.created_at, Task.app, Task.cost)
        .where(*conditions)
        .order_by(Task.priority.desc(), Task.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


def apps_with_pending_query(algorithm: str) -> Select[str]:
    return (
        select(Task.app)
        .where(Task.algorithm == algorithm, Task.status == TaskStatus.PENDING)
        .group_by(Task.app)
    )


def lock_tasks_query(task_ids: Sequence[str]) -> Select[Task]:
    """These tasks, locked by their primary key alone and in its order: two rounds that
    share tasks lock them in the same order, and no status index entry first."""
    return select(Task).where(Task.id.in_(task_ids)).order_by(Task.id).with_for_update()


def tasks_by_key_query(keys: Sequence[tuple[str, str]]) -> Select[Task]:
    """Tasks by ``(app, idempotency_key)``: ranges of the unique key's index."""
    return select(Task).where(tuple_(Task.app, Task.idempotency_key).in_(keys))


def kept_cancels_query(keys: Sequence[tuple[str, str]]) -> Select[CancelTombstone]:
    """The cancels kept for these keys, locked: by their primary key alone (a condition
    on ``expires_at`` would let the optimizer walk, and lock, every cancel not expired
    yet; the caller skips the expired ones)."""
    return (
        select(CancelTombstone)
        .where(tuple_(CancelTombstone.app, CancelTombstone.idempotency_key).in_(keys))
        .with_for_update()
    )


def accept_dispatches_statement(
    pairs: Sequence[tuple[str, int]], now: datetime, http_status: int
) -> Any:
    """DISPATCHING -> RUNNING for these ``(task_id, attempt)`` pairs, through their
    unique index: left to itself, MariaDB may pick the status index (a range over every
    attempt being dispatched), and lock its entries before the rows, the order a
    callback ending one of them does not take."""
    return (
        update(TaskExecution)
        .where(
            tuple_(TaskExecution.task_id, TaskExecution.attempt).in_(pairs),
            TaskExecution.status == ExecutionStatus.DISPATCHING,
        )
        .values(status=ExecutionStatus.RUNNING, accepted_at=now, http_status=http_status)
        .with_hint("FORCE INDEX (uq_task_execution_task_id_attempt)", dialect_name="mysql")
    )


def _moved(deadline: datetime | None, start: datetime, now: datetime) -> datetime | None:
    """A deadline counted from ``start``, counted from ``now`` instead."""
    return None if deadline is None else now + (deadline - start)


def past_queue_deadline_query(now: datetime, limit: int) -> Select[str]:
    """Ranges of ``ix_task_status_queue_deadline``, one per waiting state: the finished
    tasks, however many, are never read."""
    return (
        select(Task.id)
        .where(
            Task.status.in_([TaskStatus.PENDING, TaskStatus.QUEUED]),
            Task.queue_deadline < now,
            Task.first_accepted_at.is_(None),
        )
        .limit(limit)
    )


def past_total_deadline_query(now: datetime, limit: int) -> Select[str]:
    """Ranges of ``ix_task_status_total_deadline``, one per state that is not final."""
    return (
        select(Task.id)
        .where(
            Task.status.in_([TaskStatus.PENDING, TaskStatus.QUEUED, TaskStatus.RUNNING]),
            Task.total_deadline < now,
        )
        .limit(limit)
    )


_ACTIVE_COLUMNS = (
    TaskExecution.task_id,
    TaskExecution.attempt,
    TaskExecution.algorithm,
    TaskExecution.deadline,
    TaskExecution.app,
    TaskExecution.cost,
    TaskExecution.endpoint,
)


def _active(row: Any) -> ActiveAttempt:
    return ActiveAttempt(
        row.task_id, row.attempt, row.algorithm, row.deadline, row.app, row.cost, row.endpoint or ""
    )


def _queued(row: Any) -> QueuedTask:
    return QueuedTask(row.id, row.attempts + 1, row.priority, row.created_at, row.app, row.cost)


def overdue_attempts_query(
    now: datetime, limit: int
) -> Select[str, int, str, datetime, str, int, str | None]:
    """Active attempts past their deadline: a range of ``ix_task_execution_status_deadline``
    that never reads the finished attempts, however many there are."""
    return (
        select(*_ACTIVE_COLUMNS)
        .where(
            TaskExecution.status.in_(ACTIVE_EXECUTION_STATUSES),
            TaskExecution.deadline < now,
        )
        .order_by(TaskExecution.deadline)
        .limit(limit)
    )


@dataclass(frozen=True)
class RetrySelection:
    """Which final tasks an operator retries in bulk (``baton tasks retry``)."""

    status: TaskStatus
    app: str | None = None
    algorithm: str | None = None
    error_code: str | None = None
    since: datetime | None = None
    """Tasks that reached ``status`` at or after this moment."""
    ended_by: datetime | None = None
    """...and before this one: a task retried by the same run, which ends again, is not
    taken a second time."""


def retry_candidates_query(
    selection: RetrySelection, after: tuple[datetime, str] | None, limit: int
) -> Select[Task]:
    """The selected tasks, oldest ended first, from ``after`` (a keyset cursor of
    ``(updated_at, id)``): a range of ``ix_task_status_updated``.

    A final row is updated only when it ends (``updated_at`` = ``finished_at``) and when
    a retry takes it out of its state, so ``updated_at`` bounds the walk and
    ``finished_at`` says what the operator asked for.
    """
    conditions = _retry_conditions(selection)
    if after is not None:
        conditions.append(tuple_(Task.updated_at, Task.id) > tuple_(*after))
    return select(Task).where(*conditions).order_by(Task.updated_at, Task.id).limit(limit)


def _retry_conditions(selection: RetrySelection) -> list[Any]:
    conditions: list[Any] = [Task.status == selection.status]
    if selection.app is not None:
        conditions.append(Task.app == selection.app)
    if selection.algorithm is not None:
        conditions.append(Task.algorithm == selection.algorithm)
    if selection.error_code is not None:
        conditions.append(Task.error_code == selection.error_code)
    if selection.since is not None:
        conditions += [Task.updated_at >= selection.since, Task.finished_at >= selection.since]
    if selection.ended_by is not None:
        conditions.append(Task.updated_at <= selection.ended_by)
    return conditions


@dataclass(frozen=True)
class AlgorithmBacklog:
    """The tasks of one algorithm that wait for a dispatch, as the sweep's gauges read them."""

    pending: int = 0
    queued: int = 0
    due: int = 0
    """Of those, how many may start now (queued, or pending past their ``not_before``)."""
    oldest_due_created_at: datetime | None = None


def backlog_query(now: datetime) -> Select[str, TaskStatus, int, int, datetime | None]:
    """One grouped read of every algorithm's waiting tasks: counts, and the oldest of
    those that may start now."""
    due = Task.not_before <= now
    return (
        select(
            Task.algorithm,
            Task.status,
            func.count(),
            func.coalesce(func.sum(case((due, 1), else_=0)), 0),
            type_coerce(func.min(case((due, Task.created_at), else_=None)), UTCDateTime()),
        )
        .where(Task.status.in_([TaskStatus.PENDING, TaskStatus.QUEUED]))
        .group_by(Task.algorithm, Task.status)
    )


def _task_row(new: NewTask) -> dict[str, Any]:
    """A new task's row, by the model's attribute names."""
    return {
        "id": new.id,
        "app": new.app,
        "algorithm": new.algorithm,
        "idempotency_key": new.idempotency_key,
        "priority": new.priority,
        "input": new.input,
        "meta": new.metadata,
        "timeout_seconds": new.timeout_seconds,
        "max_attempts": new.max_attempts,
        "attempt_budget": new.attempt_budget,
        "cost": new.cost,
        "queue_deadline": new.queue_deadline,
        "total_deadline": new.total_deadline,
        "status": TaskStatus.PENDING,
        "attempts": 0,
        "not_before": new.not_before,
        "created_at": new.created_at,
        "updated_at": new.created_at,
    }


def _table(model: type[Task | TaskExecution]) -> Table:
    return cast("Table", model.__table__)


def _task_columns(new: NewTask) -> dict[str, Any]:
    """A new task's row, by the table's column names."""
    row = _task_row(new)
    row["metadata"] = row.pop("meta")
    return row


def _insert_skipping_duplicates(session: Session) -> Any:
    """A Core ``INSERT`` of task rows (by column name, executed for many at once: one
    multi-row statement, compiled once) that leaves a row whose unique key is taken as
    it is, in the dialect's words (MySQL's no-op ``ON DUPLICATE KEY UPDATE`` rather
    than ``INSERT IGNORE``, which would also turn a bad value into a warning)."""
    table = _table(Task)
    if session.get_bind().dialect.name == "sqlite":
        # Imported here: the functions on Lambda never load the SQLite dialect.
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing()
    # "id = task.id": the taken row keeps every value, its id included.
    return mysql_insert(table).on_duplicate_key_update(id=table.c.id)


def _rowcount(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return result.rowcount


class Repository:
    def __init__(
        self, sessions: sessionmaker[Session], *, reads: sessionmaker[Session] | None = None
    ) -> None:
        self._sessions = sessions
        self._reads = reads or sessions
        """Reads that lock nothing: on an autocommit engine (``database.create_read_engine``)
        where there is one."""

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    @staticmethod
    def _lock_task(session: Session, task_id: str) -> Task | None:
        return session.scalars(
            select(Task).where(Task.id == task_id).with_for_update()
        ).one_or_none()

    @staticmethod
    def _move_execution(
        session: Session,
        task_id: str,
        attempt: int,
        expected: Iterable[ExecutionStatus],
        *,
        deadline_before: datetime | None = None,
        **values: Any,
    ) -> bool:
        """Compare-and-set on one attempt's row: True if it was in ``expected`` (and,
        given ``deadline_before``, its deadline was still before that)."""
        conditions = [
            TaskExecution.task_id == task_id,
            TaskExecution.attempt == attempt,
            TaskExecution.status.in_(list(expected)),
        ]
        if deadline_before is not None:
            conditions.append(TaskExecution.deadline < deadline_before)
        result = session.execute(update(TaskExecution).where(*conditions).values(**values))
        return _rowcount(result) == 1

    # -- intake -------------------------------------------------------------------------

    def add_tasks(self, news: Sequence[NewTask]) -> list[tuple[Task, bool]]:
        """Step 3 for a whole intake batch, in one transaction: insert the tasks, each
        or, for one already stored under its idempotency key (a redelivery, or a twin
        in the same batch), return that one with ``False``.

        One multi-row insert that skips the rows whose ``(app, idempotency_key)`` is
        taken (the unique constraint decides races between deliveries, as it does for
        one task), one read of the batch's rows by those keys (a row with the id this
        batch gave it is new), and one locking read of the cancels kept for the new
        ones (``_apply_kept_cancel``). A failure fails the whole batch: the caller
        stores its tasks one by one then, so a bad one fails alone.
        """
        if not news:
            return []
        keys = sorted({(new.app, new.idempotency_key) for new in news})
        with self._transaction() as session:
            # In key order: two batches that share keys lock them in the same order.
            rows = sorted(
                (_task_columns(new) for new in news),
                key=lambda r: (r["app"], r["idempotency_key"]),
            )
            session.execute(_insert_skipping_duplicates(session), rows)
            stored = {
                (task.app, task.idempotency_key): task
                for task in session.scalars(tasks_by_key_query(keys))
            }
            ours = {new.id for new in news}
            created = [task for task in stored.values() if task.id in ours]
            if created:
                self._apply_kept_cancels(session, created, min(n.created_at for n in news))
        return [
            (task, task.id == new.id)
            for new in news
            for task in (stored[(new.app, new.idempotency_key)],)
        ]

    def _apply_kept_cancels(self, session: Session, tasks: Sequence[Task], now: datetime) -> None:
        """``_apply_kept_cancel`` for many new tasks, in one locking read."""
        by_key = {(task.app, task.idempotency_key): task for task in tasks}
        kept = session.scalars(kept_cancels_query(sorted(by_key))).all()
        for cancel in (cancel for cancel in kept if cancel.expires_at > now):
            task = by_key[(cancel.app, cancel.idempotency_key)]
            task.error_code = "cancelled"
            task.error_message = cancel.reason or "cancelled before the task arrived"
            self._finalize(session, task, TaskStatus.CANCELLED, now)
            session.delete(cancel)

    def add_task(self, new: NewTask) -> tuple[Task, bool]:
        """Step 3: insert the task, or return the one already stored under its idempotency key.

        The unique ``(app, idempotency_key)`` constraint decides races between deliveries.
        """
        task = Task(**_task_row(new))
        try:
            with self._transaction() as session:
                session.add(task)
                session.flush()
                self._apply_kept_cancel(session, task, new.created_at)
            return task, True
        except IntegrityError:
            existing = self.find_task(new.app, new.idempotency_key)
            if existing is None:  # the constraint that fired was not the idempotency key
                raise
            return existing, False

    def _apply_kept_cancel(self, session: Session, task: Task, now: datetime) -> None:
        """A cancel by this task's key arrived first: the task is stored cancelled, so
        that nothing ever dispatches it. A locking read after the task's insert, in step
        with ``keep_cancel`` (which writes the cancel, then reads the task so): of two
        that race, the second waits for the first's commit and sees its row."""
        kept = session.scalars(
            select(CancelTombstone)
            .where(
                CancelTombstone.app == task.app,
                CancelTombstone.idempotency_key == task.idempotency_key,
                CancelTombstone.expires_at > now,
            )
            .with_for_update()
        ).one_or_none()
        if kept is None:
            return
        task.error_code = "cancelled"
        task.error_message = kept.reason or "cancelled before the task arrived"
        self._finalize(session, task, TaskStatus.CANCELLED, now)
        session.delete(kept)

    def find_task(self, app: str, idempotency_key: str) -> Task | None:
        with self._reads() as session:
            return session.scalars(
                select(Task).where(Task.app == app, Task.idempotency_key == idempotency_key)
            ).one_or_none()

    def get_task(self, task_id: str) -> Task | None:
        with self._reads() as session:
            return session.get(Task, task_id)

    def get_task_with_execution(
        self, task_id: str, attempt: int
    ) -> tuple[Task | None, TaskExecution | None]:
        """A task and one of its attempts, in one read."""
        with self._reads() as session:
            row = session.execute(
                select(Task, TaskExecution)
                .outerjoin(
                    TaskExecution,
                    (TaskExecution.task_id == Task.id) & (TaskExecution.attempt == attempt),
                )
                .where(Task.id == task_id)
            ).one_or_none()
            return (None, None) if row is None else (row[0], row[1])

    def get_execution(self, task_id: str, attempt: int) -> TaskExecution | None:
        with self._reads() as session:
            return session.scalars(
                select(TaskExecution).where(
                    TaskExecution.task_id == task_id, TaskExecution.attempt == attempt
                )
            ).one_or_none()

    def executions_of(self, task_id: str) -> list[TaskExecution]:
        with self._reads() as session:
            return list(
                session.scalars(
                    select(TaskExecution)
                    .where(TaskExecution.task_id == task_id)
                    .order_by(TaskExecution.attempt)
                )
            )

    # -- promotion ----------------------------------------------------------------------

    def apps_with_pending_tasks(self, algorithm: str) -> list[str]:
        """The apps with PENDING tasks of ``algorithm``, read from the prefix of
        ``ix_task_promotion`` alone."""
        with self._reads() as session:
            return sorted(session.scalars(apps_with_pending_query(algorithm)))

    def queue_pending_tasks(
        self, algorithm: str, now: datetime, limit: int, app: str | None = None
    ) -> list[QueuedTask]:
        """Step 4: claim up to ``limit`` eligible PENDING tasks of ``algorithm``, mark them
        QUEUED.

        ``SKIP LOCKED`` lets concurrent promoters take disjoint rows instead of waiting.
        """
        with self._transaction() as session:
            rows = session.execute(promotion_candidates(algorithm, now, limit, app)).all()
            if not rows:
                return []
            session.execute(
                update(Task)
                .where(Task.id.in_([row.id for row in rows]), Task.status == TaskStatus.PENDING)
                .values(status=TaskStatus.QUEUED, queued_at=now, updated_at=now)
            )
        return [_queued(row) for row in rows]

    def queued_tasks(self, algorithm: str) -> list[QueuedTask]:
        with self._reads() as session:
            rows = session.execute(
                select(
                    Task.id, Task.attempts, Task.priority, Task.created_at, Task.app, Task.cost
                ).where(Task.algorithm == algorithm, Task.status == TaskStatus.QUEUED)
            ).all()
        return [_queued(row) for row in rows]

    # -- dispatch -----------------------------------------------------------------------

    def start_attempt(
        self,
        task_id: str,
        attempt: int,
        now: datetime,
        result_key: str,
        upload_ttl_seconds: int,
        *,
        endpoint: str,
    ) -> StartedAttempt | None:
        """Step 6 for one attempt (``start_attempts``)."""
        return self.start_attempts(
            [AttemptStart(task_id, attempt, result_key, endpoint)], now, upload_ttl_seconds
        ).get(task_id)

    def start_attempts(
        self, starts: Sequence[AttemptStart], now: datetime, upload_ttl_seconds: int
    ) -> dict[str, StartedAttempt]:
        """Step 6 for a dispatch round, in one transaction: each task QUEUED -> RUNNING on
        its attempt, with a new execution row; by task id, those started, each on the
        attempt it was asked for (a task missing, or an attempt not started, was not
        QUEUED before that attempt: another worker won, it ended, or it moved on).

        The task rows are locked by their primary key alone, in id order (so two rounds
        that share tasks cannot deadlock, and no status index is locked first), then
        compared; the winners move in one ``UPDATE`` and their attempts are written in
        one ``INSERT``. An attempt's deadline starts now: if the worker dies after
        sending the request, the algorithm still has until the deadline to call back
        before a retry.
        """
        # By task and attempt: a round may hold a stale admission of a task's earlier
        # attempt beside its current one, and only the current one may start.
        wanted = {(start.task_id, start.attempt): start for start in starts}
        if not wanted:
            return {}
        with self._transaction() as session:
            locked = session.scalars(lock_tasks_query(sorted({t for t, _ in wanted}))).all()
            tasks = [
                task
                for task in locked
                if task.status == TaskStatus.QUEUED and (task.id, task.attempts + 1) in wanted
            ]
            if not tasks:
                return {}
            # One UPDATE for every winner (the ORM would write one per row): attempts
            # and the first dispatch per row, from the values just compared. The rows
            # read are detached first, so that what is set on them below (what the
            # UPDATE writes) is not flushed a second time.
            session.expunge_all()
            session.execute(
                update(Task)
                .where(Task.id.in_([task.id for task in tasks]))
                .values(
                    status=TaskStatus.RUNNING,
                    attempts=Task.attempts + 1,
                    updated_at=now,
                    first_dispatched_at=func.coalesce(
                        Task.first_dispatched_at, type_coerce(now, UTCDateTime)
                    ),
                ),
                execution_options={"synchronize_session": False},
            )
            started: dict[str, StartedAttempt] = {}
            rows: list[dict[str, Any]] = []
            for task in tasks:
                start = wanted[(task.id, task.attempts + 1)]
                task.status = TaskStatus.RUNNING
                task.attempts = start.attempt
                task.updated_at = now
                if task.first_dispatched_at is None:
                    task.first_dispatched_at = now
                deadline = now + timedelta(seconds=task.timeout_seconds)
                upload_expires_at = now + timedelta(
                    seconds=min(upload_ttl_seconds, task.timeout_seconds + 300)
                )
                rows.append(
                    {
                        "task_id": task.id,
                        "attempt": start.attempt,
                        "algorithm": task.algorithm,
                        "app": task.app,
                        "cost": task.cost,
                        "endpoint": start.endpoint,
                        "status": ExecutionStatus.DISPATCHING,
                        "result_key": start.result_key,
                        "created_at": now,
                        "deadline": deadline,
                        "upload_expires_at": upload_expires_at,
                    }
                )
                started[task.id] = StartedAttempt(task, deadline, upload_expires_at)
            # Core, by column name, for many at once: one multi-row INSERT, compiled once.
            session.execute(insert(_table(TaskExecution)), rows)
        return started

    def abandon_attempt(self, task_id: str, attempt: int, now: datetime) -> bool:
        """Give up an attempt whose request was never sent (no slot could be confirmed).

        The task goes back to PENDING with one more attempt in its budget: the
        abandoned attempt never ran, so it does not count. Its number is not reused,
        so no late actor can mistake a later attempt for it.
        """
        with self._transaction() as session:
            task = self._lock_task(session, task_id)
            if task is None or task.status != TaskStatus.RUNNING or task.attempts != attempt:
                return False
            if not self._move_execution(
                session,
                task_id,
                attempt,
                [ExecutionStatus.DISPATCHING],
                status=ExecutionStatus.ABANDONED,
                finished_at=now,
                error_code="slot_lost",
                error_message="no slot could be confirmed; the request was not sent",
            ):
                return False
            task.status = TaskStatus.PENDING
            task.not_before = now
            task.max_attempts += 1
            task.updated_at = now
        return True

    def mark_accepted(self, task_id: str, attempt: int, now: datetime, http_status: int) -> bool:
        """Step 10 for one attempt (``mark_many_accepted``)."""
        return bool(self.mark_many_accepted([AcceptedDispatch(task_id, attempt, http_status)], now))

    def mark_many_accepted(self, accepted: Sequence[AcceptedDispatch], now: datetime) -> int:
        """Step 10 for a dispatch round, in one transaction: the algorithm accepted these
        dispatches (2xx): DISPATCHING -> RUNNING, and each task's first acceptance ends
        its queue timeout. Returns how many attempts moved (an attempt that ended
        meanwhile, by its callback say, stays as it is).

        The task rows are written first, as every other transaction that writes both
        does (a callback arriving at once locks the task, then the attempt): the other
        order deadlocks against it. The task is running an attempt exactly while that
        attempt is active, so the condition on the task is the attempt's too."""
        if not accepted:
            return 0
        pairs = sorted({(a.task_id, a.attempt) for a in accepted})
        with self._transaction() as session:
            # By the primary key alone: a condition on the status would let the optimizer
            # lock the status index's entry first, the very one a callback ending the
            # task updates after locking the row, and the two would wait on each other.
            accepted_now = (Task.status == TaskStatus.RUNNING) & tuple_(Task.id, Task.attempts).in_(
                pairs
            )
            session.execute(
                update(Task)
                .where(Task.id.in_(sorted({task_id for task_id, _ in pairs})))
                .values(
                    first_accepted_at=case(
                        (
                            accepted_now,
                            func.coalesce(Task.first_accepted_at, type_coerce(now, UTCDateTime)),
                        ),
                        else_=Task.first_accepted_at,
                    )
                )
            )
            moved = 0
            by_status: dict[int, list[tuple[str, int]]] = {}
            for a in accepted:
                by_status.setdefault(a.http_status, []).append((a.task_id, a.attempt))
            for http_status, ours in sorted(by_status.items()):
                result = session.execute(
                    accept_dispatches_statement(sorted(ours), now, http_status)
                )
                moved += _rowcount(result)
            return moved

    # -- completion, timeout, failure ---------------------------------------------------

    def finish_attempt(
        self, task_id: str, attempt: int, now: datetime, outcome: AttemptOutcome
    ) -> FinishedAttempt | None:
        """Steps 13-14: end an active attempt; the task retries (``outcome.retry_at``,
        attempts left) or reaches ``outcome.task_status`` with its notification queued in
        the outbox.

        Returns None when the attempt was not active: someone else already ended it.
        """
        with self._transaction() as session:
            task = self._lock_task(session, task_id)
            if task is None or task.status != TaskStatus.RUNNING or task.attempts != attempt:
                return None
            drain_values, draining = self._drain_of(session, task_id, attempt, outcome.drain, now)
            if not self._move_execution(
                session,
                task_id,
                attempt,
                ACTIVE_EXECUTION_STATUSES,
                deadline_before=outcome.overdue_at,
                status=outcome.execution_status,
                finished_at=now,
                error_code=outcome.error_code,
                error_message=outcome.error_message,
                http_status=outcome.http_status,
                **drain_values,
            ):
                return None
            task.updated_at = now
            task.error_code = outcome.error_code
            task.error_message = outcome.error_message
            if outcome.retry_at is not None and not outcome.counts_attempt:
                task.max_attempts += 1  # "busy, come back later" uses up no attempt
            if outcome.retry_at is not None and attempt < task.max_attempts:
                task.status = TaskStatus.PENDING
                task.not_before = outcome.retry_at
                return FinishedAttempt(task, terminal=False, draining=draining)
            self._finalize(session, task, outcome.task_status, now)
            if outcome.task_status == TaskStatus.SUCCEEDED and outcome.result_key is not None:
                task.result_key = outcome.result_key
            elif outcome.task_status == TaskStatus.SUCCEEDED:
                task.result_key = session.scalars(
                    select(TaskExecution.result_key).where(
                        TaskExecution.task_id == task_id, TaskExecution.attempt == attempt
                    )
                ).one()
            return FinishedAttempt(task, terminal=True, draining=draining)

    @staticmethod
    def _drain_of(
        session: Session, task_id: str, attempt: int, drain: Drain | None, now: datetime
    ) -> tuple[dict[str, Any], Draining | None]:
        """The values that make an ending attempt drain, if ``drain`` says its endpoint
        has a cancel URL. An attempt still dispatching may have its request on the way:
        its first cancel waits until that request has had time to arrive."""
        if drain is None:
            return {}, None
        row = session.execute(
            select(TaskExecution.status, TaskExecution.endpoint, TaskExecution.created_at).where(
                TaskExecution.task_id == task_id, TaskExecution.attempt == attempt
            )
        ).one_or_none()
        if row is None or not row.status.is_active or row.endpoint not in drain.endpoints:
            return {}, None
        cancel_from = now
        if row.status == ExecutionStatus.DISPATCHING:
            cancel_from = max(now, row.created_at + timedelta(seconds=drain.settle_seconds))
        values = {"drain_until": max(drain.until, cancel_from), "cancel_reason": drain.reason}
        return values, Draining(task_id, attempt, cancel_from)

    def _finalize(self, session: Session, task: Task, status: TaskStatus, now: datetime) -> None:
        """The terminal state and its outbox row, claimed by the caller, who publishes
        next (``outbox.publish_notification`` with the task in hand)."""
        assert status.is_terminal
        task.status = status
        task.finished_at = now
        task.notification_id = str(uuid.uuid4())
        session.add(
            NotificationOutbox(
                task_id=task.id,
                notification_id=task.notification_id,
                created_at=now,
                claimed_until=now + timedelta(seconds=PUBLISH_CLAIM_SECONDS),
            )
        )

    def end_task(
        self,
        task_id: str,
        now: datetime,
        status: TaskStatus,
        error_code: str,
        message: str,
        *,
        waiting_only: bool = False,
        never_accepted: bool = False,
        drain: Callable[[str], Drain | None] | None = None,
    ) -> EndedTask | None:
        """End a task that is not final without its algorithm's say-so (cancelled, timed
        out in the queue or past its total deadline, its algorithm gone): its active
        attempt ends with it, and drains if ``drain`` (given the task's algorithm) says
        so. None if the task is final, unknown, or no longer as required
        (``waiting_only``: pending or queued; ``never_accepted``: no attempt accepted)."""
        with self._transaction() as session:
            task = self._lock_task(session, task_id)
            if task is None or task.status.is_terminal:
                return None
            waiting = task.status in (TaskStatus.PENDING, TaskStatus.QUEUED)
            if (waiting_only and not waiting) or (never_accepted and task.first_accepted_at):
                return None
            running_attempt = task.attempts if task.status == TaskStatus.RUNNING else 0
            drain_values, draining = (
                self._drain_of(session, task_id, running_attempt, drain(task.algorithm), now)
                if running_attempt and drain is not None
                else ({}, None)
            )
            execution_status = (
                ExecutionStatus.CANCELLED
                if status == TaskStatus.CANCELLED
                else ExecutionStatus.TIMED_OUT
                if status == TaskStatus.TIMED_OUT
                else ExecutionStatus.FAILED
            )
            session.execute(
                update(TaskExecution)
                .where(
                    TaskExecution.task_id == task_id,
                    TaskExecution.status.in_(ACTIVE_EXECUTION_STATUSES),
                )
                .values(
                    status=execution_status,
                    finished_at=now,
                    error_code=error_code,
                    error_message=message,
                    **drain_values,
                )
            )
            task.error_code = error_code
            task.error_message = message
            task.updated_at = now
            self._finalize(session, task, status, now)
            return EndedTask(task, running_attempt, draining)

    # -- draining attempts --------------------------------------------------------------

    def record_cancel_answer(self, task_id: str, attempt: int, http_status: int | None) -> None:
        """Count one more cancel request sent to a draining attempt's endpoint, and its answer."""
        with self._transaction() as session:
            session.execute(
                update(TaskExecution)
                .where(
                    TaskExecution.task_id == task_id,
                    TaskExecution.attempt == attempt,
                    TaskExecution.drain_until.is_not(None),
                )
                .values(cancel_tries=TaskExecution.cancel_tries + 1, cancel_http_status=http_status)
            )

    def mark_drained(
        self, task_id: str, attempt: int, now: datetime, http_status: int | None = None
    ) -> bool:
        """A draining attempt gives its slot back (acknowledged, or at its grace): True for
        the one caller that moved it, who releases the slot."""
        values: dict[str, Any] = {"drain_until": None, "drained_at": now}
        if http_status is not None:
            values["cancel_tries"] = TaskExecution.cancel_tries + 1
            values["cancel_http_status"] = http_status
        with self._transaction() as session:
            result = session.execute(
                update(TaskExecution)
                .where(
                    TaskExecution.task_id == task_id,
                    TaskExecution.attempt == attempt,
                    TaskExecution.drain_until.is_not(None),
                )
                .values(**values)
            )
            return _rowcount(result) == 1

    # -- cancels that arrive before their task ------------------------------------------

    def keep_cancel(
        self, app: str, idempotency_key: str, reason: str | None, now: datetime, until: datetime
    ) -> Task | None:
        """Keep a cancel by key whose task has not arrived (SQS keeps no order), until
        ``until``; or, if the task is there after all, keep nothing and return it.

        The cancel is written, then the task looked for with a locking read, in one
        transaction; intake writes the task, then looks for the cancel the same way
        (``add_task``). Whichever comes second waits for the other's commit and sees its
        row, so a task and its cancel never miss each other (in the exact race InnoDB
        may end one of the two as a deadlock victim: SQS, or the API's caller, sends it
        again). A cancel kept before stays as it was, unless it had expired."""
        for _ in range(2):  # a concurrent keep of the same key: the second try finds it
            try:
                return self._keep_cancel(app, idempotency_key, reason, now, until)
            except IntegrityError:
                continue
        return self._keep_cancel(app, idempotency_key, reason, now, until)

    def _keep_cancel(
        self, app: str, idempotency_key: str, reason: str | None, now: datetime, until: datetime
    ) -> Task | None:
        with self._transaction() as session:
            kept = session.scalars(
                select(CancelTombstone)
                .where(
                    CancelTombstone.app == app, CancelTombstone.idempotency_key == idempotency_key
                )
                .with_for_update()
            ).one_or_none()
            if kept is None:
                kept = CancelTombstone(
                    app=app,
                    idempotency_key=idempotency_key,
                    reason=reason,
                    created_at=now,
                    expires_at=until,
                )
                session.add(kept)
            elif kept.expires_at <= now:
                kept.reason, kept.created_at, kept.expires_at = reason, now, until
            session.flush()
            task = session.scalars(
                select(Task)
                .where(Task.app == app, Task.idempotency_key == idempotency_key)
                .with_for_update()
            ).one_or_none()
            if task is not None:
                session.delete(kept)
            return task

    def purge_expired_cancels(self, now: datetime, limit: int) -> int:
        with self._transaction() as session:
            keys = session.execute(
                select(CancelTombstone.app, CancelTombstone.idempotency_key)
                .where(CancelTombstone.expires_at < now)
                .limit(limit)
            ).all()
            if not keys:
                return 0
            session.execute(
                delete(CancelTombstone).where(
                    tuple_(CancelTombstone.app, CancelTombstone.idempotency_key).in_(
                        [tuple(key) for key in keys]
                    )
                )
            )
            return len(keys)

    def tasks_past_queue_deadline(self, now: datetime, limit: int) -> list[str]:
        """Waiting tasks no attempt of which was accepted by their queue deadline."""
        with self._reads() as session:
            return list(session.scalars(past_queue_deadline_query(now, limit)))

    def tasks_past_total_deadline(self, now: datetime, limit: int) -> list[str]:
        """Tasks not final by their total deadline."""
        with self._reads() as session:
            return list(session.scalars(past_total_deadline_query(now, limit)))

    # -- tasks the registry no longer serves (gone, or too costly) -----------------------

    def largest_waiting_costs(self) -> dict[str, int]:
        """Per algorithm with pending or queued tasks, the largest cost among them."""
        with self._reads() as session:
            rows = session.execute(
                select(Task.algorithm, func.max(Task.cost))
                .where(Task.status.in_([TaskStatus.PENDING, TaskStatus.QUEUED]))
                .group_by(Task.algorithm)
            ).all()
        return {algorithm: int(cost) for algorithm, cost in rows}

    def waiting_tasks_of(
        self, algorithm: str, limit: int, *, costing_more_than: int = 0
    ) -> list[str]:
        with self._reads() as session:
            return list(
                session.scalars(
                    select(Task.id)
                    .where(
                        Task.algorithm == algorithm,
                        Task.status.in_([TaskStatus.PENDING, TaskStatus.QUEUED]),
                        Task.cost > costing_more_than,
                    )
                    .limit(limit)
                )
            )

    def open_policy_gap(self, algorithm: str, now: datetime) -> datetime:
        """Since when the registry has no longer served tasks of ``algorithm`` (it left
        it, or no endpoint fits their cost): now, if this is the first time seen."""
        try:
            with self._transaction() as session:
                session.add(PolicyGap(algorithm=algorithm, since=now))
        except IntegrityError:
            pass
        with self._reads() as session:
            return session.get_one(PolicyGap, algorithm).since

    def close_policy_gaps(self, still_missing: Iterable[str]) -> None:
        """Forget the gaps of every algorithm but ``still_missing`` (back, or not waited for)."""
        with self._transaction() as session:
            session.execute(
                delete(PolicyGap).where(PolicyGap.algorithm.not_in(list(still_missing)))
            )

    def record_heartbeat(
        self,
        task_id: str,
        attempt: int,
        now: datetime,
        *,
        deadline: datetime,
        progress: int | None,
        message: str | None,
        upload_expires_at: datetime | None,
    ) -> bool:
        """Record progress and move the deadline of an active attempt."""
        values: dict[str, Any] = {"heartbeat_at": now, "deadline": deadline}
        if progress is not None:
            values["progress"] = progress
        if message is not None:
            values["progress_message"] = message
        if upload_expires_at is not None:
            values["upload_expires_at"] = upload_expires_at
        with self._transaction() as session:
            return self._move_execution(
                session, task_id, attempt, ACTIVE_EXECUTION_STATUSES, **values
            )

    # -- sweep and reconcile ------------------------------------------------------------

    def ended_attempts(self, attempts: Iterable[tuple[str, int]]) -> set[tuple[str, int]]:
        """Of the given (task id, attempt) pairs, those recorded that hold no slot: not
        active, and not draining."""
        pairs = list(attempts)
        if not pairs:
            return set()
        with self._reads() as session:
            rows = session.execute(
                select(TaskExecution.task_id, TaskExecution.attempt).where(
                    tuple_(TaskExecution.task_id, TaskExecution.attempt).in_(pairs),
                    TaskExecution.status.not_in(ACTIVE_EXECUTION_STATUSES),
                    TaskExecution.drain_until.is_(None),  # a draining attempt keeps its slot
                )
            ).all()
        return {(row.task_id, row.attempt) for row in rows}

    def active_attempts(self, algorithm: str) -> list[ActiveAttempt]:
        """The attempts that hold a slot: those running, and those draining (scored as
        due at once, so that the sweep sends their cancel request again soon)."""
        with self._reads() as session:
            rows = session.execute(
                select(*_ACTIVE_COLUMNS).where(
                    TaskExecution.algorithm == algorithm,
                    TaskExecution.status.in_(ACTIVE_EXECUTION_STATUSES),
                )
            ).all()
            draining = session.execute(
                select(
                    *_ACTIVE_COLUMNS[:3],
                    func.coalesce(TaskExecution.finished_at, TaskExecution.deadline).label(
                        "deadline"
                    ),
                    *_ACTIVE_COLUMNS[4:],
                ).where(
                    TaskExecution.drain_until.is_not(None), TaskExecution.algorithm == algorithm
                )
            ).all()
        return [_active(row) for row in rows] + [_active(row) for row in draining]

    def overdue_attempts(self, now: datetime, limit: int) -> list[ActiveAttempt]:
        with self._reads() as session:
            rows = session.execute(overdue_attempts_query(now, limit)).all()
        return [_active(row) for row in rows]

    # -- operators' retries ------------------------------------------------------------

    def retry_tasks(
        self,
        task_ids: Sequence[str],
        expected: TaskStatus,
        now: datetime,
        budgets: Mapping[str, int],
    ) -> list[Task]:
        """Final tasks in ``expected`` back to PENDING, each for a new outcome; returns
        those retried (the others changed meanwhile, or could not be retried).

        A compare-and-set on the state each was read in, so two operators retrying at
        once retry a task once. Only tasks whose notification is out: an outcome is
        announced before the next one starts, and no outbox row of the old outcome is
        left for the new one to collide with. Each gets a fresh budget counted from the
        attempts so far: the message's own ``max_attempts``, else its algorithm's in
        ``budgets`` (a task whose algorithm is not there is left alone). The attempt
        rows stay, and attempt numbers go on from the last one.
        """
        assert expected.is_terminal
        if not task_ids:
            return []
        with self._transaction() as session:
            # Locked in id order, so that two bulk retries never wait on each other in
            # a circle.
            rows = session.execute(
                select(
                    Task.id,
                    Task.algorithm,
                    Task.attempt_budget,
                    Task.created_at,
                    Task.queue_deadline,
                    Task.total_deadline,
                )
                .where(
                    Task.id.in_(list(task_ids)),
                    Task.status == expected,
                    Task.notified_at.is_not(None),
                )
                .order_by(Task.id)
                .with_for_update()
            ).all()
            by_budget: dict[int, list[str]] = {}
            for row in rows:
                budget = row.attempt_budget or budgets.get(row.algorithm)
                if budget is not None:
                    by_budget.setdefault(budget, []).append(row.id)
            retried: list[str] = []
            for budget, ids in by_budget.items():
                result = session.execute(
                    update(Task)
                    .where(Task.id.in_(ids), Task.status == expected)
                    .values(
                        status=TaskStatus.PENDING,
                        max_attempts=Task.attempts + budget,
                        not_before=now,
                        updated_at=now,
                        finished_at=None,
                        error_code=None,
                        error_message=None,
                        result_key=None,
                        # The next final state is a new outcome: _finalize gives it a
                        # new notification id.
                        notification_id=None,
                        notified_at=None,
                        # Its queue timeout counts again, until an attempt of the new
                        # outcome is accepted.
                        first_accepted_at=None,
                    )
                )
                assert _rowcount(result) == len(ids)  # locked above, in that state
                retried += ids
            if not retried:
                return []
            # The new outcome gets the queue and total timeouts its message asked for,
            # from now: counted from the acceptance, a task retried after them would
            # end timed out again at the next sweep, without a chance to run.
            for row in rows:
                if row.id in retried and (row.queue_deadline or row.total_deadline):
                    session.execute(
                        update(Task)
                        .where(Task.id == row.id)
                        .values(
                            queue_deadline=_moved(row.queue_deadline, row.created_at, now),
                            total_deadline=_moved(row.total_deadline, row.created_at, now),
                        )
                    )
            return list(
                session.scalars(
                    select(Task)
                    .where(Task.id.in_(retried))
                    .order_by(Task.id)
                    .execution_options(populate_existing=True)
                )
            )

    def retry_candidates(
        self, selection: RetrySelection, after: tuple[datetime, str] | None, limit: int
    ) -> list[Task]:
        with self._reads() as session:
            return list(session.scalars(retry_candidates_query(selection, after, limit)))

    def count_retry_candidates(self, selection: RetrySelection) -> int:
        with self._reads() as session:
            return int(
                session.scalar(
                    select(func.count()).select_from(Task).where(*_retry_conditions(selection))
                )
                or 0
            )

    # -- operators' pauses --------------------------------------------------------------

    def hold_algorithm(self, algorithm: str, now: datetime, reason: str) -> bool:
        """Pause admission for ``algorithm``; False if it was already paused."""
        try:
            with self._transaction() as session:
                session.add(AlgorithmHold(algorithm=algorithm, held_at=now, reason=reason))
        except IntegrityError:
            return False
        return True

    def release_hold(self, algorithm: str) -> bool:
        """Resume admission for ``algorithm``; False if it was not paused."""
        with self._transaction() as session:
            result = session.execute(
                delete(AlgorithmHold).where(AlgorithmHold.algorithm == algorithm)
            )
        return _rowcount(result) == 1

    def is_held(self, algorithm: str) -> bool:
        with self._reads() as session:
            return session.get(AlgorithmHold, algorithm) is not None

    def held_algorithms(self) -> set[str]:
        """The algorithms an operator paused."""
        with self._reads() as session:
            return set(session.scalars(select(AlgorithmHold.algorithm)))

    def backlog(self, now: datetime) -> dict[str, AlgorithmBacklog]:
        """Per algorithm with waiting tasks: how many are pending and queued, how many
        may start now, and when the oldest of those was accepted."""
        found: dict[str, AlgorithmBacklog] = {}
        with self._reads() as session:
            for algorithm, status, total, due, oldest in session.execute(backlog_query(now)):
                entry = found.get(algorithm, AlgorithmBacklog())
                if status == TaskStatus.PENDING:
                    entry = replace(entry, pending=int(total))
                else:
                    entry = replace(entry, queued=int(total))
                earliest = min(
                    (moment for moment in (entry.oldest_due_created_at, oldest) if moment),
                    default=None,
                )
                found[algorithm] = replace(
                    entry, due=entry.due + int(due), oldest_due_created_at=earliest
                )
        return found

    # -- notifications ------------------------------------------------------------------

    def unpublished_notifications(
        self, created_before: datetime, now: datetime, limit: int
    ) -> list[str]:
        with self._reads() as session:
            return list(
                session.scalars(
                    select(NotificationOutbox.task_id)
                    .where(
                        NotificationOutbox.created_at <= created_before,
                        or_(
                            NotificationOutbox.claimed_until.is_(None),
                            NotificationOutbox.claimed_until < now,
                        ),
                    )
                    .order_by(NotificationOutbox.created_at)
                    .limit(limit)
                )
            )

    def claim_notification(self, task_id: str, now: datetime, until: datetime) -> bool:
        """Take the right to publish a notification until ``until``: publishers do not
        race each other, and one that dies leaves it to the next after the claim ends."""
        with self._transaction() as session:
            result = session.execute(
                update(NotificationOutbox)
                .where(
                    NotificationOutbox.task_id == task_id,
                    or_(
                        NotificationOutbox.claimed_until.is_(None),
                        NotificationOutbox.claimed_until < now,
                    ),
                )
                .values(claimed_until=until)
            )
        return _rowcount(result) == 1

    def mark_notified(self, task_id: str, notification_id: str, now: datetime) -> None:
        with self._transaction() as session:
            session.execute(
                delete(NotificationOutbox).where(
                    NotificationOutbox.task_id == task_id,
                    NotificationOutbox.notification_id == notification_id,
                )
            )
            session.execute(
                update(Task)
                .where(Task.id == task_id, Task.notification_id == notification_id)
                .values(notified_at=now)
            )

    # -- refused callbacks --------------------------------------------------------------

    def record_refused_callback(self, task_id: str, attempt: int, code: str) -> bool:
        """Count a callback Baton refused against the attempt it names, if that attempt
        is active: its timeout then says why no callback was taken. One UPDATE, and
        read for nothing else (the caller may not be who it says)."""
        with self._transaction() as session:
            result = session.execute(
                update(TaskExecution)
                .where(
                    TaskExecution.task_id == task_id,
                    TaskExecution.attempt == attempt,
                    TaskExecution.status.in_(ACTIVE_EXECUTION_STATUSES),
                )
                .values(refused_callbacks=TaskExecution.refused_callbacks + 1, last_refusal=code)
            )
        return _rowcount(result) == 1

    # -- operators' views (baton tasks list, baton stats) ------------------------------

    def list_tasks(self, selection: TaskListing) -> list[Task]:
        """The newest tasks that match, newest first (``task_list_query``)."""
        with self._reads() as session:
            return list(session.scalars(task_list_query(selection)))

    def waiting_stats(self, now: datetime) -> list[WaitingStats]:
        with self._reads() as session:
            rows = session.execute(waiting_stats_query(now)).all()
        # (SUM is a DECIMAL in MySQL)
        return [
            WaitingStats(row.algorithm, int(row.pending), int(row.queued), row.oldest_due)
            for row in rows
        ]

    def timeouts_since(self, start: datetime) -> dict[str, int]:
        with self._reads() as session:
            return {
                row.algorithm: int(row.timeouts) for row in session.execute(timeouts_query(start))
            }

    def recent_attempts(self, start: datetime, limit: int) -> list[RecentAttempt]:
        with self._reads() as session:
            rows = session.execute(recent_attempts_query(start, limit)).all()
        return [
            RecentAttempt(
                algorithm=row.algorithm,
                status=row.status,
                dispatched_at=row.created_at,
                finished_at=row.finished_at,
                first_dispatch=row.created_at == row.first_dispatched_at,
                task_created_at=row.task_created_at,
            )
            for row in rows
        ]


# -- operators' views: the queries ---------------------------------------------------------


@dataclass(frozen=True)
class TaskListing:
    """Which tasks ``baton tasks list`` shows: the newest ``limit`` that match."""

    limit: int
    app: str | None = None
    algorithm: str | None = None
    status: TaskStatus | None = None
    since: datetime | None = None
    """Created at or after this moment."""


def task_list_query(selection: TaskListing) -> Select[Task]:
    """Newest first, by ``created_at``. The table has no index on ``created_at`` alone
    (nothing else needs one); a task is updated when it is created and on every change,
    so one created since ``since`` was updated since then too, and the rows are found by
    ``updated_at``: ranges of ``ix_task_status_updated``, one per state asked for, of
    which only those created since ``since`` are sorted. Without ``since`` it reads every
    task that matches: ``baton.stats.list_tasks`` asks so only when the recent windows
    did not hold ``limit`` of them."""
    statuses = [selection.status] if selection.status is not None else list(TaskStatus)
    conditions: list[Any] = [Task.status.in_(statuses)]
    if selection.since is not None:
        conditions += [Task.updated_at >= selection.since, Task.created_at >= selection.since]
    if selection.app is not None:
        conditions.append(Task.app == selection.app)
    if selection.algorithm is not None:
        conditions.append(Task.algorithm == selection.algorithm)
    return (
        select(Task)
        .where(*conditions)
        .order_by(Task.created_at.desc(), Task.id.desc())
        .limit(selection.limit)
    )


@dataclass(frozen=True)
class WaitingStats:
    algorithm: str
    pending: int
    queued: int
    oldest_due: datetime | None
    """When the longest-waiting task that may start became due (its ``not_before``)."""


def waiting_stats_query(now: datetime) -> Select[str, int, int, datetime]:
    """Per algorithm, its pending and queued tasks, and the earliest ``not_before`` of
    those due: the waiting states' ranges of ``ix_task_status_updated`` (the history is
    never read), grouped."""
    due = case((Task.not_before <= now, Task.not_before))
    return (
        select(
            Task.algorithm,
            func.sum(case((Task.status == TaskStatus.PENDING, 1), else_=0)).label("pending"),
            func.sum(case((Task.status == TaskStatus.QUEUED, 1), else_=0)).label("queued"),
            func.min(due).label("oldest_due"),
        )
        .where(Task.status.in_([TaskStatus.PENDING, TaskStatus.QUEUED]))
        .group_by(Task.algorithm)
    )


LATE_END_SECONDS = 3600
"""How long after its deadline an attempt may still end (the sweep's lag, a cancel of an
attempt the sweep has not timed out yet): the views of recent attempts read attempts
whose deadline is at most this much before their window."""


def timeouts_query(start: datetime) -> Select[str, int]:
    """Per algorithm, the attempts that ended timed out since ``start``: a range of
    ``ix_task_execution_status_deadline`` (an attempt ends at most ``LATE_END_SECONDS``
    after its deadline), grouped."""
    return (
        select(TaskExecution.algorithm, func.count().label("timeouts"))
        .where(
            TaskExecution.status == ExecutionStatus.TIMED_OUT,
            TaskExecution.deadline >= start - timedelta(seconds=LATE_END_SECONDS),
            TaskExecution.finished_at >= start,
        )
        .group_by(TaskExecution.algorithm)
    )


@dataclass(frozen=True)
class RecentAttempt:
    algorithm: str
    status: ExecutionStatus
    dispatched_at: datetime
    finished_at: datetime | None
    first_dispatch: bool
    """The task's first attempt sent: its dispatch ends the task's queue wait."""
    task_created_at: datetime


def recent_attempts_query(
    start: datetime, limit: int
) -> Select[str, ExecutionStatus, datetime, datetime | None, datetime | None, datetime]:
    """Attempts dispatched or ended since ``start``, the latest ``limit`` of them, with
    their task's creation and first dispatch: ranges of
    ``ix_task_execution_status_deadline`` (an attempt's deadline is never before its
    dispatch, and at most ``LATE_END_SECONDS`` before its end), then the task by its key."""
    return (
        select(
            TaskExecution.algorithm,
            TaskExecution.status,
            TaskExecution.created_at,
            TaskExecution.finished_at,
            Task.first_dispatched_at,
            Task.created_at.label("task_created_at"),
        )
        .join(Task, Task.id == TaskExecution.task_id)
        .where(
            TaskExecution.status.in_(list(ExecutionStatus)),
            TaskExecution.deadline >= start - timedelta(seconds=LATE_END_SECONDS),
            or_(TaskExecution.created_at >= start, TaskExecution.finished_at >= start),
        )
        .order_by(TaskExecution.deadline.desc())
        .limit(limit)
    )
