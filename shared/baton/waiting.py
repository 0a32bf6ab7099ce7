"""Why a task waits: for a pending or queued task, the rule of the scheduling policy
that holds it, how many ready tasks go before it, and the algorithm's running count
against its cap (what the status API's ``waiting`` and ``baton task why`` answer).

Read from the same live policy and counts that admission uses, so the answer is the
rule admission applies right now, not a guess from the registry.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from baton.models import Task
from baton.queue import PolicyState, ready_entry
from baton.records import QueuedTask, TaskStatus
from baton.runtime import Runtime

Reason = Literal[
    "not_before",
    "backoff",
    "capacity",
    "app_limit",
    "rate_limit",
    "cooling_down",
    "paused",
    "recovering",
]


@dataclass(frozen=True)
class Waiting:
    reason: Reason
    detail: str
    ahead: int
    running: int
    max_concurrency: int
    until: datetime | None
    eta: datetime | None

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        for moment in ("until", "eta"):
            if values[moment] is not None:
                values[moment] = values[moment].isoformat()
        return values


def explain_waiting(runtime: Runtime, task: Task) -> Waiting | None:  # noqa: PLR0911 - a rule each
    """Why ``task`` waits, or None when it does not (running or final)."""
    if task.status not in (TaskStatus.PENDING, TaskStatus.QUEUED):
        return None
    now = runtime.clock()
    state = runtime.queue.policy_state(task.algorithm)
    running = state.count("inflight")
    cap = int(state.policy.get("cap", "0")) or _registry_cap(runtime, task.algorithm)
    ahead = _ahead(runtime, task, state)
    eta = _eta(state, now, ahead, cap)

    def waiting(reason: Reason, detail: str, until: datetime | None = None) -> Waiting:
        return Waiting(reason, detail, ahead, running, cap, until, eta)

    if task.status == TaskStatus.PENDING and task.not_before > now:
        if task.attempts == 0:
            return waiting("not_before", "it was asked to start no sooner", task.not_before)
        return waiting(
            "backoff",
            f"attempt {task.attempts} did not finish; the next one waits its backoff",
            task.not_before,
        )
    if not state.whole or not state.policy:
        return waiting("recovering", "Redis is being rebuilt from the database")
    if state.held or state.policy.get("paused") == "1":
        who = "an operator" if state.held else "the registry"
        return waiting("paused", f"{who} paused algorithm {task.algorithm!r}")
    limit = int(state.policy.get(f"limit:{task.app}", "0"))
    in_flight_of_app = state.count(f"app:{task.app}")
    if limit and in_flight_of_app + task.cost > limit:
        return waiting(
            "app_limit",
            f"app {task.app!r} has {in_flight_of_app} of its {limit} in flight",
        )
    endpoints = _endpoints(state)
    with_room = [url for url, ecap in endpoints if ecap - state.count(f"ep:{url}") >= task.cost]
    if running + task.cost <= cap and with_room:
        cooling = [state.cooldown.get(url, 0.0) for url in with_room]
        if all(until > now.timestamp() for until in cooling):
            return waiting(
                "cooling_down",
                "the endpoints with room asked for a pause (busy or failing)",
                datetime.fromtimestamp(min(cooling), now.tzinfo),
            )
        interval = float(state.policy.get("rate_interval", "0"))
        if interval > 0:
            tolerance = (int(state.policy.get("rate_burst", "1")) - 1) * interval
            next_request = state.rate_tat - tolerance
            if next_request > now.timestamp():
                return waiting(
                    "rate_limit",
                    "the algorithm's rate limit has no request left",
                    datetime.fromtimestamp(next_request, now.tzinfo),
                )
    if ahead:
        return waiting("capacity", f"{ahead} ready tasks go first; {running} of {cap} in use")
    return waiting("capacity", f"waiting for room: {running} of {cap} in use")


def _registry_cap(runtime: Runtime, algorithm: str) -> int:
    registry = runtime.config.registry
    return registry[algorithm].capacity if algorithm in registry else 0


def _endpoints(state: PolicyState) -> list[tuple[str, int]]:
    count = int(state.policy.get("endpoints", "0"))
    return [
        (state.policy[f"url:{index}"], int(state.policy[f"cap:{index}"]))
        for index in range(1, count + 1)
    ]


def _ahead(runtime: Runtime, task: Task, state: PolicyState) -> int:
    """Ready tasks of the algorithm that admission takes before this one: those ahead
    of it in its app's queue, and of each other app as many as it gets (by weight)
    while this app works through them. A pending task has every ready task ahead."""
    queue = runtime.queue
    keys = queue.keys(task.algorithm)
    client = queue.client
    apps = queue.apps_with_ready_tasks(task.algorithm) | {task.app}
    sizes = {app: int(client.zcard(keys.ready(app))) for app in apps}
    if task.status == TaskStatus.PENDING:
        return sum(sizes.values())
    entry = QueuedTask(task.id, task.attempts + 1, task.priority, task.created_at, task.app)
    rank = client.zrank(keys.ready(task.app), ready_entry(entry)[1])
    if rank is None:
        return 0
    own = int(cast("int", rank))

    def weight(app: str) -> float:
        return float(state.policy.get(f"weight:{app}", "1"))

    def pass_of(app: str) -> float:
        return float(state.counts.get(f"pass:{app}", "0"))

    # Its app's pass when this task's turn comes (tasks of one cost unit ahead of it).
    turn = pass_of(task.app) + own / weight(task.app)
    others = sum(
        min(size, max(0, math.ceil((turn - pass_of(app)) * weight(app))))
        for app, size in sizes.items()
        if app != task.app
    )
    return own + others


def _eta(state: PolicyState, now: datetime, ahead: int, cap: int) -> datetime | None:
    """When it should finish, from the algorithm's usual run time: the tasks ahead go
    ``cap`` at a time, then it runs once."""
    usual = float(state.counts.get("dref", "0"))
    if usual <= 0 or cap <= 0:
        return None
    return now + timedelta(seconds=usual * (ahead / cap + 1))
