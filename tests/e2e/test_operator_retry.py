"""Operators retry final tasks, and an app gets a lost notification back by sending its
message again: through the real handlers, the algorithm service on loopback and the
``baton`` console script.

A retried task runs again from its next attempt number, keeps its attempt rows, and
its next final state is a new outcome with a new ``notification_id``; a duplicate
message of a final task publishes the same notification again and creates nothing."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa
from baton.cancellation import cancel_task
from baton.errors import RetryRefused
from baton.records import ExecutionStatus, TaskStatus
from baton.retrying import TaskRef, retry_task
from baton.runtime import Runtime
from botocore.exceptions import ClientError

from tests.support.algorithm_service import AlgorithmService
from tests.support.aws import AwsResources
from tests.support.clock import ShiftableClock
from tests.support.console import baton
from tests.support.events import schedule_event, sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.runtime import RuntimeFactory
from tests.support.waiting import wait_for

TASK_FIELDS = {"task_id", "app", "algorithm", "idempotency_key", "status", "created_at"}


def submit(handlers: Handlers, *bodies: str) -> None:
    answer = handlers.invoke("intake", sqs_event(*(sqs_record(body) for body in bodies)))
    assert answer == {"batchItemFailures": []}


def notifications_of(aws: AwsResources, task_id: str, count: int) -> list[dict[str, Any]]:
    def arrived() -> list[dict[str, Any]] | None:
        mine = [n for n in aws.notifications() if n["task_id"] == task_id]
        return mine if len(mine) >= count else None

    # Not the default 50 ms: polled that often, the retried attempt's callback (another
    # thread of this process, through the same moto server) did not get through within
    # the wait on a machine of two shared cores.
    return wait_for(arrived, interval=0.25)


def final_task(
    runtime: Runtime,
    handlers: Handlers,
    aws: AwsResources,
    key: str,
    **fields: Any,
) -> str:
    """Submit a task and wait until it is final and its notification is out."""
    submit(handlers, task_body(idempotency_key=key, **fields))
    task = runtime.repository.find_task("contracts", key)
    assert task is not None
    notifications_of(aws, task.id, 1)

    def notified() -> bool:
        stored = runtime.repository.get_task(task.id)
        return stored is not None and stored.notified_at is not None

    wait_for(notified)
    return task.id


def test_a_failed_task_retried_runs_again_and_gets_a_new_outcome(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a task the algorithm fails on its first attempt (and would do on its second)
    runtime = make_runtime()
    task_id = final_task(
        runtime,
        handlers,
        aws,
        "retry-me",
        max_attempts=2,
        input={"document": "doc-1", "test": {"outcomes": ["failed", "succeeded"]}},
    )
    first = notifications_of(aws, task_id, 1)[0]
    assert first["status"] == "failed"
    assert first["error"]["code"] == "unreadable"

    # When an operator retries it by its app and key
    code, out, err = baton(capsys, "task", "retry", "--app", "contracts", "--key", "retry-me")
    assert code == 0, err
    assert out.startswith(f"task {task_id} retried: failed -> pending")

    # Then it runs again as attempt 2, and the app is told of a second, new outcome
    second = notifications_of(aws, task_id, 2)[1]
    assert second["status"] == "succeeded"
    assert second["notification_id"] != first["notification_id"]
    assert second["attempts"] == 2
    assert second["error"] is None
    assert [r["attempt"] for r in algorithm_service.requests_for(task_id)] == [1, 2]
    # And its history shows both outcomes
    executions = runtime.repository.executions_of(task_id)
    assert [(e.attempt, e.status) for e in executions] == [
        (1, ExecutionStatus.FAILED),
        (2, ExecutionStatus.SUCCEEDED),
    ]
    assert executions[0].error_code == "unreadable"
    task = runtime.repository.get_task(task_id)
    assert task is not None
    assert task.status == TaskStatus.SUCCEEDED
    # a fresh budget counted from the attempts so far: the message's own 2
    assert task.max_attempts == 1 + 2
    assert task.notification_id == second["notification_id"]
    # And a succeeded task is final too: it may be retried, with yet another outcome
    code, out, _ = baton(capsys, "task", "retry", task_id, "--json")
    assert code == 0
    answer = json.loads(out)
    assert answer.keys() >= TASK_FIELDS
    assert (answer["status"], answer["previous_status"]) == ("pending", "succeeded")
    third = notifications_of(aws, task_id, 3)[2]
    assert third["status"] == "succeeded"
    assert len({first["notification_id"], second["notification_id"], third["notification_id"]}) == 3
    assert third["attempts"] == 3


def test_a_retry_without_a_budget_of_its_own_takes_the_algorithms(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
) -> None:
    runtime = make_runtime()
    task_id = final_task(
        runtime, handlers, aws, "rejected", input={"test": {"dispatch_status": [400, 202]}}
    )
    task = runtime.repository.get_task(task_id)
    assert task is not None
    assert (task.status, task.error_code, task.attempts) == (
        TaskStatus.FAILED,
        "dispatch_rejected",
        1,
    )

    retried, previous = retry_task(runtime, TaskRef(task_id=task_id))

    assert previous == TaskStatus.FAILED
    assert retried.max_attempts == 1 + 3  # registry_for gives every algorithm 3
    assert notifications_of(aws, task_id, 2)[1]["status"] == "succeeded"


def test_a_duplicate_of_a_final_task_publishes_its_notification_again(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
) -> None:
    # Given a task that succeeded, and the app that lost its notification
    runtime = make_runtime()
    body = task_body(idempotency_key="lost-it", metadata={"case": "17"})
    task_id = final_task(runtime, handlers, aws, "lost-it", metadata={"case": "17"})
    original = notifications_of(aws, task_id, 1)[0]
    rows_before = (runtime.repository.get_task(task_id), runtime.repository.executions_of(task_id))

    # When it sends the same message again, a little later (a URL is signed to the
    # second, by the real clock)
    clock.advance(60)
    time.sleep(1.1)
    submit(handlers, body)

    # Then the same notification comes again, with a fresh result URL only
    again = notifications_of(aws, task_id, 2)[1]
    assert again["notification_id"] == original["notification_id"]
    fresh = {"url", "expires_at"}
    assert {k: v for k, v in again.items() if k != "result"} == {
        k: v for k, v in original.items() if k != "result"
    }
    assert {k: v for k, v in again["result"].items() if k not in fresh} == {
        k: v for k, v in original["result"].items() if k not in fresh
    }
    assert again["result"]["url"] != original["result"]["url"]
    assert again["result"]["expires_at"] > original["result"]["expires_at"]
    # And nothing was created or changed: no second task, attempt or outcome
    assert len(algorithm_service.requests) == 1
    task, executions = rows_before
    assert task is not None
    after = runtime.repository.get_task(task_id)
    assert after is not None
    assert (after.status, after.notification_id, after.attempts, after.updated_at) == (
        task.status,
        task.notification_id,
        task.attempts,
        task.updated_at,
    )
    assert len(runtime.repository.executions_of(task_id)) == len(executions) == 1


def test_a_duplicate_of_a_task_not_final_publishes_nothing(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    aws: AwsResources,
) -> None:
    make_runtime()
    body = task_body(idempotency_key="later", not_before="2999-01-01T00:00:00+00:00")
    submit(handlers, body)
    submit(handlers, body)
    assert aws.notifications(wait_seconds=1) == []


def test_an_sns_outage_does_not_fail_the_duplicate(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = make_runtime()
    task_id = final_task(runtime, handlers, aws, "outage")

    def unavailable(*_args: Any, **_kwargs: Any) -> str:
        raise ClientError({"Error": {"Code": "InternalError", "Message": "down"}}, "Publish")

    monkeypatch.setattr(runtime.notifier, "publish", unavailable)
    # a success for the batch: the task is stored; the app may send the message again
    submit(handlers, task_body(idempotency_key="outage"))
    monkeypatch.undo()
    submit(handlers, task_body(idempotency_key="outage"))
    ids = {n["notification_id"] for n in notifications_of(aws, task_id, 2)}
    assert len(ids) == 1


def test_only_a_final_task_whose_notification_is_out_can_be_retried(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    aws: AwsResources,
    clean_database: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    runtime = make_runtime()
    submit(handlers, task_body(idempotency_key="waits", not_before="2999-01-01T00:00:00+00:00"))
    waiting = runtime.repository.find_task("contracts", "waits")
    assert waiting is not None

    code, out, err = baton(capsys, "task", "retry", waiting.id)
    assert (code, out) == (1, "")
    assert "is pending: only a final task" in err
    assert runtime.repository.get_task(waiting.id).status == TaskStatus.PENDING  # type: ignore[union-attr]

    code, _, err = baton(capsys, "task", "retry", "00000000-0000-0000-0000-000000000000")
    assert code == 1
    assert "does not exist" in err
    code, _, err = baton(capsys, "task", "retry", "--app", "contracts", "--key", "nope")
    assert code == 1
    assert "no task with that idempotency key" in err

    # usage: neither an id nor an app and key, or both
    for argv in (["task", "retry"], ["task", "retry", waiting.id, "--app", "contracts"]):
        code, _, err = baton(capsys, *argv)
        assert code == 2, argv
        assert "give a task id, or both an app and an idempotency key" in err

    # a final task whose notification is not out yet is refused until it is
    cancel_task(runtime, waiting.id)
    engine = sa.create_engine(clean_database)
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE task SET notified_at = NULL WHERE id = :id"), {"id": waiting.id}
        )
    engine.dispose()
    code, _, err = baton(capsys, "task", "retry", waiting.id)
    assert code == 1
    assert "notification is not published yet" in err


def test_concurrent_retries_of_one_task_retry_it_once(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
) -> None:
    runtime = make_runtime()
    task_id = final_task(
        runtime, handlers, aws, "race", input={"test": {"outcomes": ["failed", "silent"]}}
    )
    operators = 8
    barrier = threading.Barrier(operators)
    results: list[str] = []

    def operator() -> None:
        barrier.wait()
        try:
            retry_task(runtime, TaskRef(task_id=task_id))
        except RetryRefused as exc:
            results.append(f"refused: {exc}")
        else:
            results.append("retried")

    threads = [threading.Thread(target=operator) for _ in range(operators)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert Counter(r.split(":")[0] for r in results) == {"retried": 1, "refused": 7}
    # The winner's fast path promotes with SKIP LOCKED: a refused operator still holding
    # the task's row (its locking read) makes it skip the task, and the timers take it,
    # as they take any pending task. One tick of them, then: still one retry.
    for name in ("promote", "dispatch"):
        handlers.invoke(name, schedule_event(name))
    wait_for(lambda: len(algorithm_service.requests_for(task_id)) == 2)
    algorithm_service.wait_idle()
    assert [r["attempt"] for r in algorithm_service.requests_for(task_id)] == [1, 2]
    task = runtime.repository.get_task(task_id)
    assert task is not None
    assert task.max_attempts == 1 + 3


def _final_tasks(
    runtime: Runtime, handlers: Handlers, aws: AwsResources
) -> dict[str, tuple[str, str, str, str]]:
    """Tasks of two apps and two algorithms that ended in different ways:
    task id -> (app, algorithm, status, error code)."""
    rejected = {"test": {"dispatch_status": [400]}}
    failed = {"test": {"outcome": "failed"}}
    plan = [
        ("contracts", "ocr", rejected),
        ("contracts", "ocr", rejected),
        ("contracts", "ocr", rejected),
        ("contracts", "ocr", failed),
        ("contracts", "nlp", rejected),
        ("portal", "ocr", rejected),
        ("portal", "ocr", rejected),
    ]
    bodies = [
        task_body(app=app, algorithm=algorithm, idempotency_key=f"bulk-{n}", input=test)
        for n, (app, algorithm, test) in enumerate(plan)
    ]
    bodies.append(task_body(idempotency_key="bulk-cancel", not_before="2999-01-01T00:00:00+00:00"))
    submit(handlers, *bodies)
    cancelled = runtime.repository.find_task("contracts", "bulk-cancel")
    assert cancelled is not None
    cancel_task(runtime, cancelled.id)

    def all_final() -> dict[str, tuple[str, str, str, str]] | None:
        tasks = {}
        for n, (app, _, _) in enumerate(plan):
            task = runtime.repository.find_task(app, f"bulk-{n}")
            if task is None or task.notified_at is None:
                return None
            tasks[task.id] = (app, task.algorithm, task.status.value, str(task.error_code))
        return tasks

    tasks = wait_for(all_final)
    tasks[cancelled.id] = ("contracts", "ocr", "cancelled", "cancelled")
    return tasks


def test_a_bulk_retry_retries_exactly_what_matches_and_a_dry_run_nothing(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    capsys: pytest.CaptureFixture[str],
) -> None:
    runtime = make_runtime()
    tasks = _final_tasks(runtime, handlers, aws)
    before = {task_id: runtime.repository.get_task(task_id) for task_id in tasks}

    def unchanged(task_id: str) -> bool:
        was, now = before[task_id], runtime.repository.get_task(task_id)
        assert was is not None
        assert now is not None
        return (now.status, now.notification_id, now.updated_at) == (
            was.status,
            was.notification_id,
            was.updated_at,
        )

    # A dry run counts and shows them, and changes nothing
    code, out, err = baton(
        capsys, "tasks", "retry", "--status", "failed", "--error-code", "dispatch_rejected",
        "--app", "contracts", "--dry-run",
    )  # fmt: skip
    assert code == 0, err
    assert out.splitlines()[0] == "4 failed task(s) selected"
    assert out.splitlines()[1].split() == [
        "task_id", "app", "algorithm", "status", "attempts", "max_attempts", "error_code",
        "finished_at",
    ]  # fmt: skip
    assert out.rstrip().endswith("dry run: nothing changed")
    assert all(unchanged(task_id) for task_id in tasks)
    code, out, _ = baton(capsys, "tasks", "retry", "--status", "failed", "--dry-run", "--json")
    preview = json.loads(out)
    assert (preview["dry_run"], preview["matched"], preview["retried"]) == (True, 7, 0)
    assert all(row.keys() >= TASK_FIELDS for row in preview["tasks"])
    assert all(unchanged(task_id) for task_id in tasks)

    # A bulk retry by status, app, algorithm and error code retries exactly those
    code, out, err = baton(
        capsys, "tasks", "retry", "--status", "failed", "--app", "contracts",
        "--algorithm", "ocr", "--error-code", "dispatch_rejected", "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    expected = {
        task_id
        for task_id, (app, algorithm, status, error) in tasks.items()
        if (app, algorithm, status, error) == ("contracts", "ocr", "failed", "dispatch_rejected")
    }
    assert len(expected) == 3
    assert (report["dry_run"], report["matched"], report["retried"]) == (False, 3, 3)
    assert {row["task_id"] for row in report["tasks"]} == expected
    assert all(row.keys() >= TASK_FIELDS and row["status"] == "pending" for row in report["tasks"])
    assert all(unchanged(task_id) for task_id in set(tasks) - expected)
    # each runs again (and is rejected again): a new outcome, a new notification id
    for task_id in expected:
        old, new = notifications_of(aws, task_id, 2)[:2]
        assert old["notification_id"] != new["notification_id"]
        assert new["attempts"] == 2

    # By status alone: the cancelled one
    code, out, _ = baton(capsys, "tasks", "retry", "--status", "cancelled")
    assert code == 0
    assert out.splitlines()[0] == "1 cancelled task(s) selected"
    assert out.splitlines()[-1] == "1 task(s) retried"
    (cancelled,) = [task_id for task_id, row in tasks.items() if row[2] == "cancelled"]
    assert runtime.repository.get_task(cancelled).status != TaskStatus.CANCELLED  # type: ignore[union-attr]
    # --limit and --since narrow it further; a time without an offset is a usage error
    code, out, _ = baton(
        capsys, "tasks", "retry", "--status", "failed", "--app", "portal", "--limit", "1"
    )
    assert out.splitlines()[-1] == "1 task(s) retried"
    code, out, _ = baton(
        capsys, "tasks", "retry", "--status", "failed", "--since", "2999-01-01T00:00:00Z"
    )
    assert (code, out.splitlines()[0]) == (0, "0 failed task(s) selected")
    code, _, err = baton(
        capsys, "tasks", "retry", "--status", "failed", "--since", "2026-01-01T00:00:00"
    )
    assert code == 2
    assert "--since" in err
    code, _, _ = baton(capsys, "tasks", "retry", "--status", "succeeded")
    assert code == 2


def test_a_bulk_retry_takes_each_task_once_however_fast_it_ends_again(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
) -> None:
    """Retried tasks rejected again at once (the fast path) end before the run is over:
    the run does not take them a second time."""
    from baton.retrying import BulkRetry, bulk_retry

    runtime = make_runtime()
    submit(
        handlers,
        *(
            task_body(idempotency_key=f"again-{n}", input={"test": {"dispatch_status": [400]}})
            for n in range(5)
        ),
    )
    wait_for(
        lambda: all(
            (task := runtime.repository.find_task("contracts", f"again-{n}")) is not None
            and task.notified_at is not None
            for n in range(5)
        )
    )
    report = bulk_retry(runtime, BulkRetry(status="failed"), batch_size=2)
    assert (report.matched, report.retried, report.skipped) == (5, 5, {})
    assert len({row["task_id"] for row in report.tasks}) == 5
    handlers.invoke("dispatch", schedule_event("dispatch"))
    for n in range(5):
        task = runtime.repository.find_task("contracts", f"again-{n}")
        assert task is not None
        assert len(algorithm_service.requests_for(task.id)) == 2
