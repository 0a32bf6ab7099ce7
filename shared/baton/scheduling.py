"""Promotion and dispatch (steps 4-10), on the schedule and on events.

Promotion moves eligible PENDING tasks into the Redis ready queue. Dispatch admits
ready tasks into free slots (atomically, in Lua), records the attempt, confirms the
slot, and sends the dispatch request. Every event that may free or need a slot (a
new task, a callback, a timeout, a failed dispatch) calls ``promote_and_dispatch`` so
that a task with a free slot goes out at once rather than at the next minute tick.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis
from sqlalchemy.exc import OperationalError

from baton.attempts import backoff_bounds, end_attempt, retryable_outcome, run_limit_seconds
from baton.contracts import CallbackTarget, DispatchRequest, ResultTarget
from baton.dispatch_client import DispatchAnswer, DispatchVerdict
from baton.errors import RedisStateLost
from baton.faults import crash_point
from baton.models import Task
from baton.observability import (
    DISPATCH_ACCEPTED,
    DISPATCH_BUSY,
    DISPATCH_FAILED,
    DISPATCH_REJECTED,
    TASKS_PROMOTED,
    count,
    emit,
    logger,
)
from baton.queue import Admissions, SlotConfirmation
from baton.records import (
    AcceptedDispatch,
    AttemptOutcome,
    AttemptStart,
    ExecutionStatus,
    Slot,
    StartedAttempt,
    TaskStatus,
)
from baton.repair import repair_algorithm_state
from baton.runtime import Runtime
from baton.storage import result_key
from baton.tokens import issue_token

ADMISSION_LEASE_SECONDS = 60
"""How long an admitted slot waits for its attempt row before the sweep takes it back."""

DISPATCH_THREADS = 8

MAX_RATE_WAIT_SECONDS = 5.0
"""How long an admitted attempt waits for the rate limit before it is given back (its
task is promoted again, its attempt not counted)."""


@dataclass
class DispatchReport:
    admitted: int = 0
    accepted: int = 0
    rejected: int = 0
    retried: int = 0
    skipped: int = 0
    algorithms_freed: set[str] = field(default_factory=set)

    def add(self, other: DispatchReport) -> None:
        self.admitted += other.admitted
        self.accepted += other.accepted
        self.rejected += other.rejected
        self.retried += other.retried
        self.skipped += other.skipped
        self.algorithms_freed |= other.algorithms_freed

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "algorithms_freed": sorted(self.algorithms_freed)}


@dataclass(frozen=True)
class PromotionReport:
    promoted: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _algorithms(runtime: Runtime, algorithms: Iterable[str] | None) -> list[str]:
    registry = runtime.config.registry
    if algorithms is None:
        return registry.names()
    return sorted({name for name in algorithms if name in registry})


def promote_pending_tasks(
    runtime: Runtime, algorithms: Iterable[str] | None = None
) -> PromotionReport:
    """Steps 4-5: move eligible PENDING tasks into their apps' ready queues, each up to
    its depth: every app with a backlog has ready tasks for admission to choose from,
    however far ahead of it in age another app's backlog is."""
    settings = runtime.settings
    repository, queue = runtime.repository, runtime.queue
    promoted = 0
    for algorithm in _algorithms(runtime, algorithms):
        apps = repository.apps_with_pending_tasks(algorithm)
        if not apps:
            continue
        ready = queue.ready_counts(algorithm, apps)
        for app in apps:
            room = settings.ready_queue_depth - ready[app]
            if room <= 0:
                continue
            tasks = repository.queue_pending_tasks(
                algorithm, runtime.clock(), min(room, settings.promote_batch_size), app=app
            )
            if tasks:
                crash_point("promote.after_claim")
            queue.enqueue(algorithm, tasks)
            promoted += len(tasks)
    if promoted:
        count(TASKS_PROMOTED, promoted)
    return PromotionReport(promoted)


def dispatch_ready_tasks(
    runtime: Runtime, algorithms: Iterable[str] | None = None
) -> DispatchReport:
    """Steps 7-8: admit ready tasks into free slots and send their dispatch requests."""
    report = DispatchReport()
    for algorithm in _algorithms(runtime, algorithms):
        report.add(_dispatch_algorithm(runtime, algorithm))
    return report


