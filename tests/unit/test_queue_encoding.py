"""The Redis encodings: ready-queue entries that sort by priority then age, and running
members that carry one attempt of one task."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from baton.contracts import MAX_PRIORITY
from baton.queue import parse_running_member, ready_entry, running_member
from baton.records import QueuedTask

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def task(
    priority: int,
    created_at: datetime,
    task_id: str | None = None,
    attempt: int = 1,
    app: str = "app",
    cost: int = 1,
) -> QueuedTask:
    return QueuedTask(
        task_id=task_id or str(uuid.uuid4()),
        attempt=attempt,
        priority=priority,
        created_at=created_at,
        app=app,
        cost=cost,
    )


def redis_order(tasks: list[QueuedTask]) -> list[QueuedTask]:
    """The order ZPOPMIN pops them: by score, then by member bytes for equal scores."""
    entries = {ready_entry(t)[:2]: t for t in tasks}
    return [entries[key] for key in sorted(entries, key=lambda e: (e[0], e[1].encode()))]


def test_higher_priority_comes_first_whatever_its_age() -> None:
    old_low = task(0, T0)
    new_high = task(5, T0 + timedelta(days=30))
    negative = task(-3, T0 - timedelta(days=30))
    assert redis_order([negative, old_low, new_high]) == [new_high, old_low, negative]


def test_equal_priority_comes_oldest_first() -> None:
    tasks = [task(1, T0 + timedelta(milliseconds=offset)) for offset in (5, 0, 1000, 1, 86_400_000)]
    ordered = redis_order(tasks)
    assert [t.created_at for t in ordered] == sorted(t.created_at for t in tasks)


def test_age_order_survives_a_change_in_the_number_of_digits() -> None:
    # 1 s after the epoch has 4 digits of milliseconds, 2030 has 13: padding keeps them ordered
    ancient = task(0, datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC))
    recent = task(0, T0)
    far_future = task(0, datetime(2300, 1, 1, tzinfo=UTC))
    assert redis_order([far_future, recent, ancient]) == [ancient, recent, far_future]


def test_random_mix_sorts_by_priority_then_age() -> None:
    rng = random.Random(20300101)
    tasks = [
        task(rng.randint(-5, 5), T0 + timedelta(milliseconds=rng.randint(0, 10**9)))
        for _ in range(300)
    ]
    ordered = redis_order(tasks)
    keys = [(-t.priority, t.created_at) for t in ordered]
    assert keys == sorted(keys)


def test_priority_extremes_keep_their_order() -> None:
    top, middle, bottom = task(MAX_PRIORITY, T0), task(0, T0), task(-MAX_PRIORITY, T0)
    assert redis_order([bottom, middle, top]) == [top, middle, bottom]
    assert ready_entry(top)[0] == -float(MAX_PRIORITY)


def test_entry_parts() -> None:
    queued = task(7, T0 + timedelta(milliseconds=123), task_id="t-1", attempt=2)
    score, ready, running = ready_entry(queued)
    assert score == -7.0
    assert isinstance(score, float)
    assert running == running_member("t-1", 2) == "t-1:2"
    created_ms = int((T0 + timedelta(milliseconds=123)).timestamp() * 1000)
    assert ready == f"{created_ms:015d}:t-1:2"


@pytest.mark.parametrize("task_id", [str(uuid.uuid4()), "t-1", "with:colons:inside"])
def test_running_member_is_what_follows_the_first_colon_of_the_ready_member(task_id: str) -> None:
    # admit.lua takes the running member as everything after the first ':'
    _, ready, running = ready_entry(task(0, T0, task_id=task_id, attempt=3))
    assert ready[ready.index(":") + 1 :] == running


def test_the_entry_does_not_depend_on_the_app_or_the_cost() -> None:
    # Each app has its own ready queue, and the cost lives beside the entry (in the
    # attempts hash): within a queue only priority and age order the entries.
    base = task(3, T0, task_id="t-1", attempt=2)
    for other in (
        task(3, T0, task_id="t-1", attempt=2, app="invoices"),
        task(3, T0, task_id="t-1", attempt=2, cost=5),
    ):
        assert ready_entry(other) == ready_entry(base)


def test_attempts_of_one_task_are_distinct_entries() -> None:
    task_id = str(uuid.uuid4())
    first = ready_entry(task(0, T0, task_id=task_id, attempt=1))
    second = ready_entry(task(0, T0, task_id=task_id, attempt=2))
    assert first[1] != second[1]
    assert first[2] != second[2]


@pytest.mark.parametrize(
    ("task_id", "attempt"),
    [
        (str(uuid.uuid4()), 1),
        (str(uuid.uuid4()), 100),
        (uuid.uuid4().hex, 7),
        ("6f1c2a9e-4b7d-4c1e-9a55-0d2f7e3b8c41", 1000),
        ("task", 0),
        ("ns:task", 2),
        ("a:b:c", 12),
    ],
)
def test_running_member_round_trip(task_id: str, attempt: int) -> None:
    member = running_member(task_id, attempt)
    assert parse_running_member(member) == (task_id, attempt)


def test_running_members_of_different_attempts_never_collide() -> None:
    ids = [str(uuid.uuid4()) for _ in range(20)]
    members = {running_member(task_id, attempt) for task_id in ids for attempt in range(1, 12)}
    assert len(members) == 20 * 11


@pytest.mark.parametrize("member", ["no-colon", "task:", "task:one", ""])
def test_malformed_running_member_is_refused(member: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - int() says nothing more specific
        parse_running_member(member)
