"""Repairing one algorithm's Redis state from the database, the source of truth:
after a flush or failover the running set and the ready queue are rebuilt, and drift
is mended (slots held by attempts that ended, active attempts or queued tasks missing
from Redis)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from baton.faults import crash_point
from baton.observability import RECONCILE_REPAIRS, count, logger
from baton.runtime import Runtime


@dataclass(frozen=True)
class RepairReport:
    algorithm: str
    rebuilt: bool
    running_added: int
    ready_added: int
    stale_released: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


RESTORE_TRIES = 3
"""Reads of the database per reconcile when Redis keeps losing its data meanwhile."""


def repair_algorithm_state(runtime: Runtime, algorithm: str) -> RepairReport:
    """Rebuild one algorithm's Redis state from the database and free the slots of
    attempts that ended: what reconcile runs on its schedule, and what dispatch runs
    on the spot when Redis turns out to have lost its data."""
    repository, queue = runtime.repository, runtime.queue
    # The policy first: admission and confirmation need it as soon as the epoch is back.
    runtime.policy.write(runtime.config, algorithm)
    for _ in range(RESTORE_TRIES):
        # Mark Redis before reading the database: an attempt sent after the read and
        # before a flush would be missing from a state rebuilt from this read (and its
        # slot given to another task), so the restore refuses if the mark was lost.
        snapshot = queue.mark_snapshot(algorithm)
        active = repository.active_attempts(algorithm)
        restored = queue.restore(
            algorithm,
            active,
            repository.queued_tasks(algorithm),
            snapshot,
            held=repository.is_held(algorithm),
        )
        if not restored.stale:
            break
    else:
        logger.warning("redis lost its data during every reconcile try", algorithm=algorithm)
        return RepairReport(algorithm, False, 0, 0, 0)
    crash_point("reconcile.after_restore")
    # Read the database again, for every member: an attempt in the snapshot above may
    # have ended (and released its slot) before the restore put it back. A member with
    # no execution row yet is an admission in flight; the sweep takes its lease back
    # if its worker died.
    stale = 0
    for task_id, attempt in repository.ended_attempts(queue.running(algorithm)):
        stale += queue.release(algorithm, task_id, attempt, runtime.clock())
    report = RepairReport(
        algorithm, restored.rebuilt, restored.running_added, restored.ready_added, stale
    )
    if restored.rebuilt or restored.running_added or restored.ready_added or stale:
        logger.warning("redis state repaired from the database", **report.as_dict())
        count(RECONCILE_REPAIRS)
    return report
