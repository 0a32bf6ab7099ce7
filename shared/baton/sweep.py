"""The sweep (step 9): attempts past their deadline time out, tasks past their queue
or total deadline end, draining attempts get their cancel requests again (or their
slots back at the grace), expired admission leases are taken back, and notifications
left in the outbox are published."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from typing import Any

from baton.attempts import end_attempt, retryable_outcome
from baton.cancellation import end_task_early
from baton.draining import DrainReport, drain_attempts, drain_for
from baton.gauges import publish_gauges
from baton.observability import logger, metrics
from baton.outbox import publish_pending_notifications
from baton.records import ExecutionStatus, QueuedTask, TaskStatus
from baton.refusals import timeout_message
from baton.runtime import Runtime
from baton.scheduling import run_fast_path

SWEEP_BATCH = 500


@dataclass
class SweepReport:
    timed_out: int = 0
    retrying: int = 0
    leases_recovered: int = 0
    notifications_published: int = 0
    queue_timeouts: int = 0
    deadlines_exceeded: int = 0
    unregistered: int = 0
    cost_too_large: int = 0
    cancels_acknowledged: int = 0
    cancels_past_grace: int = 0
    cancels_retrying: int = 0
    expired_cancels_purged: int = 0
    algorithms_freed: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "algorithms_freed": sorted(self.algorithms_freed)}

    def add_drains(self, drains: DrainReport) -> None:
        self.cancels_acknowledged += drains.acknowledged
        self.cancels_past_grace += drains.past_grace
        self.cancels_retrying += drains.retrying
        self.algorithms_freed |= drains.algorithms_freed


def sweep_overdue_attempts(runtime: Runtime) -> SweepReport:
    """Step 9: attempts past their deadline time out (retry with backoff or
    TIMED_OUT, notified), expired admission leases come back, the outbox is emptied."""
    report = SweepReport()
    now = runtime.clock()
    for overdue in runtime.repository.overdue_attempts(now, SWEEP_BATCH):
        # Only if still overdue when recorded: a heartbeat that moved the deadline after
        # the read above has answered the algorithm with that new deadline.
        outcome = replace(
            retryable_outcome(
                runtime,
                algorithm=overdue.algorithm,
                execution_status=ExecutionStatus.TIMED_OUT,
                final_status=TaskStatus.TIMED_OUT,
                attempt=overdue.attempt,
                error_code="timeout",
                error_message=timeout_message(
                    runtime.repository.get_execution(overdue.task_id, overdue.attempt),
                    overdue.deadline.isoformat(),
                ),
            ),
            overdue_at=now,
            drain=drain_for(runtime, overdue.algorithm, "timeout"),
        )
        finished = end_attempt(
            runtime, overdue.algorithm, overdue.task_id, overdue.attempt, outcome
        )
        if finished is None:
            continue
        report.algorithms_freed.add(overdue.algorithm)
        if finished.terminal:
            report.timed_out += 1
        else:
            report.retrying += 1
        logger.info(
            "attempt timed out",
            task_id=overdue.task_id,
            attempt=overdue.attempt,
            algorithm=overdue.algorithm,
            app=finished.task.app,
            idempotency_key=finished.task.idempotency_key,
            retrying=not finished.terminal,
        )
    _end_overdue_tasks(runtime, report)
    _fail_tasks_the_registry_no_longer_serves(runtime, report)
    for algorithm in runtime.config.registry.names():
        report.leases_recovered += _recover_expired_slots(runtime, algorithm, report)
    report.expired_cancels_purged = runtime.repository.purge_expired_cancels(now, SWEEP_BATCH)
    report.notifications_published = publish_pending_notifications(runtime)
    if report.timed_out or report.retrying:
        metrics.add_metric(
            name="AttemptsTimedOut", unit="Count", value=report.timed_out + report.retrying
        )
    run_fast_path(runtime, report.algorithms_freed)
    publish_gauges(runtime)
    return report


def _end_overdue_tasks(runtime: Runtime, report: SweepReport) -> None:
    """Tasks past their queue timeout (no attempt accepted in time) or their total
    deadline (not final in time, across attempts and backoffs) end timed out."""
    now = runtime.clock()
    for task_id in runtime.repository.tasks_past_queue_deadline(now, SWEEP_BATCH):
        task = end_task_early(
            runtime,
            task_id,
            TaskStatus.TIMED_OUT,
            "queue_timeout",
            "no attempt was accepted within the task's queue timeout",
            waiting_only=True,
            never_accepted=True,
        )
        if task is not None:
            report.queue_timeouts += 1
            report.algorithms_freed.add(task.algorithm)
            logger.info(
                "task timed out in the queue",
                task_id=task_id,
                algorithm=task.algorithm,
                app=task.app,
                idempotency_key=task.idempotency_key,
            )
    for task_id in runtime.repository.tasks_past_total_deadline(now, SWEEP_BATCH):
        task = end_task_early(
            runtime,
            task_id,
            TaskStatus.TIMED_OUT,
            "deadline_exceeded",
            "not finished within the task's total timeout",
        )
        if task is not None:
            report.deadlines_exceeded += 1
            report.algorithms_freed.add(task.algorithm)
            logger.info(
                "task past its total deadline",
                task_id=task_id,
                algorithm=task.algorithm,
                app=task.app,
                idempotency_key=task.idempotency_key,
            )


def _fail_tasks_the_registry_no_longer_serves(runtime: Runtime, report: SweepReport) -> None:
    """Tasks wait for an algorithm the registry no longer has, or cost more than any of
    its endpoints now takes: after the policy grace (in which the registry may come
    back) they fail with algorithm_unregistered or cost_too_large."""
    repository, registry = runtime.repository, runtime.config.registry
    now = runtime.clock()
    waiting = repository.largest_waiting_costs()
    missing = [name for name in waiting if name not in registry]
    too_costly = {
        name: registry[name].largest_cost
        for name, cost in waiting.items()
        if name in registry and cost > registry[name].largest_cost
    }
    repository.close_policy_gaps([*missing, *too_costly])
    grace = timedelta(seconds=runtime.settings.policy_grace_seconds)
    for algorithm in [*missing, *too_costly]:
        since = repository.open_policy_gap(algorithm, now)
        if now - since < grace:
            continue
        largest = too_costly.get(algorithm)
        if largest is None:
            code = "algorithm_unregistered"
            message = f"algorithm {algorithm!r} left the registry on {since.isoformat()}"
        else:
            code = "cost_too_large"
            message = (
                f"since {since.isoformat()} no endpoint of algorithm {algorithm!r} takes a "
                f"cost above {largest}"
            )
        for task_id in repository.waiting_tasks_of(
            algorithm, SWEEP_BATCH, costing_more_than=largest or 0
        ):
            if end_task_early(runtime, task_id, TaskStatus.FAILED, code, message):
                if largest is None:
                    report.unregistered += 1
                else:
                    report.cost_too_large += 1


def _recover_expired_slots(runtime: Runtime, algorithm: str, report: SweepReport) -> int:
    """Slots whose Redis score has passed but that the database does not time out:
    an admission whose worker died before recording the attempt, a slot whose attempt
    already ended, a deadline a heartbeat moved in the database only, or a draining
    attempt whose next cancel request is due."""
    repository, queue = runtime.repository, runtime.queue
    recovered = 0
    draining: list[tuple[str, int]] = []
    for task_id, attempt, score in queue.overdue_slots(algorithm, runtime.clock(), SWEEP_BATCH):
        execution = repository.get_execution(task_id, attempt)
        if execution is not None and execution.status.is_active:
            if execution.deadline > runtime.clock():
                queue.extend_slot(algorithm, task_id, attempt, execution.deadline)
            continue  # overdue in the database too: the loop above times it out
        if execution is not None and execution.drain_until is not None:
            draining.append((task_id, attempt))  # its cancel request is due
            continue
        if execution is None:
            # An admission with no attempt row: its worker died, or it is starting the
            # attempt right now. Whatever the database said a moment ago, the slot is
            # taken back only if it still holds the expired lease: a worker that started
            # the attempt has confirmed the slot since (a new score) and keeps it; one
            # that starts it later finds the slot gone and takes a free one or gives up.
            if not queue.release_lease(algorithm, task_id, attempt, score, runtime.clock()):
                continue
            task = repository.get_task(task_id)
            if (
                task is not None
                and task.status == TaskStatus.QUEUED
                and task.attempts == attempt - 1
            ):
                queue.enqueue(
                    algorithm,
                    [
                        QueuedTask(
                            task_id, attempt, task.priority, task.created_at, task.app, task.cost
                        )
                    ],
                )
            recovered += 1
            report.algorithms_freed.add(algorithm)
            continue
        recovered += queue.release(algorithm, task_id, attempt, runtime.clock())
        report.algorithms_freed.add(algorithm)
    if draining:
        report.add_drains(drain_attempts(runtime, algorithm, draining))
    return recovered