def _admit(runtime: Runtime, algorithm: str) -> Admissions:
    lease = runtime.clock() + timedelta(
        seconds=ADMISSION_LEASE_SECONDS + runtime.settings.dispatch_timeout_seconds
    )
    limit = runtime.settings.dispatch_batch_size
    if runtime.policy.due(runtime.config, algorithm):
        runtime.policy.write(runtime.config, algorithm)

    def admit() -> Admissions:
        return runtime.queue.admit(
            algorithm,
            lease,
            limit,
            runtime.clock(),
            write_policy=lambda: runtime.policy.write(runtime.config, algorithm),
        )

    try:
        return admit()
    except RedisStateLost:
        repair_algorithm_state(runtime, algorithm)
        return admit()


def _dispatch_algorithm(runtime: Runtime, algorithm: str) -> DispatchReport:
    admitted = _admit(runtime, algorithm).slots
    report = DispatchReport(admitted=len(admitted))
    for outcome in dispatch_round(runtime, algorithm, admitted):
        if outcome is None:
            # Its task ended meanwhile (a cancel, a queue timeout) or another worker has
            # it: the room it took may be free again for the next ready task.
            report.skipped += 1
            report.algorithms_freed.add(algorithm)
        elif outcome is DispatchVerdict.ACCEPTED:
            report.accepted += 1
        else:
            report.algorithms_freed.add(algorithm)
            if outcome is DispatchVerdict.REJECTED:
                report.rejected += 1
            else:
                report.retried += 1
    return report


def dispatch_attempt(runtime: Runtime, algorithm: str, slot: Slot) -> DispatchVerdict | None:
    """Steps 6-10 for one admitted attempt (``dispatch_round``). None: nothing was sent."""
    return dispatch_round(runtime, algorithm, [slot])[0]


def dispatch_round(
    runtime: Runtime, algorithm: str, slots: Sequence[Slot]
) -> list[DispatchVerdict | None]:
    """Steps 6-10 for the attempts one admission admitted, each to the endpoint
    admission chose for it: started in one transaction, each confirmed and sent (side
    by side), the accepted ones recorded in one transaction. By slot, how its endpoint
    answered; None: nothing was sent."""
    if not slots:
        return []
    repository, settings = runtime.repository, runtime.settings
    now = runtime.clock()
    starts = [
        AttemptStart(
            slot.task_id,
            slot.attempt,
            result_key(settings.result_prefix, algorithm, slot.task_id, slot.attempt),
            slot.endpoint,
        )
        for slot in slots
    ]
    crash_point("dispatch.after_admit")
    started = repository.start_attempts(starts, now, settings.upload_url_ttl_seconds)

    def is_started(slot: Slot) -> bool:
        attempt = started.get(slot.task_id)
        return attempt is not None and attempt.task.attempts == slot.attempt

    for slot in slots:
        if not is_started(slot):
            _drop_lost_admission(runtime, algorithm, slot.task_id, slot.attempt)
    if started:
        crash_point("dispatch.after_start")
    sending = [
        (slot, start, started[slot.task_id])
        for slot, start in zip(slots, starts, strict=True)
        if is_started(slot)
    ]

    def send(item: tuple[Slot, AttemptStart, StartedAttempt]) -> DispatchAnswer | Exception | None:
        try:
            return _send_attempt(runtime, algorithm, *item, now=now)
        except Exception as exc:  # this attempt's alone: the others' answers are recorded
            return exc

    if len(sending) <= 1:
        outcomes = [send(item) for item in sending]
    else:
        with ThreadPoolExecutor(max_workers=min(DISPATCH_THREADS, len(sending))) as pool:
            outcomes = list(pool.map(send, sending))
    failures = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    answers = [None if isinstance(outcome, Exception) else outcome for outcome in outcomes]
    accepted = [
        AcceptedDispatch(slot.task_id, slot.attempt, answer.http_status or 200)
        for (slot, _, _), answer in zip(sending, answers, strict=True)
        if answer is not None and answer.verdict is DispatchVerdict.ACCEPTED
    ]
    repository.mark_many_accepted(accepted, runtime.clock())
    verdicts: dict[tuple[str, int], DispatchVerdict | None] = {}
    for (slot, _, attempt), answer in zip(sending, answers, strict=True):
        verdicts[(slot.task_id, slot.attempt)] = None if answer is None else answer.verdict
        if answer is not None:
            _record_answer(runtime, algorithm, slot, attempt.task, answer)
    if failures:
        # Its attempt stays as it was (unsent: its deadline, or the sweep, recovers it);
        # the invocation fails as it did before the round was shared.
        raise failures[0]
    return [verdicts.get((slot.task_id, slot.attempt)) for slot in slots]


