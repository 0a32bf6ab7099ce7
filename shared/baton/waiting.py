"""Why a task waits: for a pending or queued task, the rule of the scheduling policy
that holds it, how many ready tasks go before it, and the algorithm's running count
against its cap (what the status API's ``waiting`` and ``baton task why`` answer).

Read from the same live policy and counts that admission uses, so the answer is the
rule admission applies right now, not a guess from the registry. The answer's shape,
and the list of reasons, are the client SDK's (``baton.contracts.Waiting``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import cast

from baton.contracts import Waiting, WaitingReason
from baton.models import Task
from baton.queue import PolicyState, ready_entry
from baton.records import QueuedTask, TaskStatus
from baton.runtime import Runtime

__all__ = ["Waiting", "WaitingReason", "explain_waiting"]

ReadyEntry = tuple[float, str]
"""(score, member) of a ready queue: ascending is the order admission takes them in."""


def explain_waiting(runtime: Runtime, task: Task) -> Waiting | None:  # noqa: PLR0911 - a rule each
    """Why ``task`` waits, or None when it does not (running or final)."""
    if task.status not in (TaskStatus.PENDING, TaskStatus.QUEUED):
        return None
    now = runtime.clock()
    state = runtime.queue.policy_state(task.algorithm)
    running = state.count("inflight")
    cap = int(state.policy.get("cap", "0")) or _registry_cap(runtime, task.algorithm)
    ahead = _ahead(runtime, task, state)

    def waiting(reason: WaitingReason, detail: str, until: datetime | None = None) -> Waiting:
        # A pause has no known end, so neither has the wait.
        eta = None if reason == "paused" else _eta(state, max(now, until or now), ahead, cap)
        return Waiting(
            reason=reason,
            detail=detail,
            ahead=ahead,
            running=running,
            max_concurrency=cap,
            until=until,
            eta=eta,
        )

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
    """Ready tasks of the algorithm that admission takes before this one, as admit.lua
    would order them now: those ahead of it in its app's queue (higher priority, then
    older), and each other app's tasks admitted while that app's pass stays below this
    app's pass at this task's turn (on a tie, the app whose next task is older first).
    Each admission adds cost / weight to its app's pass; tasks are counted as of one cost
    unit, and run times as usual (the settling of passes when attempts end is not known
    ahead).

    A pending task is counted where promotion will put it (an app that starts waiting
    joins at the lowest pass of those already waiting). While Redis is being rebuilt,
    the ready queues are read from the database, as reconcile will restore them."""
    queues = _ready_queues(runtime, task.algorithm, state)
    entry = QueuedTask(task.id, task.attempts + 1, task.priority, task.created_at, task.app)
    score, member, _ = ready_entry(entry)
    mine = queues.get(task.app, ())
    own = sum(1 for other in mine if other < (score, member))

    def weight(app: str) -> float:
        return float(state.policy.get(f"weight:{app}", "1"))

    def pass_of(app: str) -> float:
        return float(state.counts.get(f"pass:{app}", "0"))

    start = pass_of(task.app)
    if not mine and queues:
        start = max(start, min(pass_of(app) for app in queues))
    turn = start + own / weight(task.app)
    created = _created_ms(member)
    others = 0
    for app, entries in queues.items():
        if app == task.app:
            continue
        for position, (_, other) in enumerate(entries):
            before = pass_of(app) + position / weight(app)
            tie = math.isclose(before, turn, rel_tol=1e-9, abs_tol=1e-9)
            if not (before < turn and not tie) and not (tie and _created_ms(other) < created):
                break
            others += 1
    return own + others


def _created_ms(member: str) -> int:
    """The creation time a ready member starts with (``<created_ms>:<task>:<attempt>``)."""
    return int(member.partition(":")[0])


def _ready_queues(
    runtime: Runtime, algorithm: str, state: PolicyState
) -> dict[str, Sequence[ReadyEntry]]:
    """Each app's ready queue of ``algorithm``, in admission order."""
    if not state.whole:
        queues: dict[str, list[ReadyEntry]] = {}
        for queued in runtime.repository.queued_tasks(algorithm):
            score, member, _ = ready_entry(queued)
            queues.setdefault(queued.app, []).append((score, member))
        return {app: sorted(entries) for app, entries in queues.items()}
    queue = runtime.queue
    keys = queue.keys(algorithm)
    result: dict[str, Sequence[ReadyEntry]] = {}
    for app in queue.apps_with_ready_tasks(algorithm):
        entries = cast(
            "list[tuple[bytes, float]]",
            queue.client.zrange(keys.ready(app), 0, -1, withscores=True),
        )
        result[app] = [(float(score), raw.decode()) for raw, score in entries]
    return result


def _eta(state: PolicyState, start: datetime, ahead: int, cap: int) -> datetime | None:
    """When it should finish, from the algorithm's recent run times (``dref``, the moving
    average release.lua keeps): from ``start`` (now, or the end of its wait), the tasks
    ahead go ``cap`` at a time, then it runs once. None before any attempt has ended."""
    usual = float(state.counts.get("dref", "0"))
    if usual <= 0 or cap <= 0:
        return None
    return start + timedelta(seconds=usual * (ahead / cap + 1))
