"""Weighted fair admission (admit.lua) against the real Redis, as property tests: for
random weights, costs, caps, quotas and backlogs, under saturation each app's share of
what is dispatched follows its weight, an app alone gets all the capacity, a task at
the head of its app's queue is admitted within a bounded number of admissions, and no
cap (the algorithm's, an endpoint's, an app's quota) is ever exceeded, in cost units."""

from __future__ import annotations

import heapq
import itertools
import math
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import redis
from baton.queue import AdmissionStop, Policy, TaskQueue
from baton.records import QueuedTask, Slot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.admission import write_policy

ALGO = "ocr"
START = datetime(2026, 12, 1, tzinfo=UTC)
LEASE = START + timedelta(hours=1)
SHARE_TOLERANCE = 0.10
"""How far (relative to it) an app's share of a window may be from its weight share."""


RUN_SECONDS = 10.0


@dataclass
class Fleet:
    """One algorithm's admission driven as a saturated fleet on a clock of its own:
    every attempt runs ``RUN_SECONDS`` (unless its app's run time says otherwise), and
    the one due first finishes first. Every step checks the caps."""

    queue: TaskQueue
    policy: Policy
    run_seconds: dict[str, float] = field(default_factory=dict)
    running: list[tuple[float, int, Slot]] = field(default_factory=list)
    dispatched: list[Slot] = field(default_factory=list)
    created: itertools.count[int] = field(default_factory=itertools.count)
    clock: float = 0.0

    @property
    def now(self) -> datetime:
        return START + timedelta(seconds=self.clock)

    @property
    def running_slots(self) -> list[Slot]:
        return [slot for _, _, slot in self.running]

    def submit(self, app: str, count: int, cost: int = 1, priority: int = 0) -> list[QueuedTask]:
        tasks = [
            QueuedTask(
                f"{app}-{uuid.uuid4().hex[:8]}",
                1,
                priority,
                START + timedelta(milliseconds=next(self.created)),
                app,
                cost,
            )
            for _ in range(count)
        ]
        self.queue.enqueue(ALGO, tasks)
        return tasks

    def admit(self, limit: int = 100) -> AdmissionStop:
        admissions = self.queue.admit(ALGO, LEASE, limit, self.now)
        for slot in admissions.slots:
            ends = self.clock + self.run_seconds.get(slot.app, RUN_SECONDS)
            heapq.heappush(self.running, (ends, len(self.dispatched), slot))
            self.dispatched.append(slot)
        self.check_caps()
        return admissions.stopped

    def finish_next(self) -> Slot:
        ends, _, slot = heapq.heappop(self.running)
        self.clock = max(self.clock, ends)
        assert self.queue.release(ALGO, slot.task_id, slot.attempt, self.now)
        self.check_caps()
        return slot

    def check_caps(self) -> None:
        total = sum(slot.cost for slot in self.running_slots)
        by_endpoint = Counter[str]()
        by_app = Counter[str]()
        for slot in self.running_slots:
            by_endpoint[slot.endpoint] += slot.cost
            by_app[slot.app] += slot.cost
        assert total <= self.policy.capacity
        for url, cap in self.policy.endpoints:
            assert by_endpoint[url] <= cap, (url, by_endpoint[url], cap)
        for app, limit in (self.policy.limits or {}).items():
            assert by_app[app] <= limit, (app, by_app[app], limit)
        # Redis's own counts agree with what is running.
        state = self.queue.policy_state(ALGO)
        assert state.count("inflight") == total
        for app, cost in by_app.items():
            assert state.count(f"app:{app}") == cost


def _fleet(redis_client: redis.Redis, key_prefix: str, policy: Policy) -> Fleet:
    queue = TaskQueue(redis_client, f"{key_prefix}:{uuid.uuid4().hex[:6]}")
    write_policy(queue, ALGO, policy)
    assert queue.restore(ALGO, [], []).rebuilt
    return Fleet(queue, policy)


def _endpoints(caps: list[int]) -> list[tuple[str, int]]:
    return [(f"http://127.0.0.1:9/e{index}", cap) for index, cap in enumerate(caps)]