def _send_attempt(
    runtime: Runtime,
    algorithm: str,
    slot: Slot,
    start: AttemptStart,
    started: StartedAttempt,
    *,
    now: datetime,
) -> DispatchAnswer | None:
    """Steps 7-8 for one started attempt: the signed request, built, then the slot
    confirmed and the request sent. None: the attempt was given back unsent."""
    settings = runtime.settings
    task_id, attempt, key = slot.task_id, slot.attempt, start.result_key
    upload_url, upload_expires = runtime.results.upload_url(
        key, now, max(1, int((started.upload_expires_at - now).total_seconds()))
    )
    # The token lives as long as the attempt may run (heartbeats extend it up to the
    # algorithm's max_run_seconds), and the grace after that.
    token = issue_token(
        runtime.config.token_keys,
        task_id,
        attempt,
        max(started.deadline, now + timedelta(seconds=run_limit_seconds(runtime, algorithm)))
        + timedelta(seconds=settings.token_grace_seconds),
    )
    request = DispatchRequest(
        task_id=task_id,
        attempt=attempt,
        algorithm=algorithm,
        input=started.task.input,
        cost=slot.cost,
        deadline=started.deadline,
        result=ResultTarget(
            bucket=runtime.results.bucket, key=key, upload_url=upload_url, expires_at=upload_expires
        ),
        callback=CallbackTarget(
            url=f"{settings.callback_base}/tasks/{task_id}/callback", token=token
        ),
    )
    # Everything the request needs is ready before the slot is confirmed: confirmation
    # takes a request from the rate limit, so the send follows it at once.
    confirmation = _confirm(runtime, algorithm, slot, started.deadline)
    if confirmation is not SlotConfirmation.OK:
        # Redis was rebuilt without this attempt and the room is taken, or the rate
        # limit had nothing left for too long: send nothing, and give the attempt back.
        runtime.repository.abandon_attempt(task_id, attempt, runtime.clock())
        runtime.queue.release(algorithm, task_id, attempt, runtime.clock())
        logger.warning(
            "attempt taken back before dispatch",
            task_id=task_id,
            attempt=attempt,
            app=started.task.app,
            idempotency_key=started.task.idempotency_key,
            reason="rate_limit" if confirmation is SlotConfirmation.RATE_LIMITED else "slot_lost",
        )
        return None
    crash_point("dispatch.before_send")
    answer = runtime.dispatcher.send(slot.endpoint, request)
    if answer.verdict is DispatchVerdict.ACCEPTED:
        crash_point("dispatch.after_send")
    return answer


