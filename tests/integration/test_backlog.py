"""The sweep's gauges read the backlog in one grouped query: per algorithm, pending and
queued counts, how many may start now, and the oldest of those; a task whose
``not_before`` is still ahead (a delayed start, a backoff) waits by request and
neither counts as due nor ages the backlog."""

from __future__ import annotations

from datetime import timedelta

from baton.records import TaskStatus
from baton.repository import AlgorithmBacklog, Repository

from tests.support.database import NewTaskFactory, utcnow


def test_counts_due_tasks_and_the_oldest_of_them_per_algorithm(
    repository: Repository, new_task: NewTaskFactory
) -> None:
    # Given, for ocr: a task queued 7 minutes after its arrival, one pending and due for
    # 5 minutes, one delayed an hour (created before both); for nlp one due now; and a
    # cancelled one
    now = utcnow()
    queued = new_task(created_at=now - timedelta(minutes=7), priority=5)
    due = new_task(created_at=now - timedelta(minutes=5))
    delayed = new_task(created_at=now - timedelta(minutes=9), not_before=now + timedelta(hours=1))
    nlp = new_task(algorithm="nlp", created_at=now - timedelta(seconds=30))
    done = new_task(created_at=now - timedelta(hours=2))
    for task in (queued, due, delayed, nlp, done):
        repository.add_task(task)
    assert [t.task_id for t in repository.queue_pending_tasks("ocr", now, 1)] == [queued.id]
    repository.end_task(done.id, now, TaskStatus.CANCELLED, "cancelled", "not needed")

    # When the sweep reads the backlog
    backlog = repository.backlog(now)

    # Then each algorithm with waiting tasks has its counts; the delayed task is
    # pending but not due, and does not make the backlog older
    assert set(backlog) == {"ocr", "nlp"}
    ocr = backlog["ocr"]
    assert (ocr.pending, ocr.queued, ocr.due) == (2, 1, 2)
    assert ocr.oldest_due_created_at == queued.created_at
    assert backlog["nlp"] == AlgorithmBacklog(
        pending=1, queued=0, due=1, oldest_due_created_at=nlp.created_at
    )


def test_operator_pauses_are_read_in_one_query(repository: Repository) -> None:
    assert repository.held_algorithms() == set()
    repository.hold_algorithm("ocr", utcnow(), "maintenance")
    repository.hold_algorithm("nlp", utcnow(), "maintenance")
    assert repository.held_algorithms() == {"ocr", "nlp"}