def _shares_in_windows(
    fleet: Fleet, weights: dict[str, float], window: int
) -> list[dict[str, float]]:
    """Each app's share of the cost dispatched, per window of ``window`` dispatches."""
    shares = []
    for start in range(0, len(fleet.dispatched) - window + 1, window):
        chunk = fleet.dispatched[start : start + window]
        cost = Counter[str]()
        for slot in chunk:
            cost[slot.app] += slot.cost
        total = sum(cost.values())
        shares.append({app: cost[app] / total for app in weights})
    return shares


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    weights=st.lists(st.sampled_from([1, 2, 3, 4, 5]), min_size=2, max_size=4),
    endpoint_caps=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    cost=st.integers(1, 2),
)
def test_under_saturation_each_app_gets_its_weight_share(
    redis_client: redis.Redis,
    key_prefix: str,
    weights: list[int],
    endpoint_caps: list[int],
    cost: int,
) -> None:
    # Given apps of random weights, each with a backlog far larger than the capacity,
    # their tasks of one cost (cost units are what is shared), on random endpoints
    apps = {f"app{index}": float(weight) for index, weight in enumerate(weights)}
    # Shares are counted in whole tasks: a window must hold 20 tasks of the smallest app
    # for one task either way to stay within its 10% (a window is 10 x cap dispatches,
    # so the capacity takes at least 2 x sum(weights) / min(weights) tasks).
    need = 2 * math.ceil(sum(weights) / min(weights)) * cost
    if sum(endpoint_caps) < need:
        endpoint_caps = [*endpoint_caps, need - sum(endpoint_caps)]
    cap = sum(endpoint_caps)
    policy = Policy(capacity=cap, endpoints=_endpoints(endpoint_caps), weights=apps)
    fleet = _fleet(redis_client, key_prefix, policy)
    window = 10 * (cap // cost)
    for app in apps:
        fleet.submit(app, 14 * window, cost)

    # When the fleet runs saturated (each finished attempt makes room for the next)
    fleet.admit()
    for _ in range(12 * window):
        fleet.finish_next()
        fleet.admit()

    # Then after a warm-up, in every window of 10 x cap dispatches, each app's share
    # stays within 10% of its weight share
    total_weight = sum(apps.values())
    windows = _shares_in_windows(fleet, apps, window)[1:]
    assert len(windows) >= 10
    for number, shares in enumerate(windows, start=1):
        for app, weight in apps.items():
            expected = weight / total_weight
            assert abs(shares[app] - expected) <= SHARE_TOLERANCE * expected, (
                f"window {number}: {app} (weight {weight}) got {shares[app]:.3f}, "
                f"its weight share is {expected:.3f}; weights {weights}, caps {endpoint_caps}"
            )


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    endpoint_caps=st.lists(st.integers(1, 8), min_size=1, max_size=3),
    weight=st.sampled_from([0.5, 1.0, 7.0]),
    limit=st.one_of(st.none(), st.integers(1, 30)),
)
def test_an_app_alone_gets_all_the_capacity_up_to_its_quota(
    redis_client: redis.Redis,
    key_prefix: str,
    endpoint_caps: list[int],
    weight: float,
    limit: int | None,
) -> None:
    cap = sum(endpoint_caps)
    policy = Policy(
        capacity=cap,
        endpoints=_endpoints(endpoint_caps),
        weights={"alone": weight},
        limits={"alone": limit} if limit is not None else None,
    )
    fleet = _fleet(redis_client, key_prefix, policy)
    fleet.submit("alone", 3 * cap)

    stopped = fleet.admit()

    expected = min(cap, limit) if limit is not None else cap
    assert len(fleet.running) == expected
    at_quota = limit is not None and limit <= cap
    assert stopped is (AdmissionStop.APP_LIMIT if at_quota else AdmissionStop.CAPACITY)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    weights=st.lists(st.sampled_from([1, 2, 4]), min_size=2, max_size=4),
    small_cap=st.integers(2, 6),
    big_cost=st.integers(2, 6),
    seed=st.integers(0, 2**16),
)
def test_a_big_task_at_its_apps_head_is_not_starved_by_smaller_ones(
    redis_client: redis.Redis,
    key_prefix: str,
    weights: list[int],
    small_cap: int,
    big_cost: int,
    seed: int,
) -> None:
    # Given one endpoint, apps that keep it full with cost-1 tasks, and one app whose
    # head costs several units
    cap = max(small_cap, big_cost)
    apps = {f"app{index}": float(weight) for index, weight in enumerate(weights)}
    apps["big"] = 1.0
    policy = Policy(capacity=cap, endpoints=_endpoints([cap]), weights=apps)
    fleet = _fleet(redis_client, key_prefix, policy)
    for app in apps:
        if app != "big":
            fleet.submit(app, 60 * cap)
    fleet.admit()
    [big] = fleet.submit("big", 1, cost=big_cost)

    # When the small tasks keep finishing and being replaced
    admissions_before = 0
    while not any(slot.task_id == big.task_id for slot in fleet.running_slots):
        before = len(fleet.dispatched)
        fleet.finish_next()
        fleet.admit()
        admissions_before += (
            len(fleet.dispatched)
            - before
            - (1 if any(s.task_id == big.task_id for s in fleet.dispatched[before:]) else 0)
        )
        assert admissions_before <= 2 * cap * len(apps), "the big task waits without end"

    # Then it went within a bound: the capacity drained to make room for it, no more
    assert admissions_before <= cap * len(apps)


