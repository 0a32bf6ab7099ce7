"""Setting up an algorithm's Redis state the way reconcile and the policy writer do,
for tests that drive the queue's scripts directly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from baton.policy import policy_digest
from baton.queue import Policy, TaskQueue
from baton.records import QueuedTask, Slot

ENDPOINT = "http://127.0.0.1:9/ocr"
"""The one endpoint of a test algorithm unless a test names several."""


def single_endpoint_policy(
    cap: int,
    *,
    paused: bool = False,
    weights: Mapping[str, float] | None = None,
    limits: Mapping[str, int] | None = None,
    rate: tuple[float, int] | None = None,
) -> Policy:
    interval, burst = rate or (0.0, 1)
    return Policy(
        capacity=cap,
        endpoints=[(ENDPOINT, cap)],
        paused=paused,
        rate_interval_seconds=interval,
        rate_burst=burst,
        weights=weights,
        limits=limits,
    )


def write_policy(queue: TaskQueue, algorithm: str, policy: Policy, taken_at: float = 0.0) -> bool:
    """What the policy writer does (a test may set ``taken_at`` to play an older copy)."""
    return queue.write_policy(algorithm, policy, policy_digest(policy), taken_at, taken_at)


def arm(
    queue: TaskQueue,
    algorithm: str,
    cap: int = 3,
    *,
    policy: Policy | None = None,
) -> None:
    """What reconcile does on a fresh Redis: the policy, then the epoch marker."""
    write_policy(queue, algorithm, policy or single_endpoint_policy(cap))
    report = queue.restore(algorithm, [], [])
    assert report.rebuilt


def slot_of(task: QueuedTask, endpoint: str = ENDPOINT) -> Slot:
    return Slot(task.task_id, task.attempt, task.app, task.cost, endpoint)


def members(slots: Sequence[Slot]) -> list[tuple[str, int]]:
    return [(slot.task_id, slot.attempt) for slot in slots]
