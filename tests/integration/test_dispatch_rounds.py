"""A dispatch round's attempts start in one transaction and their acceptance is
recorded in one (``Repository.start_attempts``, ``Repository.mark_many_accepted``):
each attempt is still a compare-and-set of its own, and rounds that share tasks
neither run a task twice nor deadlock."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from baton.records import (
    AcceptedDispatch,
    AttemptOutcome,
    AttemptStart,
    ExecutionStatus,
    TaskStatus,
)
from baton.repository import Repository

from tests.support.admission import ENDPOINT
from tests.support.database import NewTaskFactory, stored_execution, stored_task, utcnow

UPLOAD_TTL = 3600


def queued(repository: Repository, new_task: NewTaskFactory, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        task, created = repository.add_task(new_task())
        assert created
        ids.append(task.id)
    claimed = repository.queue_pending_tasks("ocr", utcnow(), 1000)
    assert {q.task_id for q in claimed} >= set(ids)
    return ids


def starts(ids: list[str], attempt: int = 1) -> list[AttemptStart]:
    return [AttemptStart(task_id, attempt, f"key/{task_id}/{attempt}", ENDPOINT) for task_id in ids]


@pytest.fixture
def statements(engine: sa.Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def statement(_conn: Any, _cursor: Any, text: str, *_args: Any) -> None:
        seen.append(text.split(None, 1)[0].upper())

    sa.event.listen(engine, "before_cursor_execute", statement)
    sa.event.listen(engine, "commit", lambda _conn: seen.append("COMMIT"))
    yield seen
    sa.event.remove(engine, "before_cursor_execute", statement)


def test_a_round_starts_every_winner_in_four_statements_and_no_loser(
    repository: Repository, new_task: NewTaskFactory, statements: list[str]
) -> None:
    now = utcnow()
    ids = queued(repository, new_task, 5)
    pending, _ = repository.add_task(new_task())  # never queued: not startable
    first_time = now - timedelta(minutes=5)
    repository.start_attempt(ids[4], 1, first_time, "k", UPLOAD_TTL, endpoint=ENDPOINT)
    statements.clear()

    wanted = [*starts(ids[:3]), *starts([ids[3]], attempt=2), *starts([ids[4], pending.id])]
    started = repository.start_attempts([*wanted, *starts(["no-such-task"])], now, UPLOAD_TTL)

    # ids[3] is on attempt 0, not 1; ids[4] already runs attempt 1; pending is pending
    assert set(started) == set(ids[:3])
    assert Counter(statements) == Counter({"SELECT": 1, "UPDATE": 1, "INSERT": 1, "COMMIT": 1})
    for task_id in ids[:3]:
        task = stored_task(repository, task_id)
        assert (task.status, task.attempts, task.first_dispatched_at) == (
            TaskStatus.RUNNING,
            1,
            now,
        )
        assert started[task_id].task.attempts == 1
        execution = stored_execution(repository, task_id, 1)
        assert execution.status == ExecutionStatus.DISPATCHING
        assert execution.result_key == f"key/{task_id}/1"
        assert execution.deadline == started[task_id].deadline
        assert started[task_id].deadline == now + timedelta(seconds=task.timeout_seconds)
    assert stored_task(repository, ids[3]).status == TaskStatus.QUEUED
    assert stored_task(repository, ids[4]).first_dispatched_at == first_time
    assert stored_task(repository, pending.id).status == TaskStatus.PENDING


def test_a_retry_keeps_its_first_dispatch_time(
    repository: Repository, new_task: NewTaskFactory
) -> None:
    (task_id,) = queued(repository, new_task, 1)
    first = utcnow() - timedelta(minutes=1)
    assert repository.start_attempt(task_id, 1, first, "k1", UPLOAD_TTL, endpoint=ENDPOINT)
    retry = AttemptOutcome(
        ExecutionStatus.DISPATCH_FAILED, TaskStatus.FAILED, "dispatch_failed", "503", 503, first
    )
    assert repository.finish_attempt(task_id, 1, first, retry) is not None
    repository.queue_pending_tasks("ocr", utcnow(), 10)

    started = repository.start_attempts(starts([task_id], attempt=2), utcnow(), UPLOAD_TTL)

    assert set(started) == {task_id}
    assert stored_task(repository, task_id).first_dispatched_at == first


def test_rounds_that_share_tasks_start_each_once_and_never_deadlock(
    repository: Repository, new_task: NewTaskFactory
) -> None:
    ids = queued(repository, new_task, 40)
    barrier = threading.Barrier(4)
    won: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def round_of(order: list[str]) -> None:
        barrier.wait()
        try:
            started = repository.start_attempts(starts(order), utcnow(), UPLOAD_TTL)
        except BaseException as exc:  # a deadlock victim would land here
            errors.append(exc)
            return
        with lock:
            won.extend(started)

    orders = [ids, ids[::-1], ids[::2] + ids[1::2], ids[10:] + ids[:10]]
    threads = [threading.Thread(target=round_of, args=(order,)) for order in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert Counter(won) == Counter(ids)  # every task started, none twice


def test_acceptance_of_a_round_moves_each_dispatching_attempt_once(
    repository: Repository, new_task: NewTaskFactory, statements: list[str]
) -> None:
    now = utcnow()
    ids = queued(repository, new_task, 4)
    repository.start_attempts(starts(ids), now, UPLOAD_TTL)
    # ids[3]'s callback came first: the attempt ended before its acceptance is recorded
    done = AttemptOutcome(ExecutionStatus.SUCCEEDED, TaskStatus.SUCCEEDED)
    assert repository.finish_attempt(ids[3], 1, now, done) is not None
    statements.clear()
    later = now + timedelta(seconds=1)

    moved = repository.mark_many_accepted(
        [
            AcceptedDispatch(ids[0], 1, 202),
            AcceptedDispatch(ids[1], 1, 200),
            AcceptedDispatch(ids[2], 2, 202),  # not its attempt
            AcceptedDispatch(ids[3], 1, 202),
        ],
        later,
    )

    assert moved == 2
    assert statements.count("COMMIT") == 1
    for task_id, status in ((ids[0], 202), (ids[1], 200)):
        execution = stored_execution(repository, task_id, 1)
        assert (execution.status, execution.http_status, execution.accepted_at) == (
            ExecutionStatus.RUNNING,
            status,
            later,
        )
        assert stored_task(repository, task_id).first_accepted_at == later
    assert stored_execution(repository, ids[2], 1).status == ExecutionStatus.DISPATCHING
    assert stored_task(repository, ids[2]).first_accepted_at is None
    assert stored_execution(repository, ids[3], 1).status == ExecutionStatus.SUCCEEDED
    assert stored_task(repository, ids[3]).first_accepted_at is None
    assert repository.mark_many_accepted([AcceptedDispatch(ids[0], 1, 202)], later) == 0


@pytest.mark.parametrize("stale_first", [True, False])
def test_a_stale_admission_beside_the_current_one_starts_only_the_current_attempt(
    repository: Repository, new_task: NewTaskFactory, stale_first: bool
) -> None:
    # Given a task whose attempt 1 failed, queued again for attempt 2, and a round that
    # also holds a stale admission of its attempt 1
    (task_id,) = queued(repository, new_task, 1)
    first = utcnow() - timedelta(minutes=1)
    assert repository.start_attempt(task_id, 1, first, "k1", UPLOAD_TTL, endpoint=ENDPOINT)
    retry = AttemptOutcome(
        ExecutionStatus.DISPATCH_FAILED, TaskStatus.FAILED, "dispatch_failed", "503", 503, first
    )
    assert repository.finish_attempt(task_id, 1, first, retry) is not None
    repository.queue_pending_tasks("ocr", utcnow(), 10)
    round_ = [*starts([task_id], attempt=1), *starts([task_id], attempt=2)]

    started = repository.start_attempts(round_ if stale_first else round_[::-1], utcnow(), 60)

    assert started[task_id].task.attempts == 2
    assert stored_execution(repository, task_id, 2).status == ExecutionStatus.DISPATCHING
    assert stored_execution(repository, task_id, 1).status == ExecutionStatus.DISPATCH_FAILED
