"""The Redis Lua scripts (enqueue, admit, confirm, restore) and the reads around them,
against the real Redis server. Every test has its own key prefix."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis
from baton.errors import RedisStateLost
from baton.queue import SlotConfirmation, TaskQueue, ready_entry
from baton.records import ActiveAttempt, QueuedTask
from redis.crc import key_slot

from tests.support.services import flush_prefix

ALGO = "ocr"
CAP = 3
NOW = datetime.now(UTC).replace(microsecond=0)
LEASE = NOW + timedelta(seconds=90)
DEADLINE = NOW + timedelta(seconds=900)


def queued(
    task_id: str | None = None,
    attempt: int = 1,
    priority: int = 0,
    age_seconds: float = 60.0,
) -> QueuedTask:
    return QueuedTask(
        task_id or str(uuid.uuid4()),
        attempt,
        priority,
        NOW - timedelta(seconds=age_seconds),
    )


def active(task: QueuedTask, deadline: datetime = DEADLINE) -> ActiveAttempt:
    return ActiveAttempt(task.task_id, task.attempt, ALGO, deadline)


def arm(queue: TaskQueue, algorithm: str = ALGO) -> None:
    """What reconcile does on a fresh Redis: set the epoch marker (state is whole)."""
    report = queue.restore(algorithm, [], [])
    assert report.rebuilt


def member(task: QueuedTask) -> tuple[str, int]:
    return task.task_id, task.attempt


def score_of(client: redis.Redis, key: str, name: str) -> float | None:
    return client.zscore(key, name)


# -- enqueue ----------------------------------------------------------------------------


def test_enqueue_adds_each_attempt_once_and_is_idempotent(task_queue: TaskQueue) -> None:
    tasks = [queued(age_seconds=60 - i) for i in range(3)]

    assert task_queue.enqueue(ALGO, tasks) == 3
    assert task_queue.enqueue(ALGO, tasks) == 0
    assert task_queue.enqueue(ALGO, tasks[:1]) == 0
    assert task_queue.enqueue(ALGO, []) == 0

    assert task_queue.ready_count(ALGO) == 3
    assert task_queue.ready_members(ALGO) == {member(t) for t in tasks}
    assert task_queue.running_count(ALGO) == 0


def test_enqueue_skips_attempts_already_holding_a_slot(task_queue: TaskQueue) -> None:
    arm(task_queue)
    running, waiting = queued(), queued()
    assert task_queue.confirm_slot(ALGO, *member(running), DEADLINE, CAP) is SlotConfirmation.OK

    assert task_queue.enqueue(ALGO, [running, waiting]) == 1

    assert task_queue.ready_members(ALGO) == {member(waiting)}
    # The next attempt of the running task is a different member: it is enqueued.
    next_attempt = QueuedTask(running.task_id, 2, running.priority, running.created_at)
    assert task_queue.enqueue(ALGO, [next_attempt]) == 1
    assert task_queue.ready_members(ALGO) == {member(waiting), member(next_attempt)}


def test_enqueue_works_without_epoch_and_does_not_create_it(task_queue: TaskQueue) -> None:
    assert task_queue.enqueue(ALGO, [queued()]) == 1
    assert not task_queue.has_state(ALGO)


# -- admit ------------------------------------------------------------------------------


def test_admit_refuses_with_redis_state_lost_when_epoch_missing(
    task_queue: TaskQueue, redis_client: redis.Redis
) -> None:
    tasks = [queued(age_seconds=60 - i) for i in range(2)]
    task_queue.enqueue(ALGO, tasks)

    with pytest.raises(RedisStateLost) as raised:
        task_queue.admit(ALGO, CAP, LEASE, 10)

    assert raised.value.algorithm == ALGO
    # Nothing moved: the ready entries wait for reconcile, no slot was taken.
    assert task_queue.ready_count(ALGO) == 2
    assert task_queue.running_count(ALGO) == 0
    assert not redis_client.exists(task_queue.keys(ALGO).running)


def test_admit_refuses_on_completely_fresh_keys(task_queue: TaskQueue) -> None:
    with pytest.raises(RedisStateLost):
        task_queue.admit(ALGO, CAP, LEASE, 10)


def test_admit_works_once_restore_set_the_epoch(
    task_queue: TaskQueue, redis_client: redis.Redis
) -> None:
    task = queued()
    task_queue.enqueue(ALGO, [task])
    with pytest.raises(RedisStateLost):
        task_queue.admit(ALGO, CAP, LEASE, 10)

    arm(task_queue)

    assert task_queue.admit(ALGO, CAP, LEASE, 10) == [member(task)]
    keys = task_queue.keys(ALGO)
    assert score_of(redis_client, keys.running, f"{task.task_id}:1") == pytest.approx(
        LEASE.timestamp()
    )
    assert task_queue.ready_count(ALGO) == 0
    # Empty queue: an empty list, not an error.
    assert task_queue.admit(ALGO, CAP, LEASE, 10) == []


def test_admit_never_takes_more_than_cap_minus_running(task_queue: TaskQueue) -> None:
    arm(task_queue)
    holder = queued(age_seconds=1000)
    assert task_queue.confirm_slot(ALGO, *member(holder), DEADLINE, CAP) is SlotConfirmation.OK
    task_queue.enqueue(ALGO, [queued(age_seconds=100 - i) for i in range(10)])

    first = task_queue.admit(ALGO, CAP, LEASE, 10)

    assert len(first) == CAP - 1
    assert task_queue.running_count(ALGO) == CAP
    assert task_queue.ready_count(ALGO) == 8
    assert task_queue.admit(ALGO, CAP, LEASE, 10) == []
    assert task_queue.ready_count(ALGO) == 8  # a full admit pops nothing

    assert task_queue.release(ALGO, *member(holder))
    assert len(task_queue.admit(ALGO, CAP, LEASE, 10)) == 1
    assert task_queue.running_count(ALGO) == CAP


def test_admit_respects_limit_and_a_cap_lowered_below_running(task_queue: TaskQueue) -> None:
    arm(task_queue)
    task_queue.enqueue(ALGO, [queued(age_seconds=100 - i) for i in range(6)])

    assert len(task_queue.admit(ALGO, 10, LEASE, 2)) == 2
    assert len(task_queue.admit(ALGO, 10, LEASE, 0)) == 0
    # The operator lowered the cap to 1 while 2 run: nothing more is admitted.
    assert task_queue.admit(ALGO, 1, LEASE, 10) == []
    assert task_queue.running_count(ALGO) == 2
    assert task_queue.ready_count(ALGO) == 4


def test_admit_orders_by_priority_desc_then_age(task_queue: TaskQueue) -> None:
    arm(task_queue)
    low_old = queued(priority=0, age_seconds=500)
    low_new = queued(priority=0, age_seconds=5)
    high_new = queued(priority=5, age_seconds=1)
    high_old = queued(priority=5, age_seconds=300)
    negative = queued(priority=-3, age_seconds=10_000)
    mid = queued(priority=1, age_seconds=2)
    task_queue.enqueue(ALGO, [low_new, negative, high_new, low_old, mid, high_old])

    order = [task_queue.admit(ALGO, 100, LEASE, 1)[0] for _ in range(6)]

    assert order == [member(t) for t in (high_old, high_new, mid, low_old, low_new, negative)]
    assert task_queue.admit(ALGO, 100, LEASE, 1) == []


def test_admit_in_one_call_returns_the_same_order(task_queue: TaskQueue) -> None:
    arm(task_queue)
    tasks = [queued(priority=i % 3, age_seconds=100 - i) for i in range(9)]
    task_queue.enqueue(ALGO, reversed(tasks))

    admitted = task_queue.admit(ALGO, 100, LEASE, 100)

    expected = sorted(tasks, key=lambda t: (-t.priority, t.created_at))
    assert admitted == [member(t) for t in expected]


def test_admit_drops_a_stale_duplicate_of_a_running_attempt(
    task_queue: TaskQueue, redis_client: redis.Redis
) -> None:
    arm(task_queue)
    duplicate = queued(priority=9, age_seconds=500)  # would be popped first
    other = queued(priority=0, age_seconds=10)
    task_queue.enqueue(ALGO, [duplicate, other])
    # The attempt got its slot another way (a reconcile/confirm) while its old ready
    # entry stayed behind.
    assert task_queue.confirm_slot(ALGO, *member(duplicate), DEADLINE, 2) is SlotConfirmation.OK

    admitted = task_queue.admit(ALGO, 2, LEASE, 10)

    # One free slot: the duplicate neither takes it nor is returned.
    assert admitted == [member(other)]
    assert task_queue.ready_count(ALGO) == 0
    assert task_queue.running_count(ALGO) == 2
    running_key = task_queue.keys(ALGO).running
    # The running attempt keeps its deadline (not overwritten with the lease).
    assert score_of(redis_client, running_key, f"{duplicate.task_id}:1") == pytest.approx(
        DEADLINE.timestamp()
    )


def test_admit_drops_duplicate_even_when_nothing_else_is_ready(task_queue: TaskQueue) -> None:
    arm(task_queue)
    duplicate = queued()
    task_queue.enqueue(ALGO, [duplicate])
    task_queue.confirm_slot(ALGO, *member(duplicate), DEADLINE, CAP)

    assert task_queue.admit(ALGO, CAP, LEASE, 10) == []
    assert task_queue.ready_count(ALGO) == 0
    assert task_queue.running_count(ALGO) == 1


# -- confirm_slot -----------------------------------------------------------------------


def test_confirm_present_member_moves_score_to_deadline(
    task_queue: TaskQueue, redis_client: redis.Redis
) -> None:
    arm(task_queue)
    task = queued()
    task_queue.enqueue(ALGO, [task])
    assert task_queue.admit(ALGO, 1, LEASE, 1) == [member(task)]

    # Present: OK even though the set is at its cap of 1.
    assert task_queue.confirm_slot(ALGO, *member(task), DEADLINE, 1) is SlotConfirmation.OK

    assert task_queue.running(ALGO) == {member(task): DEADLINE}
    assert task_queue.running_count(ALGO) == 1


def test_confirm_missing_member_retakes_a_free_slot(task_queue: TaskQueue) -> None:
    arm(task_queue)
    task = queued()

    assert task_queue.confirm_slot(ALGO, *member(task), DEADLINE, 2) is SlotConfirmation.OK

    assert task_queue.running(ALGO) == {member(task): DEADLINE}


def test_confirm_missing_member_when_full_is_refused(task_queue: TaskQueue) -> None:
    arm(task_queue)
    holders = [queued() for _ in range(2)]
    for holder in holders:
        assert task_queue.confirm_slot(ALGO, *member(holder), DEADLINE, 2) is SlotConfirmation.OK
    late = queued()

    assert task_queue.confirm_slot(ALGO, *member(late), DEADLINE, 2) is SlotConfirmation.FULL

    assert set(task_queue.running(ALGO)) == {member(h) for h in holders}


def test_confirm_without_epoch_is_lost_and_adds_nothing(
    task_queue: TaskQueue, redis_client: redis.Redis, key_prefix: str
) -> None:
    arm(task_queue)
    task = queued()
    task_queue.enqueue(ALGO, [task])
    task_queue.admit(ALGO, CAP, LEASE, 1)
    flush_prefix(redis_client, key_prefix)

    assert task_queue.confirm_slot(ALGO, *member(task), DEADLINE, CAP) is SlotConfirmation.LOST
    assert task_queue.running_count(ALGO) == 0
    assert redis_client.keys(f"{key_prefix}:*") == []


# -- restore ----------------------------------------------------------------------------


def test_restore_rebuilds_everything_after_a_flush(
    task_queue: TaskQueue, redis_client: redis.Redis, key_prefix: str
) -> None:
    arm(task_queue)
    running = [queued(age_seconds=100 + i) for i in range(2)]
    waiting = [queued(age_seconds=50 - i) for i in range(3)]
    task_queue.enqueue(ALGO, running + waiting)
    task_queue.admit(ALGO, 2, LEASE, 2)
    flush_prefix(redis_client, key_prefix)
    assert not task_queue.has_state(ALGO)
    with pytest.raises(RedisStateLost):
        task_queue.admit(ALGO, CAP, LEASE, 10)

    deadlines = [DEADLINE + timedelta(seconds=i) for i in range(2)]
    # The database's QUEUED list may still include an attempt that started meanwhile.
    report = task_queue.restore(
        ALGO,
        [active(t, d) for t, d in zip(running, deadlines, strict=True)],
        [*waiting, running[0]],
    )

    assert report.rebuilt
    assert report.running_added == 2
    assert report.ready_added == 3
    assert task_queue.has_state(ALGO)
    assert task_queue.running(ALGO) == {
        member(t): d for t, d in zip(running, deadlines, strict=True)
    }
    assert task_queue.ready_members(ALGO) == {member(t) for t in waiting}
    # Admission resumes, in the restored order, within the cap.
    assert task_queue.admit(ALGO, CAP, LEASE, 10) == [member(waiting[0])]


def test_restore_with_epoch_only_adds_and_keeps_the_epoch(
    task_queue: TaskQueue, redis_client: redis.Redis
) -> None:
    arm(task_queue)
    keys = task_queue.keys(ALGO)
    epoch = redis_client.get(keys.epoch)
    assert epoch
    kept_running = queued()
    kept_ready = queued()
    task_queue.confirm_slot(ALGO, *member(kept_running), DEADLINE, CAP)
    task_queue.enqueue(ALGO, [kept_ready])
    new_running = queued()
    new_ready = queued()
    other_deadline = DEADLINE + timedelta(hours=1)

    report = task_queue.restore(
        ALGO,
        # kept_running again, with another deadline: not overwritten.
        [active(new_running), active(kept_running, other_deadline)],
        [new_ready, kept_ready],
    )

    assert not report.rebuilt
    assert report.running_added == 1
    assert report.ready_added == 1
    assert redis_client.get(keys.epoch) == epoch
    assert task_queue.running(ALGO) == {
        member(kept_running): DEADLINE,
        member(new_running): DEADLINE,
    }
    assert task_queue.ready_members(ALGO) == {member(kept_ready), member(new_ready)}

    # An empty snapshot removes nothing either.
    again = task_queue.restore(ALGO, [], [])
    assert (again.rebuilt, again.running_added, again.ready_added) == (False, 0, 0)
    assert task_queue.running_count(ALGO) == 2
    assert task_queue.ready_count(ALGO) == 2
    assert redis_client.get(keys.epoch) == epoch


def test_restore_is_per_algorithm(task_queue: TaskQueue) -> None:
    arm(task_queue, "ocr")
    assert task_queue.has_state("ocr")
    assert not task_queue.has_state("nlp")
    with pytest.raises(RedisStateLost):
        task_queue.admit("nlp", CAP, LEASE, 1)


# -- release, extend, overdue -----------------------------------------------------------


def test_release_removes_only_the_exact_attempt(task_queue: TaskQueue) -> None:
    arm(task_queue)
    task_id = str(uuid.uuid4())
    task_queue.confirm_slot(ALGO, task_id, 2, DEADLINE, 10)
    task_queue.confirm_slot(ALGO, task_id, 12, DEADLINE, 10)
    other = str(uuid.uuid4())
    task_queue.confirm_slot(ALGO, other, 1, DEADLINE, 10)

    # A late release of attempt 1 never frees attempt 2's (or 12's) slot.
    assert task_queue.release(ALGO, task_id, 1) is False
    assert set(task_queue.running(ALGO)) == {(task_id, 2), (task_id, 12), (other, 1)}

    assert task_queue.release(ALGO, task_id, 2) is True
    assert task_queue.release(ALGO, task_id, 2) is False
    assert set(task_queue.running(ALGO)) == {(task_id, 12), (other, 1)}


def test_extend_slot_moves_a_held_slot_and_never_creates_one(task_queue: TaskQueue) -> None:
    arm(task_queue)
    held, absent = queued(), queued()
    task_queue.confirm_slot(ALGO, *member(held), DEADLINE, CAP)
    later = DEADLINE + timedelta(minutes=30)

    task_queue.extend_slot(ALGO, *member(held), later)
    task_queue.extend_slot(ALGO, *member(absent), later)

    assert task_queue.running(ALGO) == {member(held): later}


def test_overdue_returns_members_scored_at_or_before_now(task_queue: TaskQueue) -> None:
    arm(task_queue)
    past = [queued() for _ in range(3)]
    exactly_now, future = queued(), queued()
    for index, task in enumerate(past):
        task_queue.confirm_slot(ALGO, *member(task), NOW - timedelta(seconds=10 - index), 10)
    task_queue.confirm_slot(ALGO, *member(exactly_now), NOW, 10)
    task_queue.confirm_slot(ALGO, *member(future), NOW + timedelta(seconds=1), 10)

    overdue = task_queue.overdue(ALGO, NOW, 100)

    assert overdue == [member(t) for t in [*past, exactly_now]]  # earliest deadline first
    assert task_queue.overdue(ALGO, NOW, 2) == [member(t) for t in past[:2]]
    assert task_queue.overdue(ALGO, NOW - timedelta(seconds=60), 100) == []
    assert task_queue.overdue("nlp", NOW, 100) == []


# -- key layout -------------------------------------------------------------------------


def test_every_key_is_hash_tagged_by_algorithm(
    task_queue: TaskQueue, redis_client: redis.Redis, key_prefix: str
) -> None:
    for algorithm in ("ocr", "nlp.v2", "cv_fast-1"):
        arm(task_queue, algorithm)
        tasks = [queued() for _ in range(3)]
        task_queue.enqueue(algorithm, tasks)
        (admitted,) = task_queue.admit(algorithm, 1, LEASE, 5)
        task_queue.confirm_slot(algorithm, *admitted, DEADLINE, 1)
        task_queue.restore(algorithm, [], tasks)
        task_queue.extend_slot(algorithm, *admitted, DEADLINE)

    keys = sorted(
        k.decode() if isinstance(k, bytes) else k for k in redis_client.keys(f"{key_prefix}:*")
    )

    pattern = re.compile(
        rf"^{re.escape(key_prefix)}:\{{(ocr|nlp\.v2|cv_fast-1)\}}:(ready|running|epoch)$"
    )
    assert len(keys) == 9
    for key in keys:
        assert pattern.match(key), key
    for algorithm in ("ocr", "nlp.v2", "cv_fast-1"):
        names = task_queue.keys(algorithm)
        slots = {key_slot(k.encode()) for k in (names.ready, names.running, names.epoch)}
        assert len(slots) == 1, algorithm
        assert slots == {key_slot(algorithm.encode())}


def test_ready_entry_orders_priority_then_age() -> None:
    older = queued(priority=1, age_seconds=20)
    newer = queued(priority=1, age_seconds=10)
    score_old, name_old, running_old = ready_entry(older)
    score_new, name_new, _ = ready_entry(newer)
    assert score_old == score_new == -1.0
    assert name_old < name_new
    assert running_old == f"{older.task_id}:1"
    assert name_old.endswith(f":{running_old}")


# -- cool-down --------------------------------------------------------------------------


def test_admit_takes_nothing_while_the_algorithm_cools_down(task_queue: TaskQueue) -> None:
    arm(task_queue)
    task = queued()
    task_queue.enqueue(ALGO, [task])
    task_queue.cool_down(ALGO, NOW + timedelta(seconds=30), NOW)
    task_queue.cool_down(ALGO, NOW + timedelta(seconds=5), NOW)  # a shorter pause loses

    assert task_queue.admit(ALGO, CAP, LEASE, 10, NOW + timedelta(seconds=29)) == []
    assert task_queue.ready_count(ALGO) == 1  # nothing was popped
    assert task_queue.paused_until(ALGO) == NOW + timedelta(seconds=30)
    assert task_queue.admit(ALGO, CAP, LEASE, 10, NOW + timedelta(seconds=31)) == [member(task)]


def test_cool_down_of_one_algorithm_leaves_the_others_alone(task_queue: TaskQueue) -> None:
    for name in (ALGO, "nlp"):
        arm(task_queue, name)
    task_queue.enqueue("nlp", [queued()])
    task_queue.cool_down(ALGO, NOW + timedelta(seconds=30), NOW)
    assert len(task_queue.admit("nlp", CAP, LEASE, 10, NOW)) == 1
