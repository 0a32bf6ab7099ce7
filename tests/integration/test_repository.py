"""The Repository against the real MariaDB: idempotent intake, promotion, the
compare-and-set attempt lifecycle, the outbox, and the sweep/reconcile reads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

import pytest
import sqlalchemy as sa
from baton.database import create_session_factory
from baton.models import Task
from baton.records import (
    ActiveAttempt,
    AttemptOutcome,
    EndedTask,
    ExecutionStatus,
    NewTask,
    QueuedTask,
    Slot,
    TaskStatus,
)
from baton.repository import Repository

from tests.support.admission import ENDPOINT
from tests.support.database import (
    ALGORITHM,
    NewTaskFactory,
    count_rows,
    found_task,
    stored_execution,
    stored_task,
    utcnow,
)

UPLOAD_TTL = 3600

SUCCEEDED = AttemptOutcome(ExecutionStatus.SUCCEEDED, TaskStatus.SUCCEEDED)
TIMED_OUT = AttemptOutcome(
    ExecutionStatus.TIMED_OUT, TaskStatus.TIMED_OUT, "timed_out", "no callback in time"
)


def retrying(retry_at: datetime) -> AttemptOutcome:
    return AttemptOutcome(
        ExecutionStatus.DISPATCH_FAILED,
        TaskStatus.FAILED,
        "dispatch_failed",
        "algorithm answered 503",
        503,
        retry_at,
    )


def add(repository: Repository, new_task: NewTaskFactory, **overrides: object) -> Task:
    task, created = repository.add_task(new_task(**overrides))
    assert created
    return task


def queue_one(repository: Repository, task: Task, now: datetime) -> QueuedTask:
    claimed = repository.queue_pending_tasks(task.algorithm, now, 1000)
    mine = [q for q in claimed if q.task_id == task.id]
    assert len(mine) == 1, claimed
    return mine[0]


def start(
    repository: Repository,
    new_task: NewTaskFactory,
    now: datetime | None = None,
    **overrides: object,
) -> tuple[Task, datetime]:
    """A task added, queued and started at attempt 1; returns it and the start time."""
    now = now or utcnow()
    task = add(repository, new_task, **overrides)
    queued = queue_one(repository, task, now)
    started = repository.start_attempt(
        task.id, queued.attempt, now, f"key/{task.id}/1", UPLOAD_TTL, endpoint=ENDPOINT
    )
    assert started is not None
    return started.task, now


def row_snapshot(engine: sa.Engine, task_id: str) -> tuple[object, ...]:
    with engine.connect() as connection:
        task = connection.execute(
            sa.text("SELECT * FROM task WHERE id = :id"), {"id": task_id}
        ).one()
        executions = connection.execute(
            sa.text("SELECT * FROM task_execution WHERE task_id = :id ORDER BY attempt"),
            {"id": task_id},
        ).all()
        outbox = connection.execute(
            sa.text("SELECT * FROM notification_outbox WHERE task_id = :id"), {"id": task_id}
        ).all()
    return tuple(task), tuple(map(tuple, executions)), tuple(map(tuple, outbox))


# -- intake -----------------------------------------------------------------------------


def test_add_task_stores_every_field(repository: Repository, new_task: NewTaskFactory) -> None:
    new = new_task(priority=7, input={"a": [1, 2]}, metadata={"m": "x"}, max_attempts=5)

    task, created = repository.add_task(new)

    assert created
    assert task.id == new.id
    stored = repository.get_task(new.id)
    assert stored is not None
    assert (stored.app, stored.algorithm, stored.idempotency_key) == (
        new.app,
        new.algorithm,
        new.idempotency_key,
    )
    assert (stored.priority, stored.input, stored.meta) == (7, {"a": [1, 2]}, {"m": "x"})
    assert (stored.timeout_seconds, stored.max_attempts) == (30, 5)
    assert (stored.status, stored.attempts) == (TaskStatus.PENDING, 0)
    assert stored.created_at == new.created_at
    assert stored.not_before == new.not_before
    assert stored.created_at.tzinfo is not None


def test_add_task_is_idempotent_on_app_and_key(
    repository: Repository, new_task: NewTaskFactory, engine: sa.Engine
) -> None:
    first, created = repository.add_task(new_task(idempotency_key="k-1", priority=1))
    assert created

    again, created_again = repository.add_task(
        new_task(idempotency_key="k-1", priority=99, input={"other": True})
    )

    assert not created_again
    assert again.id == first.id
    assert again.priority == 1
    assert count_rows(engine, "task") == 1
    assert found_task(repository, "contracts", "k-1").id == first.id


def test_same_key_in_another_app_is_another_task(
    repository: Repository, new_task: NewTaskFactory, engine: sa.Engine
) -> None:
    one, created_one = repository.add_task(new_task(app="contracts", idempotency_key="shared"))
    two, created_two = repository.add_task(new_task(app="invoices", idempotency_key="shared"))

    assert created_one
    assert created_two
    assert one.id != two.id
    assert count_rows(engine, "task") == 2


def test_add_task_with_an_existing_id_but_new_key_is_not_swallowed(
    repository: Repository, new_task: NewTaskFactory
) -> None:
    first = add(repository, new_task)

    with pytest.raises(sa.exc.IntegrityError):
        repository.add_task(new_task(id=first.id))


# -- promotion --------------------------------------------------------------------------


def test_queue_pending_tasks_respects_not_before_order_limit_and_algorithm(
    repository: Repository, new_task: NewTaskFactory
) -> None:
    now = utcnow()
    low_old = add(repository, new_task, priority=0)
    high_new = add(repository, new_task, priority=5)
    low_new = add(repository, new_task, priority=0)
    high_old = add(
        repository, new_task, priority=5, created_at=low_old.created_at - timedelta(seconds=1)
    )
    delayed = add(repository, new_task, priority=10, not_before=now + timedelta(minutes=5))
    due_now = add(repository, new_task, priority=-1, not_before=now)
    other_algorithm = add(repository, new_task, algorithm="nlp", priority=100)

    first = repository.queue_pending_tasks(ALGORITHM, now, 3)
    rest = repository.queue_pending_tasks(ALGORITHM, now, 100)

    assert [q.task_id for q in first] == [high_old.id, high_new.id, low_old.id]
    assert [q.task_id for q in rest] == [low_new.id, due_now.id]
    assert all(q.attempt == 1 for q in first + rest)
    assert first[0] == QueuedTask(high_old.id, 1, 5, high_old.created_at, high_old.app)
    assert repository.queue_pending_tasks(ALGORITHM, now, 100) == []
    for task in (low_old, high_new, low_new, high_old, due_now):
        stored = stored_task(repository, task.id)
        assert stored.status == TaskStatus.QUEUED
        assert stored.queued_at == now
    assert stored_task(repository, delayed.id).status == TaskStatus.PENDING
    assert stored_task(repository, other_algorithm.id).status == TaskStatus.PENDING
    # Once its time has come, the delayed task is eligible.
    later = repository.queue_pending_tasks(ALGORITHM, now + timedelta(minutes=5), 100)
    assert [q.task_id for q in later] == [delayed.id]
    assert [q.task_id for q in repository.queue_pending_tasks("nlp", now, 10)] == [
        other_algorithm.id
    ]


def test_queued_tasks(repository: Repository, new_task: NewTaskFactory) -> None:
    now = utcnow()
    task = add(repository, new_task)
    add(repository, new_task)  # still PENDING: not listed
    queued = queue_one(repository, task, now)
    repository.queue_pending_tasks(ALGORITHM, now, 100)

    assert queued in repository.queued_tasks(ALGORITHM)
    assert len(repository.queued_tasks(ALGORITHM)) == 2
    assert repository.queued_tasks("nlp") == []


# -- start ------------------------------------------------------------------------------


def test_start_attempt_is_a_compare_and_set(
    repository: Repository, new_task: NewTaskFactory, engine: sa.Engine
) -> None:
    now = utcnow()
    task = add(repository, new_task, timeout_seconds=120)
    # Not QUEUED yet.
    assert repository.start_attempt(task.id, 1, now, "k", UPLOAD_TTL, endpoint=ENDPOINT) is None
    queue_one(repository, task, now)

    # The wrong attempt.
    assert repository.start_attempt(task.id, 2, now, "k", UPLOAD_TTL, endpoint=ENDPOINT) is None
    assert repository.start_attempt(task.id, 0, now, "k", UPLOAD_TTL, endpoint=ENDPOINT) is None
    started = repository.start_attempt(
        task.id, 1, now, f"results/{task.id}/1", UPLOAD_TTL, endpoint=ENDPOINT
    )
    second = repository.start_attempt(task.id, 1, now, "other", UPLOAD_TTL, endpoint=ENDPOINT)

    assert started is not None
    assert second is None
    assert started.deadline == now + timedelta(seconds=120)
    assert started.upload_expires_at == now + timedelta(seconds=min(UPLOAD_TTL, 120 + 300))
    assert started.task.status == TaskStatus.RUNNING
    assert started.task.attempts == 1
    assert started.task.first_dispatched_at == now
    executions = repository.executions_of(task.id)
    assert len(executions) == 1
    execution = executions[0]
    assert (execution.attempt, execution.algorithm) == (1, ALGORITHM)
    assert execution.status == ExecutionStatus.DISPATCHING
    assert execution.result_key == f"results/{task.id}/1"
    assert execution.created_at == now
    assert execution.deadline == now + timedelta(seconds=120)
    # The attempt records whose it is, what it costs and where it is sent.
    assert (execution.app, execution.cost, execution.endpoint) == (task.app, 1, ENDPOINT)
    assert count_rows(engine, "task_execution") == 1


def test_the_cost_goes_from_the_task_to_its_queued_and_active_attempts(
    repository: Repository, new_task: NewTaskFactory
) -> None:
    now = utcnow()
    task = add(repository, new_task, app="invoices", cost=3)
    assert stored_task(repository, task.id).cost == 3

    queued = queue_one(repository, task, now)
    assert (queued.app, queued.cost) == ("invoices", 3)
    assert repository.queued_tasks(ALGORITHM) == [queued]
    started = repository.start_attempt(task.id, 1, now, "k", UPLOAD_TTL, endpoint=ENDPOINT)
    assert started is not None

    execution = stored_execution(repository, task.id, 1)
    assert (execution.app, execution.cost, execution.endpoint) == ("invoices", 3, ENDPOINT)
    (attempt,) = repository.active_attempts(ALGORITHM)
    assert attempt == ActiveAttempt(
        task.id, 1, ALGORITHM, started.deadline, "invoices", 3, ENDPOINT
    )
    assert attempt.slot == Slot(task.id, 1, "invoices", 3, ENDPOINT)


def test_upload_expiry_is_capped_by_the_ttl(
    repository: Repository, new_task: NewTaskFactory
) -> None:
    now = utcnow()
    task = add(repository, new_task, timeout_seconds=7200)
    queue_one(repository, task, now)

    started = repository.start_attempt(task.id, 1, now, "k", 600, endpoint=ENDPOINT)

    assert started is not None
    assert started.deadline == now + timedelta(seconds=7200)
    assert started.upload_expires_at == now + timedelta(seconds=600)


def test_each_attempt_has_its_own_execution_row(
    repository: Repository, new_task: NewTaskFactory
) -> None:
    task, first_start = start(repository, new_task, max_attempts=3)
    retry_at = first_start + timedelta(seconds=2)
    finished = repository.finish_attempt(task.id, 1, first_start, retrying(retry_at))
    assert finished is not None
    assert not finished.terminal

    assert repository.queue_pending_tasks(ALGORITHM, first_start, 10) == []  # backoff
    (again,) = repository.queue_pending_tasks(ALGORITHM, retry_at, 10)
    assert again.attempt == 2
    later = retry_at + timedelta(seconds=1)
    started = repository.start_attempt(task.id, 2, later, "k2", UPLOAD_TTL, endpoint=ENDPOINT)

    assert started is not None
    assert started.task.first_dispatched_at == first_start  # kept from attempt 1
    executions = repository.executions_of(task.id)
    assert [(e.attempt, e.status) for e in executions] == [
        (1, ExecutionStatus.DISPATCH_FAILED),
        (2, ExecutionStatus.DISPATCHING),
    ]
    assert executions[1].deadline == later + timedelta(seconds=30)


# -- finish -----------------------------------------------------------------------------


def test_finish_with_retry_returns_to_pending_while_attempts_remain(
    repository: Repository, new_task: NewTaskFactory, engine: sa.Engine
) -> None:
    task, now = start(repository, new_task, max_attempts=2)
    retry_at = now + timedelta(seconds=8)

    finished = repository.finish_attempt(task.id, 1, now, retrying(retry_at))

    assert finished is not None
    assert not finished.terminal
    stored = stored_task(repository, task.id)
    assert stored.status == TaskStatus.PENDING
    assert stored.not_before == retry_at
    assert stored.attempts == 1
    assert stored.finished_at is None
    assert stored.notification_id is None
    assert stored.error_code == "dispatch_failed"
    execution = stored_execution(repository, task.id, 1)
    assert execution.status == ExecutionStatus.DISPATCH_FAILED
    assert execution.finished_at == now
    assert execution.http_status == 503
    assert count_rows(engine, "notification_outbox") == 0


def test_finish_with_retry_on_the_last_attempt_is_terminal(
    repository: Repository, new_task: NewTaskFactory, engine: sa.Engine
) -> None:
    task, now = start(repository, new_task, max_attempts=1)

    finished = repository.finish_attempt(task.id, 1, now, retrying(now + timedelta(seconds=8)))

    assert finished is not None
    assert finished.terminal
    stored = stored_task(repository, task.id)
    assert stored.status == TaskStatus.FAILED
    assert stored.finished_at == now
    assert stored.notification_id
    assert count_rows(engine, "notification_outbox", "task_id = :id", id=task.id) == 1


def test_finish_terminal_sets_status_and_writes_one_outbox_row(
    repository: Repository, new_task: NewTaskFactory, engine: sa.Engine
) -> None:
    task, started_at = start(repository, new_task)
    assert repository.mark_accepted(task.id, 1, started_at, 202)
    assert not repository.mark_accepted(task.id, 1, started_at, 202)  # already RUNNING
    now = started_at + timedelta(seconds=3)

    finished = repository.finish_attempt(task.id, 1, now, SUCCEEDED)

    assert finished is not None
    assert finished.terminal
    stored = stored_task(repository, task.id)
    assert stored.status == TaskStatus.SUCCEEDED
    assert stored.finished_at == now
    assert stored.result_key == f"key/{task.id}/1"
    assert stored.notification_id == finished.task.notification_id
    assert stored.error_code is None
    execution = stored_execution(repository, task.id, 1)
    assert execution.status == ExecutionStatus.SUCCEEDED
    assert execution.accepted_at == started_at
    assert execution.http_status is None  # the outcome's, not the dispatch's
    assert execution.finished_at == now
    with engine.connect() as connection:
        outbox = connection.execute(sa.text("SELECT * FROM notification_outbox")).all()
    assert len(outbox) == 1
    assert outbox[0].task_id == task.id
    assert outbox[0].notification_id == stored.notification_id
    # Claimed by whoever ended the task, who publishes next, as any publisher claims
    # it: the sweep sees it once the claim has lapsed.
    assert outbox[0].claimed_until == (now + timedelta(seconds=60)).replace(tzinfo=None)
    assert repository.unpublished_notifications(now, now, 10) == []
    lapsed = now + timedelta(seconds=60, microseconds=1)
    assert repository.unpublished_notifications(now, lapsed, 10) == [task.id]
    assert repository.unpublished_notifications(now - timedelta(seconds=1), lapsed, 10) == []


def test_a_second_finish_of_the_same_attempt_changes_nothing(
    repository: Repository, new_task: NewTaskFactory, engine: sa.Engine
) -> None:
    task, now = start(repository, new_task)
    assert repository.finish_attempt(task.id, 1, now, TIMED_OUT) is not None
    before = row_snapshot(engine, task.id)

    later = now + timedelta(seconds=5)
    assert repository.finish_attempt(task.id, 1, later, SUCCEEDED) is None
    assert repository.finish_attempt(task.id, 1, later, TIMED_OUT) is None
    assert repository.finish_attempt(task.id, 2, later, SUCCEEDED) is None

    assert row_snapshot(engine, task.id) == before
    assert stored_task(repository, task.id).status == TaskStatus.TIMED_OUT


def test_a_second_finish_after_a_retry_changes_nothing(
    repository: Repository, new_task: NewTaskFactory, engine: sa.Engine
) -> None:
    task, now = start(repository, new_task)
    assert repository.finish_attempt(task.id, 1, now, retrying(now)) is not None
    before = row_snapshot(engine, task.id)

    assert repository.finish_attempt(task.id, 1, now, SUCCEEDED) is None

    assert row_snapshot(engine, task.id) == before


def test_finish_of_a_stale_or_unknown_attempt_is_refused(
    repository: Repository, new_task: NewTaskFactory, engine: sa.Engine
) -> None:
    task, now = start(repository, new_task)
    before = row_snapshot(engine, task.id)

    assert repository.finish_attempt(task.id, 2, now, SUCCEEDED) is None
    assert repository.finish_attempt(task.id, 0, now, SUCCEEDED) is None
    assert repository.finish_attempt("no-such-task", 1, now, SUCCEEDED) is None

    assert row_snapshot(engine, task.id) == before


def test_finish_of_a_queued_task_is_refused(
    repository: Repository, new_task: NewTaskFactory
) -> None:
    now = utcnow()
    task = add(repository, new_task)
    queue_one(repository, task, now)

    assert repository.finish_attempt(task.id, 1, now, SUCCEEDED) is None
    assert stored_task(repository, task.id).status == TaskStatus.QUEUED


# -- cancel -----------------------------------------------------------------------------


def cancel(repository: Repository, task_id: str, now: datetime, reason: str) -> EndedTask | None:
    return repository.end_task(task_id, now, TaskStatus.CANCELLED, "cancelled", reason)


def test_cancel_a_running_task_then_finish_is_refused(
    repository: Repository, new_task: NewTaskFactory, engine: sa.Engine
) -> None:
    task, now = start(repository, new_task)

    cancelled = cancel(repository, task.id, now, "operator request")

    assert cancelled is not None
    cancelled_task, running_attempt = cancelled.task, cancelled.running_attempt
    assert running_attempt == 1
    assert cancelled_task.status == TaskStatus.CANCELLED
    execution = stored_execution(repository, task.id, 1)
    assert execution.status == ExecutionStatus.CANCELLED
    assert execution.error_message == "operator request"
    assert count_rows(engine, "notification_outbox") == 1
    before = row_snapshot(engine, task.id)

    assert repository.finish_attempt(task.id, 1, now, SUCCEEDED) is None
    assert cancel(repository, task.id, now, "again") is None
    assert row_snapshot(engine, task.id) == before


@pytest.mark.parametrize("status", ["pending", "queued"])
def test_cancel_a_task_that_never_ran(
    repository: Repository, new_task: NewTaskFactory, engine: sa.Engine, status: str
) -> None:
    now = utcnow()
    task = add(repository, new_task)
    if status == "queued":
        queue_one(repository, task, now)

    cancelled = cancel(repository, task.id, now, "not needed")

    assert cancelled is not None
    assert cancelled.running_attempt == 0
    stored = stored_task(repository, task.id)
    assert stored.status == TaskStatus.CANCELLED
    assert stored.finished_at == now
    assert count_rows(engine, "notification_outbox") == 1
    assert repository.queue_pending_tasks(ALGORITHM, now, 10) == []
    assert repository.start_attempt(task.id, 1, now, "k", UPLOAD_TTL, endpoint=ENDPOINT) is None


def test_cancel_a_terminal_or_unknown_task_returns_none(
    repository: Repository, new_task: NewTaskFactory, engine: sa.Engine
) -> None:
    task, now = start(repository, new_task)
    repository.finish_attempt(task.id, 1, now, SUCCEEDED)
    before = row_snapshot(engine, task.id)

    assert cancel(repository, task.id, now, "too late") is None
    assert cancel(repository, "no-such-task", now, "unknown") is None

    assert row_snapshot(engine, task.id) == before


# -- heartbeat --------------------------------------------------------------------------


def test_record_heartbeat_only_on_active_attempts(
    repository: Repository, new_task: NewTaskFactory
) -> None:
    task, now = start(repository, new_task)
    new_deadline = now + timedelta(minutes=10)
    upload = now + timedelta(hours=1)

    # DISPATCHING counts as active: the deadline already runs.
    assert repository.record_heartbeat(
        task.id, 1, now, deadline=new_deadline, progress=None, message=None, upload_expires_at=None
    )
    repository.mark_accepted(task.id, 1, now, 200)
    beat = now + timedelta(seconds=1)
    assert repository.record_heartbeat(
        task.id,
        1,
        beat,
        deadline=new_deadline,
        progress=40,
        message="page 4",
        upload_expires_at=upload,
    )
    execution = stored_execution(repository, task.id, 1)
    assert (execution.heartbeat_at, execution.deadline) == (beat, new_deadline)
    assert (execution.progress, execution.progress_message) == (40, "page 4")
    assert execution.upload_expires_at == upload
    # None leaves progress as it was.
    assert repository.record_heartbeat(
        task.id, 1, beat, deadline=new_deadline, progress=None, message=None, upload_expires_at=None
    )
    assert stored_execution(repository, task.id, 1).progress == 40

    assert not repository.record_heartbeat(
        task.id, 2, beat, deadline=new_deadline, progress=1, message=None, upload_expires_at=None
    )
    repository.finish_attempt(task.id, 1, beat, SUCCEEDED)
    assert not repository.record_heartbeat(
        task.id,
        1,
        beat,
        deadline=new_deadline + timedelta(hours=1),
        progress=99,
        message=None,
        upload_expires_at=None,
    )
    execution = stored_execution(repository, task.id, 1)
    assert execution.deadline == new_deadline
    assert execution.progress == 40


# -- undo -------------------------------------------------------------------------------


def test_abandon_attempt_takes_a_dispatching_attempt_back_without_charging_it(
    repository: Repository, new_task: NewTaskFactory, engine: sa.Engine
) -> None:
    task, now = start(repository, new_task)
    budget = stored_task(repository, task.id).max_attempts

    assert repository.abandon_attempt(task.id, 1, now)

    stored = stored_task(repository, task.id)
    assert stored.status == TaskStatus.PENDING
    assert stored.attempts == 1
    assert stored.max_attempts == budget + 1  # the abandoned attempt never ran
    (execution,) = repository.executions_of(task.id)
    assert execution.status == ExecutionStatus.ABANDONED
    assert not repository.abandon_attempt(task.id, 1, now)  # only once
    # The next start is attempt 2: attempt numbers are never reused.
    (queued,) = repository.queue_pending_tasks(ALGORITHM, now, 10)
    assert queued.attempt == 2
    assert repository.start_attempt(task.id, 1, now, "k", UPLOAD_TTL, endpoint=ENDPOINT) is None
    assert repository.start_attempt(task.id, 2, now, "k", UPLOAD_TTL, endpoint=ENDPOINT) is not None
    assert count_rows(engine, "task_execution") == 2


def test_abandon_attempt_of_a_finished_or_stale_attempt_is_refused(
    repository: Repository, new_task: NewTaskFactory, engine: sa.Engine
) -> None:
    task, now = start(repository, new_task)
    assert not repository.abandon_attempt(task.id, 2, now)
    repository.finish_attempt(task.id, 1, now, retrying(now))
    before = row_snapshot(engine, task.id)

    assert not repository.abandon_attempt(task.id, 1, now)

    assert row_snapshot(engine, task.id) == before


def test_abandon_attempt_refuses_an_accepted_attempt(
    repository: Repository, new_task: NewTaskFactory, engine: sa.Engine
) -> None:
    task, now = start(repository, new_task)
    assert repository.mark_accepted(task.id, 1, now, 202)
    before = row_snapshot(engine, task.id)

    abandoned = repository.abandon_attempt(task.id, 1, now)

    assert row_snapshot(engine, task.id) == before
    assert not abandoned


# -- outbox -----------------------------------------------------------------------------


def test_mark_notified_deletes_the_outbox_row(
    repository: Repository, new_task: NewTaskFactory, engine: sa.Engine
) -> None:
    task, now = start(repository, new_task)
    finished = repository.finish_attempt(task.id, 1, now, SUCCEEDED)
    assert finished is not None
    notification_id = finished.task.notification_id
    assert notification_id is not None
    later = now + timedelta(seconds=1)

    repository.mark_notified(task.id, "not-the-notification-id", later)
    assert count_rows(engine, "notification_outbox") == 1
    assert stored_task(repository, task.id).notified_at is None

    repository.mark_notified(task.id, notification_id, later)

    assert count_rows(engine, "notification_outbox") == 0
    assert stored_task(repository, task.id).notified_at == later
    assert repository.unpublished_notifications(later, later, 10) == []
    repository.mark_notified(task.id, notification_id, later)  # idempotent


def test_claim_notification_gives_one_publisher_the_row_until_the_claim_ends(
    repository: Repository, new_task: NewTaskFactory
) -> None:
    tasks = []
    for _ in range(3):
        task, now = start(repository, new_task)
        repository.finish_attempt(task.id, 1, now, SUCCEEDED)
        tasks.append(task)
    first, second, third = (task.id for task in tasks)
    # Whoever ended a task holds its row for a claim's time, then it is anyone's.
    assert not repository.claim_notification(first, utcnow(), utcnow())
    now = utcnow() + timedelta(seconds=61)
    until = now + timedelta(seconds=30)

    assert repository.claim_notification(first, now, until)
    assert not repository.claim_notification(first, now, until)  # another publisher
    assert not repository.claim_notification(first, until, until)  # still claimed at `until`
    assert not repository.claim_notification("no-such-task", now, until)

    assert repository.unpublished_notifications(now, now, 10) == [second, third]
    assert repository.unpublished_notifications(now, now, 1) == [second]
    # The claim ended (its publisher died): the row is listed and claimable again.
    after = until + timedelta(microseconds=1)
    assert repository.unpublished_notifications(after, after, 10) == [first, second, third]
    assert repository.claim_notification(first, after, after + timedelta(seconds=30))


# -- sweep and reconcile reads ----------------------------------------------------------


def test_active_and_overdue_attempts(repository: Repository, new_task: NewTaskFactory) -> None:
    now = utcnow()
    short, _ = start(repository, new_task, now=now - timedelta(seconds=60), timeout_seconds=10)
    longer, _ = start(repository, new_task, now=now - timedelta(seconds=60), timeout_seconds=20)
    accepted, _ = start(repository, new_task, now=now - timedelta(seconds=60), timeout_seconds=5)
    repository.mark_accepted(accepted.id, 1, now, 200)
    fresh, _ = start(repository, new_task, now=now, timeout_seconds=30)
    ended, _ = start(repository, new_task, now=now - timedelta(seconds=60), timeout_seconds=1)
    repository.finish_attempt(ended.id, 1, now, SUCCEEDED)
    other, _ = start(
        repository, new_task, now=now - timedelta(seconds=60), timeout_seconds=1, algorithm="nlp"
    )

    active = repository.active_attempts(ALGORITHM)
    overdue = repository.overdue_attempts(now, 100)

    assert {(a.task_id, a.attempt) for a in active} == {
        (short.id, 1),
        (longer.id, 1),
        (accepted.id, 1),
        (fresh.id, 1),
    }
    deadline_of = {a.task_id: a.deadline for a in active}
    assert deadline_of[fresh.id] == now + timedelta(seconds=30)
    assert all(a.algorithm == ALGORITHM for a in active)
    assert all((a.app, a.cost, a.endpoint) == ("contracts", 1, ENDPOINT) for a in active)
    assert [a.task_id for a in repository.active_attempts("nlp")] == [other.id]
    # Earliest deadline first, across algorithms, only active, only past deadline.
    assert [a.task_id for a in overdue] == [other.id, accepted.id, short.id, longer.id]
    assert [a.task_id for a in repository.overdue_attempts(now, 2)] == [other.id, accepted.id]
    # The deadline itself is not overdue yet (strictly before now).
    boundary = now - timedelta(seconds=50)  # short's deadline
    assert short.id not in {a.task_id for a in repository.overdue_attempts(boundary, 100)}
    assert repository.overdue_attempts(now - timedelta(hours=1), 100) == []


def test_an_acceptance_and_a_callback_at_the_same_moment_never_deadlock(
    repository: Repository, new_task: NewTaskFactory
) -> None:
    # Given attempts whose algorithm calls back the instant it accepts: the dispatcher
    # records the acceptance while the callback ends the attempt
    failures: list[BaseException] = []

    def race(task_id: str, now: datetime) -> None:
        barrier = threading.Barrier(2)

        def run(action: Callable[[], object]) -> None:
            barrier.wait()
            try:
                action()
            except BaseException as exc:  # a deadlock is an OperationalError (1213)
                failures.append(exc)

        threads = [
            threading.Thread(
                target=run, args=(partial(repository.mark_accepted, task_id, 1, now, 202),)
            ),
            threading.Thread(
                target=run, args=(partial(repository.finish_attempt, task_id, 1, now, SUCCEEDED),)
            ),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    for _ in range(60):
        task, now = start(repository, new_task)
        race(task.id, now)
        # Then both went through, and the task ended once
        assert stored_task(repository, task.id).status == TaskStatus.SUCCEEDED

    assert failures == []


def _race_a_task_with_its_cancel(repository: Repository, new: NewTask) -> bool:
    """The task message and a cancel by its key, taken by two workers at one moment;
    True if they missed each other (the task runs on while its cancel waits for it)."""
    now = utcnow()
    found: list[Task | None] = []
    barrier = threading.Barrier(2)

    def with_retry(action: Callable[[], object]) -> None:
        barrier.wait()
        for _ in range(5):  # a deadlock victim is sent again (SQS redelivers it)
            try:
                action()
                return
            except sa.exc.OperationalError:
                continue
        raise AssertionError("still deadlocked after five tries")

    def keep() -> None:
        until = now + timedelta(hours=1)
        found.append(repository.keep_cancel(new.app, new.idempotency_key, "gone", now, until))

    threads = [
        threading.Thread(target=with_retry, args=(partial(repository.add_task, new),)),
        threading.Thread(target=with_retry, args=(keep,)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = found_task(repository, new.app, new.idempotency_key)
    return stored.status != TaskStatus.CANCELLED and found[-1] is None


def test_a_task_and_its_cancel_arriving_at_once_never_miss_each_other(
    repository: Repository, new_task: NewTaskFactory
) -> None:
    # Then, each time: either the task was stored cancelled (it saw the cancel), or the
    # keep found the task (and its caller cancels it)
    missed = [n for n in range(40) if _race_a_task_with_its_cancel(repository, new_task())]
    assert missed == []


def test_a_cancel_kept_while_its_task_is_being_stored_waits_and_finds_it(
    repository: Repository, new_task: NewTaskFactory, engine: sa.Engine
) -> None:
    # Given intake storing a task, its transaction not yet committed
    new = new_task()
    now = utcnow()
    sessions = create_session_factory(engine)
    with sessions() as storing:
        storing.add(
            Task(
                id=new.id,
                app=new.app,
                algorithm=new.algorithm,
                idempotency_key=new.idempotency_key,
                priority=0,
                input={},
                meta={},
                timeout_seconds=60,
                max_attempts=1,
                status=TaskStatus.PENDING,
                attempts=0,
                not_before=now,
                created_at=now,
                updated_at=now,
            )
        )
        storing.flush()

        # When a cancel by its key is kept at that moment
        found: list[Task | None] = []
        keeping = threading.Thread(
            target=lambda: found.append(
                repository.keep_cancel(
                    new.app, new.idempotency_key, "gone", now, now + timedelta(hours=1)
                )
            )
        )
        keeping.start()
        keeping.join(timeout=1)

        # Then it waits for the task's commit rather than missing it
        assert keeping.is_alive()
        storing.commit()
    keeping.join(timeout=30)
    assert [task.id if task else None for task in found] == [new.id]
