"""Draining: an attempt that Baton ended on its own (a timeout, a cancel, a total
deadline) may still be running at its algorithm, so it keeps its slot until the
algorithm says it stopped. Baton sends the endpoint's ``cancel_url`` a signed cancel
request; a 2xx or 404 frees the slot, anything else is tried again by the sweep until
the algorithm's ``cancel_grace_seconds`` have passed since the end, when the slot is
freed regardless. An endpoint without a cancel URL is not waited for: its slot is
freed at once, and the service learns of the end only from the 409 that answers its
next heartbeat or callback.

The database says which attempts drain (``task_execution.drain_until``); the Redis slot
stays in the running set, scored by when its next cancel request is due, so the sweep
finds it among the overdue slots and a reconcile rebuilds it like a running attempt.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from baton.backoff import backoff_seconds
from baton.contracts import CancelRequest
from baton.faults import crash_point
from baton.models import TaskExecution
from baton.observability import CANCEL_GRACE_EXPIRED, CANCELS_ACKNOWLEDGED, emit, logger
from baton.records import CANCEL_REASONS, Drain, Draining
from baton.runtime import Runtime

CANCEL_THREADS = 8
"""Cancel requests in flight at once from one sweep: a slow service must not hold up
the others' slots."""

RETRY_BASE_SECONDS = 2.0
RETRY_MAX_SECONDS = 30.0
"""The pause between two cancel requests of one attempt (doubling, within the grace)."""


@dataclass
class DrainReport:
    acknowledged: int = 0
    past_grace: int = 0
    retrying: int = 0
    algorithms_freed: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "algorithms_freed": sorted(self.algorithms_freed)}

    def add(self, other: DrainReport) -> None:
        self.acknowledged += other.acknowledged
        self.past_grace += other.past_grace
        self.retrying += other.retrying
        self.algorithms_freed |= other.algorithms_freed


def drain_for(runtime: Runtime, algorithm: str, error_code: str) -> Drain | None:
    """How an attempt of ``algorithm`` that Baton ends with ``error_code`` drains; None
    when none of its endpoints has a cancel URL (or it left the registry)."""
    config = runtime.config.registry.algorithms.get(algorithm)
    if config is None or not config.draining_endpoints:
        return None
    return Drain(
        until=runtime.clock() + timedelta(seconds=config.cancel_grace_seconds),
        endpoints=config.draining_endpoints,
        reason=CANCEL_REASONS.get(error_code, "cancelled"),
        # A dispatch request still on its way when the attempt ended must arrive before
        # its cancel does, or the service would say 404 and then start the work.
        settle_seconds=runtime.settings.dispatch_timeout_seconds,
    )


def hold_slot(runtime: Runtime, algorithm: str, draining: Draining) -> None:
    """Keep a draining attempt's slot, due when its first cancel request is."""
    runtime.queue.extend_slot(algorithm, draining.task_id, draining.attempt, draining.cancel_from)
    crash_point("cancel.after_end")


def cancel_now(runtime: Runtime, algorithm: str, draining: Draining) -> DrainReport:
    """Send the first cancel request at once when it may go now (a cancel an app or an
    operator asked for); otherwise the sweep sends it when it is due."""
    if draining.cancel_from > runtime.clock():
        return DrainReport()
    return drain_attempts(runtime, algorithm, [(draining.task_id, draining.attempt)])


def drain_attempts(
    runtime: Runtime, algorithm: str, attempts: Iterable[tuple[str, int]]
) -> DrainReport:
    """Send the due cancel requests of these draining attempts (a few at once), free the
    slots of those acknowledged or past their grace, and put the others off."""
    executions = [
        execution
        for task_id, attempt in attempts
        if (execution := runtime.repository.get_execution(task_id, attempt)) is not None
        and execution.drain_until is not None
    ]
    report = DrainReport()
    if len(executions) <= 1:
        results = [_drain_one(runtime, algorithm, execution) for execution in executions]
    else:
        with ThreadPoolExecutor(max_workers=CANCEL_THREADS) as pool:
            results = list(pool.map(lambda e: _drain_one(runtime, algorithm, e), executions))
    for result in results:
        report.add(result)
    return report


def _free_slot(
    runtime: Runtime, algorithm: str, execution: TaskExecution, http_status: int | None
) -> bool:
    """The drain is over: acknowledged (``http_status``, 2xx or 404), or at its grace
    (None). True for the one caller that recorded it, which frees the slot."""
    now = runtime.clock()
    task_id, attempt = execution.task_id, execution.attempt
    if not runtime.repository.mark_drained(task_id, attempt, now, http_status):
        return False
    if http_status is not None:
        crash_point("cancel.after_ack")
    runtime.queue.release(algorithm, task_id, attempt, now)
    if http_status is None:
        emit(CANCEL_GRACE_EXPIRED, 1, algorithm=algorithm)
        logger.warning(
            "draining attempt freed at its grace; the service never acknowledged the cancel",
            task_id=task_id,
            attempt=attempt,
            algorithm=algorithm,
            endpoint=execution.endpoint,
            cancel_tries=execution.cancel_tries,
        )
    else:
        emit(CANCELS_ACKNOWLEDGED, 1, algorithm=algorithm)
        logger.info(
            "cancel acknowledged; slot freed",
            task_id=task_id,
            attempt=attempt,
            algorithm=algorithm,
            http_status=http_status,
        )
    return True


def _drain_one(runtime: Runtime, algorithm: str, execution: TaskExecution) -> DrainReport:
    repository, queue = runtime.repository, runtime.queue
    report = DrainReport()
    task_id, attempt = execution.task_id, execution.attempt
    assert execution.drain_until is not None
    now = runtime.clock()
    config = runtime.config.registry.algorithms.get(algorithm)
    cancel_url = config.cancel_url_of(execution.endpoint) if config is not None else None
    if cancel_url is None or now >= execution.drain_until:
        # The grace is over (or the registry no longer lists a cancel URL for the
        # endpoint): the slot goes back, whatever the service is doing.
        if _free_slot(runtime, algorithm, execution, None):
            report.past_grace += 1
            report.algorithms_freed.add(algorithm)
        return report
    request = CancelRequest(
        task_id=task_id,
        attempt=attempt,
        algorithm=algorithm,
        reason=execution.cancel_reason or "cancelled",  # type: ignore[arg-type]
    )
    answer = runtime.dispatcher.cancel(cancel_url, request)
    if answer.acknowledged:
        if _free_slot(runtime, algorithm, execution, answer.http_status):
            report.acknowledged += 1
            report.algorithms_freed.add(algorithm)
        return report
    now = runtime.clock()
    repository.record_cancel_answer(task_id, attempt, answer.http_status)
    pause = backoff_seconds(
        execution.cancel_tries + 1, RETRY_BASE_SECONDS, RETRY_MAX_SECONDS, runtime.random
    )
    queue.extend_slot(
        algorithm, task_id, attempt, min(execution.drain_until, now + timedelta(seconds=pause))
    )
    report.retrying += 1
    logger.warning(
        "cancel request not acknowledged; tried again until the grace",
        task_id=task_id,
        attempt=attempt,
        algorithm=algorithm,
        endpoint=cancel_url,
        http_status=answer.http_status,
        detail=answer.detail,
        drain_until=execution.drain_until.isoformat(),
    )
    return report
