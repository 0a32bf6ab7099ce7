"""Named crash points at the step boundaries of the lifecycle, for fault-injection
tests. Off (the default) a crash point is one global lookup; tests switch them on
with ``inject_faults``. Nothing in production configuration can enable them."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

CRASH_POINTS = (
    "intake.after_task_commit",  # task row committed, SQS record not yet acknowledged
    "promote.after_claim",  # task QUEUED in the database, not yet in the ready queue
    "dispatch.after_admit",  # slot taken in Redis, no attempt row yet
    "dispatch.after_start",  # attempt row committed, slot not yet confirmed
    "dispatch.before_send",  # slot confirmed, request not sent
    "dispatch.after_send",  # the algorithm accepted, acceptance not yet recorded
    "attempt.after_finish",  # attempt ended in the database, slot not yet released
    "attempt.after_release",  # slot released, notification not yet published
    "notify.after_claim",  # outbox row claimed, nothing published
    "notify.after_publish",  # published to SNS, outbox row not yet deleted
    "heartbeat.after_record",  # deadline moved in the database, not yet in Redis
    "reconcile.after_restore",  # Redis rebuilt, stale slots not yet released
)
"""The step boundaries every task's run passes."""

AFTER_FINAL_CRASH_POINTS = (
    "notify.before_republish",  # a duplicate of a final task found, nothing published again
    "notify.after_republish",  # published again, the duplicate's SQS record not acknowledged
    "retry.after_reset",  # a final task back to PENDING, not yet promoted or dispatched
    "cancel.after_end",  # an attempt ended by Baton and draining, no cancel request sent
    "cancel.after_ack",  # the cancel acknowledged and recorded, the slot not yet released
    "cancel.after_keep",  # a cancel kept for its task, the task not yet checked again
)
"""Reached only once a task is final: its message comes again, an operator retries it,
or Baton stops the attempt it ended at its algorithm."""

KNOWN_CRASH_POINTS = CRASH_POINTS + AFTER_FINAL_CRASH_POINTS


class InjectedCrash(BaseException):
    """The process 'dies' here. A BaseException, so no ``except Exception`` in the
    code under test can swallow it, just as nothing survives a killed process."""

    def __init__(self, point: str) -> None:
        super().__init__(point)
        self.point = point


Decider = Callable[[str], bool]
_decide: Decider | None = None
_lock = threading.Lock()
fired: Counter[str] = Counter()


def crash_point(name: str) -> None:
    """Crash here if a test asked for it."""
    decide = _decide
    if decide is not None and decide(name):
        with _lock:
            fired[name] += 1
        raise InjectedCrash(name)


def random_crashes(probability: float, seed: int | None = None) -> Decider:
    """Crash at any point with the given probability."""
    rng = random.Random(seed)  # noqa: S311 - chance of a test crash, not a secret
    lock = threading.Lock()

    def decide(_name: str) -> bool:
        with lock:
            return rng.random() < probability

    return decide


def crash_once_at(points: Iterable[str]) -> Decider:
    """Crash the first time each named point is reached, then never there again."""
    pending = set(points)
    unknown = pending - set(KNOWN_CRASH_POINTS)
    if unknown:
        raise ValueError(f"unknown crash points: {sorted(unknown)}")
    lock = threading.Lock()

    def decide(name: str) -> bool:
        with lock:
            if name in pending:
                pending.discard(name)
                return True
            return False

    return decide


@contextmanager
def inject_faults(decide: Decider) -> Iterator[Counter[str]]:
    """Enable crash points inside the block; yields the counter of crashes fired."""
    global _decide  # noqa: PLW0603 - process-wide switch, by design
    previous = _decide
    _decide = decide
    try:
        yield fired
    finally:
        _decide = previous
