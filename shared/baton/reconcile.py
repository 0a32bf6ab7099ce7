"""The scheduled reconcile (the safety net behind every step): repair each algorithm's
Redis state from the database, publish the notifications left in the outbox, then
promote and dispatch what the repair made possible."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from baton.outbox import publish_pending_notifications
from baton.repair import RepairReport, repair_algorithm_state
from baton.runtime import Runtime
from baton.scheduling import promote_and_dispatch


@dataclass(frozen=True)
class ReconcileReport:
    algorithms: list[RepairReport]

    def as_dict(self) -> dict[str, Any]:
        return {"algorithms": [report.as_dict() for report in self.algorithms]}


def reconcile_all(runtime: Runtime) -> ReconcileReport:
    """Reconcile every registered algorithm, then publish leftover notifications and
    act on what the repair made possible."""
    reports = [repair_algorithm_state(runtime, name) for name in runtime.config.registry.names()]
    publish_pending_notifications(runtime)
    promote_and_dispatch(runtime)
    return ReconcileReport(reports)