def _record_answer(
    runtime: Runtime, algorithm: str, slot: Slot, task: Task, answer: DispatchAnswer
) -> None:
    """Step 10, or the attempt's end when the endpoint did not accept it: counted and
    logged; a refused or failed dispatch ends its attempt (retried while attempts
    remain, the endpoint left alone for a while)."""
    task_id, attempt = slot.task_id, slot.attempt
    log = {
        "task_id": task_id,
        "attempt": attempt,
        "algorithm": algorithm,
        "app": task.app,
        "idempotency_key": task.idempotency_key,
        "endpoint": slot.endpoint,
        "http_status": answer.http_status,
    }
    if answer.verdict is not DispatchVerdict.ACCEPTED:
        log["error"] = answer.detail  # the cause: what the endpoint answered, or the failure
    if answer.verdict is DispatchVerdict.ACCEPTED:
        emit(DISPATCH_ACCEPTED, 1, algorithm=algorithm, app=slot.app)
        logger.debug("dispatch accepted", extra=log)
        return
    if answer.verdict is DispatchVerdict.REJECTED:
        outcome = AttemptOutcome(
            execution_status=ExecutionStatus.REJECTED,
            task_status=TaskStatus.FAILED,
            error_code="dispatch_rejected",
            error_message=f"algorithm answered {answer.http_status}: {answer.detail}"[:1024],
            http_status=answer.http_status,
        )
        emit(DISPATCH_REJECTED, 1, algorithm=algorithm, app=slot.app)
        logger.warning("dispatch rejected", extra=log)
    else:
        # An endpoint that is busy (429) or failing is left alone for a while by every
        # worker, instead of being handed the next task of the queue at once; the
        # algorithm's other endpoints keep taking work.
        pause = answer.retry_after_seconds or backoff_bounds(runtime, algorithm)[0]
        now = runtime.clock()
        runtime.queue.cool_down(algorithm, slot.endpoint, now + timedelta(seconds=pause), now)
        # "Busy, come back later" (a 429, or a 503 that says when) is no failure of the
        # task: it waits without using up an attempt (its timeouts bound how long).
        busy = answer.http_status == 429 or (
            answer.http_status == 503 and answer.retry_after_seconds is not None
        )
        outcome = retryable_outcome(
            runtime,
            algorithm=algorithm,
            counts_attempt=not busy,
            execution_status=ExecutionStatus.DISPATCH_FAILED,
            final_status=TaskStatus.FAILED,
            attempt=attempt,
            error_code="dispatch_failed",
            error_message=f"algorithm answered {answer.http_status}: {answer.detail}"
            if answer.http_status
            else answer.detail,
            http_status=answer.http_status,
            not_sooner_than=answer.retry_after_seconds or 0.0,
        )
        emit(DISPATCH_BUSY if busy else DISPATCH_FAILED, 1, algorithm=algorithm, app=slot.app)
        logger.warning("dispatch failed; will retry while attempts remain", extra=log)
    end_attempt(runtime, algorithm, task_id, attempt, outcome)


def _confirm(runtime: Runtime, algorithm: str, slot: Slot, deadline: datetime) -> SlotConfirmation:
    """Confirm the slot just before sending, repairing Redis once if it lost its state,
    and waiting (a little) for the rate limit: admission admitted no more than it could
    send, but other functions may have sent meanwhile."""
    queue = runtime.queue
    waited = 0.0
    repaired = False
    while True:
        confirmation = queue.confirm_slot(algorithm, slot, deadline, runtime.clock())
        if confirmation is SlotConfirmation.LOST and not repaired:
            repair_algorithm_state(runtime, algorithm)
            repaired = True
            continue
        if confirmation is not SlotConfirmation.RATE_LIMITED:
            return confirmation
        wait = queue.rate_wait_seconds(algorithm, runtime.clock())
        if waited + wait > MAX_RATE_WAIT_SECONDS:
            return confirmation
        time.sleep(max(wait, 0.001))
        waited += wait


def _drop_lost_admission(runtime: Runtime, algorithm: str, task_id: str, attempt: int) -> None:
    """Another worker owns (or ended) this attempt, or the task was cancelled.

    The slot is released only when no active execution holds the attempt: a duplicate
    ready entry must never free the slot of the attempt that really runs.
    """
    execution = runtime.repository.get_execution(task_id, attempt)
    if execution is None or not execution.status.is_active:
        runtime.queue.release(algorithm, task_id, attempt, runtime.clock())


def promote_and_dispatch(
    runtime: Runtime, algorithms: Iterable[str] | None = None
) -> DispatchReport:
    """Promote then dispatch for ``algorithms``, repeating while dispatch frees slots
    (a rejected or failed dispatch frees its slot for the next task at once)."""
    targets = _algorithms(runtime, algorithms)
    report = DispatchReport()
    for _ in range(10):  # bounded: each round frees slots only by ending attempts
        if not targets:
            break
        promote_pending_tasks(runtime, targets)
        round_report = dispatch_ready_tasks(runtime, targets)
        report.add(round_report)
        targets = sorted(round_report.algorithms_freed)
    return report


def run_fast_path(runtime: Runtime, algorithms: Iterable[str]) -> DispatchReport | None:
    """The event-driven path, when enabled: act now instead of at the next tick.

    The caller's own work is already committed; if Redis or the database is briefly
    unreachable here, the scheduled promote and dispatch pick the tasks up instead.
    """
    names = set(algorithms)
    if not runtime.settings.fast_path or not names:
        return None
    try:
        return promote_and_dispatch(runtime, names)
    except (redis.RedisError, OperationalError) as exc:
        logger.warning("fast path skipped; the schedule will catch up", error=type(exc).__name__)
        return None
