"""Reconcile: the database is the source of truth; rebuild Redis from it after a
flush or failover, and repair drift (slots held by attempts that ended, active
attempts or queued tasks missing from Redis)."""

from __future__ import annotations

from dataclasses import dataclass

from baton.faults import crash_point
from baton.observability import logger, metrics
from baton.runtime import Runtime


@dataclass(frozen=True)
class ReconcileReport:
    algorithm: str
    rebuilt: bool
    running_added: int
    ready_added: int
    stale_released: int


RESTORE_TRIES = 3
"""Reads of the database per reconcile when Redis keeps losing its data meanwhile."""


def reconcile_algorithm(runtime: Runtime, algorithm: str) -> ReconcileReport:
    repository, queue = runtime.repository, runtime.queue
    for _ in range(RESTORE_TRIES):
        # Mark Redis before reading the database: an attempt sent after the read and
        # before a flush would be missing from a state rebuilt from this read (and its
        # slot given to another task), so the restore refuses if the mark was lost.
        snapshot = queue.mark_snapshot(algorithm)
        active = repository.active_attempts(algorithm)
        restored = queue.restore(algorithm, active, repository.queued_tasks(algorithm), snapshot)
        if not restored.stale:
            break
    else:
        logger.warning("redis lost its data during every reconcile try", algorithm=algorithm)
        return ReconcileReport(algorithm, False, 0, 0, 0)
    crash_point("reconcile.after_restore")
    # Read the database again, for every member: an attempt in the snapshot above may
    # have ended (and released its slot) before the restore put it back. A member with
    # no execution row yet is an admission in flight; the sweep takes its lease back
    # if its worker died.
    stale = 0
    for task_id, attempt in repository.ended_attempts(queue.running(algorithm)):
        stale += queue.release(algorithm, task_id, attempt)
    report = ReconcileReport(
        algorithm, restored.rebuilt, restored.running_added, restored.ready_added, stale
    )
    if restored.rebuilt or restored.running_added or restored.ready_added or stale:
        logger.warning("redis state repaired from the database", **report.__dict__)
        metrics.add_metric(name="ReconcileRepairs", unit="Count", value=1)
    return report


def reconcile_all(runtime: Runtime) -> list[ReconcileReport]:
    """Reconcile every registered algorithm, then publish leftover notifications and
    act on what the repair made possible."""
    from baton.outbox import publish_pending_notifications
    from baton.scheduling import promote_and_dispatch

    reports = [reconcile_algorithm(runtime, name) for name in runtime.config.registry.names()]
    publish_pending_notifications(runtime)
    promote_and_dispatch(runtime)
    return reports