def test_a_task_that_can_never_fit_is_passed_over(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # A registry change shrank the endpoints below a queued task's cost: it must not
    # hold everyone else back (it ends failed after the policy grace, elsewhere).
    policy = Policy(capacity=2, endpoints=_endpoints([2]))
    fleet = _fleet(redis_client, key_prefix, policy)
    fleet.submit("a", 1, cost=3)
    small = fleet.submit("b", 2)

    fleet.admit()

    assert [slot.task_id for slot in fleet.running_slots] == [task.task_id for task in small]


@pytest.mark.parametrize("weights", [(1.0, 1.0), (4.0, 1.0), (1.0, 3.0)])
def test_ties_go_to_the_oldest_head_and_shares_start_at_once(
    redis_client: redis.Redis, key_prefix: str, weights: tuple[float, float]
) -> None:
    # From an empty fleet, the first admissions already alternate by weight: the app
    # furthest below its share goes first, the oldest head breaks a tie.
    policy = Policy(
        capacity=10, endpoints=_endpoints([10]), weights=dict(zip("ab", weights, strict=True))
    )
    fleet = _fleet(redis_client, key_prefix, policy)
    fleet.submit("a", 20)
    fleet.submit("b", 20)

    fleet.admit()

    counts = Counter(slot.app for slot in fleet.running_slots)
    assert counts["a"] + counts["b"] == 10
    expected_a = 10 * weights[0] / sum(weights)
    assert abs(counts["a"] - expected_a) <= 1
    assert fleet.dispatched[0].app == "a"  # equal passes at 0: the older head


def test_capacity_time_is_shared_when_one_apps_tasks_run_longer(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # Given two apps of equal weight, the bulk one's tasks running five times longer
    cap = 10
    policy = Policy(capacity=cap, endpoints=_endpoints([cap]), weights={"bulk": 1, "portal": 1})
    fleet = _fleet(redis_client, key_prefix, policy)
    fleet.run_seconds = {"bulk": 5 * RUN_SECONDS}
    fleet.submit("bulk", 2000)
    fleet.submit("portal", 2000)

    # When the fleet runs saturated for a while
    fleet.admit()
    held: defaultdict[str, float] = defaultdict(float)  # capacity-seconds each app held
    for _ in range(1500):
        before = fleet.clock
        in_flight = Counter(slot.app for slot in fleet.running_slots)
        fleet.finish_next()
        if fleet.clock > 20 * RUN_SECONDS:  # after a warm-up
            for app, count in in_flight.items():
                held[app] += count * (fleet.clock - before)
        fleet.admit()

    # Then each held about half the capacity over time (not half the dispatches: the
    # portal's short tasks went out about five times as often)
    share = held["bulk"] / (held["bulk"] + held["portal"])
    assert 0.4 <= share <= 0.6, share
    dispatched = Counter(slot.app for slot in fleet.dispatched)
    assert dispatched["portal"] > 3 * dispatched["bulk"]
