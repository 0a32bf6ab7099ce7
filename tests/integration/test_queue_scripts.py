"""The Redis Lua scripts (enqueue, admit, confirm, restore, release) and the reads around
them, against the real Redis server. Every test has its own key prefix."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis
from baton.errors import RedisStateLost
from baton.queue import AdmissionStop, Policy, SlotConfirmation, TaskQueue, ready_entry
from baton.records import ActiveAttempt, QueuedTask, Slot
from redis.crc import key_slot

from tests.support.admission import (
    ENDPOINT,
    arm,
    members,
    single_endpoint_policy,
    slot_of,
    write_policy,
)
from tests.support.services import flush_prefix

ALGO = "ocr"
APP = "app"
CAP = 3
NOW = datetime.now(UTC).replace(microsecond=0)
LEASE = NOW + timedelta(seconds=90)
DEADLINE = NOW + timedelta(seconds=900)


def queued(
    task_id: str | None = None,
    attempt: int = 1,
    priority: int = 0,
    age_seconds: float = 60.0,
    app: str = APP,
    cost: int = 1,
) -> QueuedTask:
    return QueuedTask(
        task_id or str(uuid.uuid4()),
        attempt,
        priority,
        NOW - timedelta(seconds=age_seconds),
        app,
        cost,
    )


def active(task: QueuedTask, deadline: datetime = DEADLINE) -> ActiveAttempt:
    return ActiveAttempt(task.task_id, task.attempt, ALGO, deadline, task.app, task.cost, ENDPOINT)


def slot(task_id: str, attempt: int) -> Slot:
    return Slot(task_id, attempt, APP, 1, ENDPOINT)


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
    assert task_queue.apps_with_ready_tasks(ALGO) == {APP}


def test_enqueue_skips_attempts_already_holding_a_slot(task_queue: TaskQueue) -> None:
    arm(task_queue, ALGO, CAP)
    running, waiting = queued(), queued()
    assert task_queue.confirm_slot(ALGO, slot_of(running), DEADLINE) is SlotConfirmation.OK

    assert task_queue.enqueue(ALGO, [running, waiting]) == 1

    assert task_queue.ready_members(ALGO) == {member(waiting)}
    # The next attempt of the running task is a different member: it is enqueued.
    next_attempt = QueuedTask(running.task_id, 2, running.priority, running.created_at, APP)
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
    # The policy is there (a function wrote it): only the epoch marker is missing.
    assert write_policy(task_queue, ALGO, single_endpoint_policy(CAP))
    policy_writes: list[bool] = []

    with pytest.raises(RedisStateLost) as raised:
        task_queue.admit(ALGO, LEASE, 10)
    with pytest.raises(RedisStateLost):
        task_queue.admit(ALGO, LEASE, 10, write_policy=lambda: policy_writes.append(True))

    assert raised.value.algorithm == ALGO
    assert policy_writes == []  # writing the policy cannot stand in for reconcile
    # Nothing moved: the ready entries wait for reconcile, no slot was taken.
    assert task_queue.ready_count(ALGO) == 2
    assert task_queue.running_count(ALGO) == 0
    assert not redis_client.exists(task_queue.keys(ALGO).running)


def test_admit_refuses_on_completely_fresh_keys(task_queue: TaskQueue) -> None:
    with pytest.raises(RedisStateLost):
        task_queue.admit(ALGO, LEASE, 10)
    with pytest.raises(RedisStateLost):
        task_queue.admit(
            ALGO,
            LEASE,
            10,
            write_policy=lambda: write_policy(task_queue, ALGO, single_endpoint_policy(CAP)),
        )


def test_admit_without_a_policy_is_lost_unless_it_may_write_one(task_queue: TaskQueue) -> None:
    task = queued()
    task_queue.enqueue(ALGO, [task])
    assert task_queue.restore(ALGO, [], []).rebuilt  # the epoch, but no policy

    with pytest.raises(RedisStateLost):
        task_queue.admit(ALGO, LEASE, 10)
    assert task_queue.ready_count(ALGO) == 1

    admitted = task_queue.admit(
        ALGO,
        LEASE,
        10,
        write_policy=lambda: write_policy(task_queue, ALGO, single_endpoint_policy(CAP)),
    )
    assert members(admitted.slots) == [member(task)]


def test_admit_works_once_restore_set_the_epoch(
    task_queue: TaskQueue, redis_client: redis.Redis
) -> None:
    task = queued()
    task_queue.enqueue(ALGO, [task])
    with pytest.raises(RedisStateLost):
        task_queue.admit(ALGO, LEASE, 10)

    arm(task_queue, ALGO, CAP)

    admitted = task_queue.admit(ALGO, LEASE, 10)
    assert members(admitted.slots) == [member(task)]
    assert admitted.slots == [slot_of(task)]
    keys = task_queue.keys(ALGO)
    assert score_of(redis_client, keys.running, f"{task.task_id}:1") == pytest.approx(
        LEASE.timestamp()
    )
    assert task_queue.ready_count(ALGO) == 0
    # Empty queue: no slots, not an error.
    empty = task_queue.admit(ALGO, LEASE, 10)
    assert empty.slots == []
    assert empty.stopped is AdmissionStop.EMPTY


def test_admit_never_takes_more_than_cap_minus_running(task_queue: TaskQueue) -> None:
    arm(task_queue, ALGO, CAP)
    holder = queued(age_seconds=1000)
    assert task_queue.confirm_slot(ALGO, slot_of(holder), DEADLINE) is SlotConfirmation.OK
    task_queue.enqueue(ALGO, [queued(age_seconds=100 - i) for i in range(10)])

    first = task_queue.admit(ALGO, LEASE, 10)

    assert len(first.slots) == CAP - 1
    assert first.stopped is AdmissionStop.CAPACITY
    assert task_queue.running_count(ALGO) == CAP
    assert task_queue.inflight_cost(ALGO) == CAP
    assert task_queue.ready_count(ALGO) == 8
    full = task_queue.admit(ALGO, LEASE, 10)
    assert full.slots == []
    assert full.stopped is AdmissionStop.CAPACITY
    assert task_queue.ready_count(ALGO) == 8  # a full admit pops nothing

    assert task_queue.release(ALGO, *member(holder))
    assert len(task_queue.admit(ALGO, LEASE, 10).slots) == 1
    assert task_queue.running_count(ALGO) == CAP
    assert task_queue.inflight_cost(ALGO) == CAP


def test_admit_respects_limit_and_a_cap_lowered_below_running(task_queue: TaskQueue) -> None:
    arm(task_queue, ALGO, 10)
    task_queue.enqueue(ALGO, [queued(age_seconds=100 - i) for i in range(6)])

    two = task_queue.admit(ALGO, LEASE, 2)
    assert len(two.slots) == 2
    assert two.stopped is AdmissionStop.LIMIT
    assert len(task_queue.admit(ALGO, LEASE, 0).slots) == 0
    # The operator lowered the cap to 1 while 2 run: nothing more is admitted.
    assert write_policy(task_queue, ALGO, single_endpoint_policy(1))
    assert task_queue.admit(ALGO, LEASE, 10).slots == []
    assert task_queue.running_count(ALGO) == 2
    assert task_queue.ready_count(ALGO) == 4


def test_admit_orders_by_priority_desc_then_age(task_queue: TaskQueue) -> None:
    arm(task_queue, ALGO, 100)
    low_old = queued(priority=0, age_seconds=500)
    low_new = queued(priority=0, age_seconds=5)
    high_new = queued(priority=5, age_seconds=1)
    high_old = queued(priority=5, age_seconds=300)
    negative = queued(priority=-3, age_seconds=10_000)
    mid = queued(priority=1, age_seconds=2)
    task_queue.enqueue(ALGO, [low_new, negative, high_new, low_old, mid, high_old])

    order = [members(task_queue.admit(ALGO, LEASE, 1).slots)[0] for _ in range(6)]

    assert order == [member(t) for t in (high_old, high_new, mid, low_old, low_new, negative)]
    assert task_queue.admit(ALGO, LEASE, 1).slots == []


def test_admit_in_one_call_returns_the_same_order(task_queue: TaskQueue) -> None:
    arm(task_queue, ALGO, 100)
    tasks = [queued(priority=i % 3, age_seconds=100 - i) for i in range(9)]
    task_queue.enqueue(ALGO, reversed(tasks))

    admitted = task_queue.admit(ALGO, LEASE, 100)

    expected = sorted(tasks, key=lambda t: (-t.priority, t.created_at))
    assert members(admitted.slots) == [member(t) for t in expected]


def test_admit_drops_a_stale_duplicate_of_a_running_attempt(
    task_queue: TaskQueue, redis_client: redis.Redis
) -> None:
    arm(task_queue, ALGO, 2)
    duplicate = queued(priority=9, age_seconds=500)  # would be popped first
    other = queued(priority=0, age_seconds=10)
    task_queue.enqueue(ALGO, [duplicate, other])
    # The attempt got its slot another way (a reconcile/confirm) while its old ready
    # entry stayed behind.
    assert task_queue.confirm_slot(ALGO, slot_of(duplicate), DEADLINE) is SlotConfirmation.OK

    admitted = task_queue.admit(ALGO, LEASE, 10)

    # One free slot: the duplicate neither takes it nor is returned.
    assert members(admitted.slots) == [member(other)]
    assert task_queue.ready_count(ALGO) == 0
    assert task_queue.running_count(ALGO) == 2
    assert task_queue.inflight_cost(ALGO) == 2  # the duplicate's cost is not counted twice
    running_key = task_queue.keys(ALGO).running
    # The running attempt keeps its deadline (not overwritten with the lease).
    assert score_of(redis_client, running_key, f"{duplicate.task_id}:1") == pytest.approx(
        DEADLINE.timestamp()
    )


def test_admit_drops_duplicate_even_when_nothing_else_is_ready(task_queue: TaskQueue) -> None:
    arm(task_queue, ALGO, CAP)
    duplicate = queued()
    task_queue.enqueue(ALGO, [duplicate])
    task_queue.confirm_slot(ALGO, slot_of(duplicate), DEADLINE)

    assert task_queue.admit(ALGO, LEASE, 10).slots == []
    assert task_queue.ready_count(ALGO) == 0
    assert task_queue.running_count(ALGO) == 1
    assert task_queue.inflight_cost(ALGO) == 1


# -- confirm_slot -----------------------------------------------------------------------


def test_confirm_present_member_moves_score_to_deadline(
    task_queue: TaskQueue, redis_client: redis.Redis
) -> None:
    arm(task_queue, ALGO, 1)
    task = queued()
    task_queue.enqueue(ALGO, [task])
    (admitted,) = task_queue.admit(ALGO, LEASE, 1).slots
    assert (admitted.task_id, admitted.attempt) == member(task)

    # Present: OK even though the set is at its cap of 1.
    assert task_queue.confirm_slot(ALGO, admitted, DEADLINE) is SlotConfirmation.OK

    assert task_queue.running(ALGO) == {member(task): DEADLINE}
    assert task_queue.running_count(ALGO) == 1
    assert task_queue.inflight_cost(ALGO) == 1


def test_confirm_missing_member_retakes_a_free_slot(task_queue: TaskQueue) -> None:
    arm(task_queue, ALGO, 2)
    task = queued()

    assert task_queue.confirm_slot(ALGO, slot_of(task), DEADLINE) is SlotConfirmation.OK

    assert task_queue.running(ALGO) == {member(task): DEADLINE}
    assert task_queue.inflight_cost(ALGO) == 1


def test_confirm_missing_member_when_full_is_refused(task_queue: TaskQueue) -> None:
    arm(task_queue, ALGO, 2)
    holders = [queued() for _ in range(2)]
    for holder in holders:
        assert task_queue.confirm_slot(ALGO, slot_of(holder), DEADLINE) is SlotConfirmation.OK
    late = queued()

    assert task_queue.confirm_slot(ALGO, slot_of(late), DEADLINE) is SlotConfirmation.FULL

    assert set(task_queue.running(ALGO)) == {member(h) for h in holders}
    assert task_queue.inflight_cost(ALGO) == 2


def test_confirm_missing_member_is_refused_when_its_endpoint_is_full(
    task_queue: TaskQueue,
) -> None:
    small, large = "http://127.0.0.1:9/ocr-small", "http://127.0.0.1:9/ocr-large"
    arm(task_queue, ALGO, policy=Policy(capacity=3, endpoints=[(small, 1), (large, 2)]))
    first, second = queued(), queued()

    assert task_queue.confirm_slot(ALGO, slot_of(first, small), DEADLINE) is SlotConfirmation.OK
    # The algorithm has room (1 of 3) but this endpoint has none (1 of 1).
    assert task_queue.confirm_slot(ALGO, slot_of(second, small), DEADLINE) is SlotConfirmation.FULL
    assert set(task_queue.running(ALGO)) == {member(first)}
    # The other endpoint has room.
    assert task_queue.confirm_slot(ALGO, slot_of(second, large), DEADLINE) is SlotConfirmation.OK
    assert set(task_queue.running(ALGO)) == {member(first), member(second)}
    assert task_queue.inflight_cost(ALGO) == 2


def test_confirm_without_epoch_is_lost_and_adds_nothing(
    task_queue: TaskQueue, redis_client: redis.Redis, key_prefix: str
) -> None:
    arm(task_queue, ALGO, CAP)
    task = queued()
    task_queue.enqueue(ALGO, [task])
    task_queue.admit(ALGO, LEASE, 1)
    flush_prefix(redis_client, key_prefix)

    assert task_queue.confirm_slot(ALGO, slot_of(task), DEADLINE) is SlotConfirmation.LOST
    assert task_queue.running_count(ALGO) == 0
    assert redis_client.keys(f"{key_prefix}:*") == []


def test_confirm_without_policy_is_lost_and_adds_nothing(task_queue: TaskQueue) -> None:
    assert task_queue.restore(ALGO, [], []).rebuilt  # the epoch, but no policy
    task = queued()

    assert task_queue.confirm_slot(ALGO, slot_of(task), DEADLINE) is SlotConfirmation.LOST
    assert task_queue.running_count(ALGO) == 0
    assert task_queue.inflight_cost(ALGO) == 0


# -- restore ----------------------------------------------------------------------------


def test_restore_rebuilds_everything_after_a_flush(
    task_queue: TaskQueue, redis_client: redis.Redis, key_prefix: str
) -> None:
    arm(task_queue, ALGO, 2)
    running = [queued(age_seconds=100 + i) for i in range(2)]
    waiting = [queued(age_seconds=50 - i) for i in range(3)]
    task_queue.enqueue(ALGO, running + waiting)
    task_queue.admit(ALGO, LEASE, 2)
    flush_prefix(redis_client, key_prefix)
    assert not task_queue.has_state(ALGO)
    # Reconcile writes the policy first; without the epoch admission still refuses.
    assert write_policy(task_queue, ALGO, single_endpoint_policy(CAP))
    with pytest.raises(RedisStateLost):
        task_queue.admit(ALGO, LEASE, 10)

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
    # The counts are recounted from what was restored.
    assert task_queue.inflight_cost(ALGO) == 2
    assert task_queue.ready_count(ALGO) == 3
    # Admission resumes, in the restored order, within the cap.
    assert members(task_queue.admit(ALGO, LEASE, 10).slots) == [member(waiting[0])]


def test_restore_with_epoch_only_adds_and_keeps_the_epoch(
    task_queue: TaskQueue, redis_client: redis.Redis
) -> None:
    arm(task_queue, ALGO, CAP)
    keys = task_queue.keys(ALGO)
    epoch = redis_client.get(keys.epoch)
    assert epoch
    kept_running = queued()
    kept_ready = queued()
    task_queue.confirm_slot(ALGO, slot_of(kept_running), DEADLINE)
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
    assert task_queue.inflight_cost(ALGO) == 2

    # An empty snapshot removes nothing either.
    again = task_queue.restore(ALGO, [], [])
    assert (again.rebuilt, again.running_added, again.ready_added) == (False, 0, 0)
    assert task_queue.running_count(ALGO) == 2
    assert task_queue.ready_count(ALGO) == 2
    assert task_queue.inflight_cost(ALGO) == 2
    assert redis_client.get(keys.epoch) == epoch


def test_restore_is_per_algorithm(task_queue: TaskQueue) -> None:
    arm(task_queue, "ocr", CAP)
    assert task_queue.has_state("ocr")
    assert not task_queue.has_state("nlp")
    with pytest.raises(RedisStateLost):
        task_queue.admit("nlp", LEASE, 1)


# -- release, extend, overdue -----------------------------------------------------------


def test_release_removes_only_the_exact_attempt(task_queue: TaskQueue) -> None:
    arm(task_queue, ALGO, 10)
    task_id = str(uuid.uuid4())
    task_queue.confirm_slot(ALGO, slot(task_id, 2), DEADLINE)
    task_queue.confirm_slot(ALGO, slot(task_id, 12), DEADLINE)
    other = str(uuid.uuid4())
    task_queue.confirm_slot(ALGO, slot(other, 1), DEADLINE)

    # A late release of attempt 1 never frees attempt 2's (or 12's) slot.
    assert task_queue.release(ALGO, task_id, 1) is False
    assert set(task_queue.running(ALGO)) == {(task_id, 2), (task_id, 12), (other, 1)}
    assert task_queue.inflight_cost(ALGO) == 3

    assert task_queue.release(ALGO, task_id, 2) is True
    assert task_queue.release(ALGO, task_id, 2) is False
    assert set(task_queue.running(ALGO)) == {(task_id, 12), (other, 1)}
    # The cost is given back once.
    assert task_queue.inflight_cost(ALGO) == 2


def test_extend_slot_moves_a_held_slot_and_never_creates_one(task_queue: TaskQueue) -> None:
    arm(task_queue, ALGO, CAP)
    held, absent = queued(), queued()
    task_queue.confirm_slot(ALGO, slot_of(held), DEADLINE)
    later = DEADLINE + timedelta(minutes=30)

    task_queue.extend_slot(ALGO, *member(held), later)
    task_queue.extend_slot(ALGO, *member(absent), later)

    assert task_queue.running(ALGO) == {member(held): later}


def test_overdue_returns_members_scored_at_or_before_now(task_queue: TaskQueue) -> None:
    arm(task_queue, ALGO, 10)
    past = [queued() for _ in range(3)]
    exactly_now, future = queued(), queued()
    for index, task in enumerate(past):
        task_queue.confirm_slot(ALGO, slot_of(task), NOW - timedelta(seconds=10 - index))
    task_queue.confirm_slot(ALGO, slot_of(exactly_now), NOW)
    task_queue.confirm_slot(ALGO, slot_of(future), NOW + timedelta(seconds=1))

    overdue = task_queue.overdue(ALGO, NOW, 100)

    assert overdue == [member(t) for t in [*past, exactly_now]]  # earliest deadline first
    assert task_queue.overdue(ALGO, NOW, 2) == [member(t) for t in past[:2]]
    assert task_queue.overdue(ALGO, NOW - timedelta(seconds=60), 100) == []
    assert task_queue.overdue("nlp", NOW, 100) == []


# -- key layout -------------------------------------------------------------------------

KEY_ALGORITHMS = ("ocr", "nlp.v2", "cv_fast-1")
KEY_APPS = ("app", "other-app")


def test_every_key_is_hash_tagged_by_algorithm(
    task_queue: TaskQueue, redis_client: redis.Redis, key_prefix: str
) -> None:
    expected: set[str] = set()
    for algorithm in KEY_ALGORITHMS:
        # A rate limit, so that admission keeps its rate key too.
        arm(task_queue, algorithm, policy=single_endpoint_policy(2, rate=(0.001, 100)))
        first = queued(app=KEY_APPS[0], age_seconds=60)
        tasks = [
            first,
            # Next in line (its app has nothing in flight) but too big for the room
            # left: reserved.
            queued(app=KEY_APPS[1], age_seconds=55, cost=2),
            queued(app=KEY_APPS[0], age_seconds=50),
            queued(app=KEY_APPS[1], age_seconds=40),
        ]
        task_queue.enqueue(algorithm, tasks)
        admissions = task_queue.admit(algorithm, LEASE, 5)
        (admitted,) = admissions.slots
        assert (admitted.task_id, admitted.attempt) == member(first)
        assert admissions.stopped is AdmissionStop.CAPACITY
        task_queue.confirm_slot(algorithm, admitted, DEADLINE)
        task_queue.restore(algorithm, [], tasks, task_queue.mark_snapshot(algorithm))
        task_queue.extend_slot(algorithm, admitted.task_id, admitted.attempt, DEADLINE)
        task_queue.cool_down(algorithm, ENDPOINT, NOW + timedelta(seconds=30), NOW)
        task_queue.hold(algorithm, True)
        leftover = task_queue.mark_snapshot(algorithm)  # a reconcile that died reading
        names = task_queue.keys(algorithm)
        expected |= {
            names.policy,
            names.epoch,
            names.hold,
            names.running,
            names.attempts,
            names.counts,
            names.cooldown,
            names.rate,
            names.reserve,
            names.apps,
            *(names.ready(app) for app in KEY_APPS),
            f"{names.base}:snapshot:{leftover}",
        }

    keys = sorted(
        k.decode() if isinstance(k, bytes) else k for k in redis_client.keys(f"{key_prefix}:*")
    )

    pattern = re.compile(
        rf"^{re.escape(key_prefix)}:\{{(ocr|nlp\.v2|cv_fast-1)\}}:"
        r"(ready:(app|other-app)|apps|running|attempts|counts|policy|hold|epoch|cooldown|rate"
        r"|reserve|snapshot:[0-9a-f]{16})$"
    )
    assert len(keys) == 13 * len(KEY_ALGORITHMS)
    assert set(keys) == expected
    for key in keys:
        assert pattern.match(key), key
    for algorithm in KEY_ALGORITHMS:
        names = task_queue.keys(algorithm)
        every = [
            names.policy,
            names.epoch,
            names.hold,
            names.running,
            names.attempts,
            names.counts,
            names.cooldown,
            names.rate,
            names.reserve,
            names.apps,
            *(names.ready(app) for app in (*KEY_APPS, "any app at all")),
            f"{names.base}:snapshot:0123456789abcdef",
        ]
        slots = {key_slot(k.encode()) for k in every}
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


def test_admit_takes_nothing_while_the_endpoint_cools_down(task_queue: TaskQueue) -> None:
    arm(task_queue, ALGO, CAP)
    task = queued()
    task_queue.enqueue(ALGO, [task])
    task_queue.cool_down(ALGO, ENDPOINT, NOW + timedelta(seconds=30), NOW)
    task_queue.cool_down(ALGO, ENDPOINT, NOW + timedelta(seconds=5), NOW)  # a shorter pause loses

    during = task_queue.admit(ALGO, LEASE, 10, NOW + timedelta(seconds=29))
    assert during.slots == []
    assert during.stopped is AdmissionStop.COOLING_DOWN
    assert task_queue.ready_count(ALGO) == 1  # nothing was popped
    assert task_queue.cooling_until(ALGO, ENDPOINT, NOW) == NOW + timedelta(seconds=30)
    after = task_queue.admit(ALGO, LEASE, 10, NOW + timedelta(seconds=31))
    assert members(after.slots) == [member(task)]


def test_a_cool_down_ends_and_its_record_does_not_linger(
    task_queue: TaskQueue, redis_client: redis.Redis
) -> None:
    task_queue.cool_down(ALGO, ENDPOINT, NOW + timedelta(seconds=30), NOW)

    assert task_queue.cooling_until(ALGO, ENDPOINT, NOW) == NOW + timedelta(seconds=30)
    assert task_queue.cooling_until(ALGO, ENDPOINT, NOW + timedelta(seconds=31)) is None
    # it goes away a minute after the last moment it holds
    ttl = redis_client.pttl(task_queue.keys(ALGO).cooldown)
    assert 80_000 < ttl <= 90_000


def test_cool_down_of_one_algorithm_leaves_the_others_alone(task_queue: TaskQueue) -> None:
    for name in (ALGO, "nlp"):
        arm(task_queue, name, CAP)
    task_queue.enqueue("nlp", [queued()])
    # The same endpoint URL: the cool-down is still the algorithm's own.
    task_queue.cool_down(ALGO, ENDPOINT, NOW + timedelta(seconds=30), NOW)
    assert len(task_queue.admit("nlp", LEASE, 10, NOW).slots) == 1
    assert task_queue.cooling_until("nlp", ENDPOINT, NOW) is None


def test_cool_down_of_one_endpoint_leaves_the_other_endpoints_alone(
    task_queue: TaskQueue,
) -> None:
    busy, free = "http://127.0.0.1:9/ocr-a", "http://127.0.0.1:9/ocr-b"
    arm(task_queue, ALGO, policy=Policy(capacity=4, endpoints=[(busy, 2), (free, 2)]))
    tasks = [queued(age_seconds=60 - i) for i in range(3)]
    task_queue.enqueue(ALGO, tasks)
    task_queue.cool_down(ALGO, busy, NOW + timedelta(seconds=30), NOW)

    during = task_queue.admit(ALGO, LEASE, 10, NOW + timedelta(seconds=29))

    # The other endpoint takes what it has room for; the third task waits for `busy`.
    assert members(during.slots) == [member(t) for t in tasks[:2]]
    assert {s.endpoint for s in during.slots} == {free}
    assert during.stopped is AdmissionStop.COOLING_DOWN
    assert task_queue.cooling_until(ALGO, busy, NOW) == NOW + timedelta(seconds=30)
    assert task_queue.cooling_until(ALGO, free, NOW) is None
    assert task_queue.ready_count(ALGO) == 1
    after = task_queue.admit(ALGO, LEASE, 10, NOW + timedelta(seconds=31))
    assert [(s.task_id, s.attempt, s.endpoint) for s in after.slots] == [(*member(tasks[2]), busy)]
