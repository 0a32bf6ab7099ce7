"""Retries in the database: the compare-and-set holds when operators race, whether they
retry one task or overlapping batches, and only a final, announced task is taken."""

from __future__ import annotations

import threading
from datetime import timedelta

import sqlalchemy as sa
from baton.records import TaskStatus
from baton.repository import Repository, RetrySelection

from tests.support.database import NewTaskFactory, stored_task, utcnow

BUDGETS = {"ocr": 3}


def _final(
    repository: Repository,
    engine: sa.Engine,
    new_task: NewTaskFactory,
    count: int,
    *,
    status: str = "failed",
    notified: bool = True,
) -> list[str]:
    """Tasks that ended ``status`` with one attempt (their notification out, unless not)."""
    ids = []
    ended = utcnow() - timedelta(minutes=1)
    for _ in range(count):
        task, _created = repository.add_task(new_task())
        ids.append(task.id)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE task SET status = :status, attempts = 1, error_code = 'dispatch_failed',"
                " finished_at = :ended, updated_at = :ended, notification_id = UUID(),"
                " notified_at = :notified WHERE id IN :ids"
            ).bindparams(sa.bindparam("ids", expanding=True)),
            {
                "status": status,
                "ended": ended.replace(tzinfo=None),
                "notified": ended.replace(tzinfo=None) if notified else None,
                "ids": ids,
            },
        )
    return ids


def test_overlapping_bulk_retries_retry_each_task_once(
    repository: Repository, engine: sa.Engine, new_task: NewTaskFactory
) -> None:
    ids = _final(repository, engine, new_task, 40)
    operators = 6
    barrier = threading.Barrier(operators)
    retried: list[list[str]] = []
    lock = threading.Lock()

    def operator(n: int) -> None:
        # each takes every task, in its own order and batches
        order = ids[n:] + ids[:n]
        barrier.wait()
        mine = []
        for start in range(0, len(order), 7):
            mine += [
                t.id
                for t in repository.retry_tasks(
                    order[start : start + 7], TaskStatus.FAILED, utcnow(), BUDGETS
                )
            ]
        with lock:
            retried.append(mine)

    threads = [threading.Thread(target=operator, args=(n,)) for n in range(operators)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    everything = [task_id for mine in retried for task_id in mine]
    assert sorted(everything) == sorted(ids)  # each exactly once
    for task_id in ids:
        task = stored_task(repository, task_id)
        assert (task.status, task.attempts, task.max_attempts) == (TaskStatus.PENDING, 1, 4)
        assert (task.notification_id, task.notified_at, task.finished_at) == (None, None, None)
        assert task.error_code is None


def test_only_announced_tasks_in_the_expected_state_are_retried(
    repository: Repository, engine: sa.Engine, new_task: NewTaskFactory
) -> None:
    announced = _final(repository, engine, new_task, 2)
    pending_notice = _final(repository, engine, new_task, 1, notified=False)
    timed_out = _final(repository, engine, new_task, 1, status="timed_out")
    own_budget, _ = repository.add_task(new_task(algorithm="gone", attempt_budget=5))
    gone, _ = repository.add_task(new_task(algorithm="gone"))
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE task SET status = 'failed', attempts = 2, notified_at = :now,"
                " updated_at = :now, finished_at = :now WHERE id IN (:a, :b)"
            ),
            {"a": own_budget.id, "b": gone.id, "now": utcnow().replace(tzinfo=None)},
        )

    retried = repository.retry_tasks(
        [*announced, *pending_notice, *timed_out, own_budget.id, gone.id],
        TaskStatus.FAILED,
        utcnow(),
        BUDGETS,
    )

    # the message's own budget needs no registered algorithm; the registry's does
    assert {t.id: t.max_attempts for t in retried} == {
        **{task_id: 1 + 3 for task_id in announced},
        own_budget.id: 2 + 5,
    }
    assert stored_task(repository, pending_notice[0]).status == TaskStatus.FAILED
    assert stored_task(repository, timed_out[0]).status == TaskStatus.TIMED_OUT
    assert stored_task(repository, gone.id).status == TaskStatus.FAILED


def test_the_selection_walks_by_end_time_and_stops_at_the_runs_start(
    repository: Repository, engine: sa.Engine, new_task: NewTaskFactory
) -> None:
    ids = _final(repository, engine, new_task, 5)
    selection = RetrySelection(status=TaskStatus.FAILED, ended_by=utcnow())
    assert repository.count_retry_candidates(selection) == 5
    first = repository.retry_candidates(selection, None, 3)
    rest = repository.retry_candidates(selection, (first[-1].updated_at, first[-1].id), 3)
    assert sorted(t.id for t in first + rest) == sorted(ids)
    assert len(rest) == 2
    # a task that ends again after the run began is not in it
    repository.retry_tasks(ids[:1], TaskStatus.FAILED, utcnow(), BUDGETS)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE task SET status = 'failed', updated_at = :later, finished_at = :later,"
                " notified_at = :later WHERE id = :id"
            ),
            {"id": ids[0], "later": (utcnow() + timedelta(minutes=1)).replace(tzinfo=None)},
        )
    assert repository.count_retry_candidates(selection) == 4
    assert (
        repository.count_retry_candidates(
            RetrySelection(status=TaskStatus.FAILED, error_code="dispatch_failed", app="other")
        )
        == 0
    )
