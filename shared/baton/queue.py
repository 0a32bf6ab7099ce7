"""The Redis side: per algorithm, a ready queue per app ordered by priority then age, a
running set of attempts scored by deadline, the in-flight cost per algorithm, app and
endpoint, and the live scheduling policy that admission enforces.

Keys are hash-tagged per algorithm (``baton:{ocr}:ready:<app>``) so each script
touches one cluster slot, and every key a script touches is passed in KEYS (the
per-app ready queues too: the caller names the apps, and a script that meets an app
it was not given asks again). An epoch marker, written only by reconcile, tells
admission that the state is whole: after a flush or failover the marker is gone and
nothing is admitted until reconcile has rebuilt the state from the database.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from importlib import resources
from typing import Any, cast

import redis

from baton.errors import RedisStateLost
from baton.records import ActiveAttempt, QueuedTask, Slot


def _load_script(name: str) -> str:
    return resources.files("baton").joinpath("lua", f"{name}.lua").read_text()


def running_member(task_id: str, attempt: int) -> str:
    return f"{task_id}:{attempt}"


def parse_running_member(member: str) -> tuple[str, int]:
    task_id, _, attempt = member.rpartition(":")
    return task_id, int(attempt)


def ready_entry(task: QueuedTask) -> tuple[float, str, str]:
    """(score, ready member, running member): score orders by priority, the member's
    zero-padded creation time orders equal priorities oldest first."""
    created_ms = int(task.created_at.timestamp() * 1000)
    member = running_member(task.task_id, task.attempt)
    return float(-task.priority), f"{created_ms:015d}:{member}", member


def _score(moment: datetime) -> float:
    return moment.timestamp()


class SlotConfirmation(StrEnum):
    OK = "ok"
    FULL = "full"
    LOST = "lost"
    RATE_LIMITED = "rate"  # the slot is kept; confirm again once a request is left


class AdmissionStop(StrEnum):
    """Why an admission call stopped admitting."""

    LIMIT = "limit"  # it admitted as many as asked
    EMPTY = "empty"  # no app has a ready task that may go
    APP_LIMIT = "app_limit"  # the apps with ready tasks are at their quotas
    CAPACITY = "capacity"  # the next task waits for room (it is reserved)
    COOLING_DOWN = "cooling_down"  # room only on endpoints that cool down
    RATE_LIMIT = "rate_limit"  # the rate limit has no request left
    PAUSED = "paused"  # the registry or an operator paused the algorithm


@dataclass(frozen=True)
class Admissions:
    slots: list[Slot]
    stopped: AdmissionStop


@dataclass(frozen=True)
class RestoreReport:
    rebuilt: bool
    running_added: int
    ready_added: int
    stale: bool = False  # refused: the snapshot was read before Redis lost its data


SNAPSHOT_MARK_MS = 600_000
"""How long a snapshot mark outlives a reconcile that died before restoring."""

ADMIT_TRIES = 4
"""Calls of admit.lua per admission: it asks again when the policy is missing or an
app with ready tasks was not passed (each retry names every app it has seen)."""


@dataclass(frozen=True)
class AlgorithmKeys:
    """Every key of one algorithm, from one helper so that no name is built twice."""

    base: str
    ready_prefix: str
    apps: str
    running: str
    attempts: str
    counts: str
    policy: str
    hold: str
    epoch: str
    cooldown: str
    rate: str
    reserve: str

    def ready(self, app: str) -> str:
        return f"{self.ready_prefix}{app}"


@dataclass(frozen=True)
class Policy:
    """What admission enforces for one algorithm, as written to its policy hash."""

    capacity: int
    endpoints: Sequence[tuple[str, int]]  # (url, max_concurrency)
    paused: bool = False
    rate_interval_seconds: float = 0.0  # 0: no rate limit
    rate_burst: int = 1
    weights: Mapping[str, float] | None = None  # app -> weight (default 1)
    limits: Mapping[str, int] | None = None  # app -> most cost in flight

    def fields(self) -> dict[str, str]:
        values = {
            "cap": str(self.capacity),
            "endpoints": str(len(self.endpoints)),
            "paused": "1" if self.paused else "0",
            "rate_interval": repr(float(self.rate_interval_seconds)),
            "rate_burst": str(self.rate_burst),
        }
        for index, (url, cap) in enumerate(self.endpoints, start=1):
            values[f"url:{index}"] = url
            values[f"cap:{index}"] = str(cap)
        for app, weight in sorted((self.weights or {}).items()):
            values[f"weight:{app}"] = repr(float(weight))
        for app, limit in sorted((self.limits or {}).items()):
            values[f"limit:{app}"] = str(limit)
        return values


@dataclass(frozen=True)
class PolicyState:
    """What a reader needs to say why a task waits: the policy and the live counts."""

    policy: dict[str, str]
    counts: dict[str, str]
    cooldown: dict[str, float]
    rate_tat: float
    held: bool
    whole: bool  # the epoch marker is there: the state is not being rebuilt

    def count(self, field: str) -> int:
        return int(self.counts.get(field, "0"))


class TaskQueue:
    """The Lua scripts, registered once per cold start, and the reads around them."""

    def __init__(self, client: redis.Redis | redis.RedisCluster, prefix: str = "baton") -> None:
        self._client = client
        self._prefix = prefix
        self._enqueue = client.register_script(_load_script("enqueue"))
        self._admit = client.register_script(_load_script("admit"))
        self._confirm = client.register_script(_load_script("confirm"))
        self._restore = client.register_script(_load_script("restore"))
        self._release = client.register_script(_load_script("release"))
        self._write_policy = client.register_script(_load_script("policy"))
        self._cool_down = client.register_script(_load_script("cooldown"))
        # The apps seen with ready tasks, per algorithm: admit.lua must be given every
        # one of their queues, and asks again when it meets one it was not given.
        self._known_apps: dict[str, set[str]] = {}
        self._apps_lock = threading.Lock()

    @property
    def client(self) -> redis.Redis | redis.RedisCluster:
        return self._client

    def keys(self, algorithm: str) -> AlgorithmKeys:
        base = f"{self._prefix}:{{{algorithm}}}"
        return AlgorithmKeys(
            base=base,
            ready_prefix=f"{base}:ready:",
            apps=f"{base}:apps",
            running=f"{base}:running",
            attempts=f"{base}:attempts",
            counts=f"{base}:counts",
            policy=f"{base}:policy",
            hold=f"{base}:hold",
            epoch=f"{base}:epoch",
            cooldown=f"{base}:cooldown",
            rate=f"{base}:rate",
            reserve=f"{base}:reserve",
        )

    def _apps_of(self, algorithm: str) -> list[str]:
        with self._apps_lock:
            return sorted(self._known_apps.get(algorithm, ()))

    def _learn_apps(self, algorithm: str, apps: Iterable[str]) -> None:
        with self._apps_lock:
            self._known_apps.setdefault(algorithm, set()).update(apps)

    # -- policy -------------------------------------------------------------------------

    def write_policy(
        self,
        algorithm: str,
        policy: Policy,
        digest: str,
        algorithms_taken_at: float,
        apps_taken_at: float,
    ) -> bool:
        """Write the policy unless Redis holds the same one, or one from newer registries."""
        pairs = [part for item in policy.fields().items() for part in item]
        written = self._write_policy(
            keys=[self.keys(algorithm).policy],
            args=[digest, repr(algorithms_taken_at), repr(apps_taken_at), *pairs],
        )
        return bool(written)

    def policy_digest(self, algorithm: str) -> str | None:
        value = self._client.hget(self.keys(algorithm).policy, "digest")
        return None if value is None else _text(value)

    def hold(self, algorithm: str, held: bool) -> None:
        """An operator's pause, or its end; the database keeps it durably."""
        key = self.keys(algorithm).hold
        if held:
            self._client.set(key, "1")
        else:
            self._client.delete(key)

    def policy_state(self, algorithm: str) -> PolicyState:
        keys = self.keys(algorithm)
        pipe = self._client.pipeline(transaction=False)
        pipe.hgetall(keys.policy)
        pipe.hgetall(keys.counts)
        pipe.hgetall(keys.cooldown)
        pipe.get(keys.rate)
        pipe.exists(keys.hold)
        pipe.exists(keys.epoch)
        policy, counts, cooldown, rate, held, whole = pipe.execute()
        return PolicyState(
            policy={_text(k): _text(v) for k, v in policy.items()},
            counts={_text(k): _text(v) for k, v in counts.items()},
            cooldown={_text(k): float(v) for k, v in cooldown.items()},
            rate_tat=float(rate) if rate is not None else 0.0,
            held=bool(held),
            whole=bool(whole),
        )

    # -- the lifecycle ------------------------------------------------------------------

    def enqueue(self, algorithm: str, tasks: Iterable[QueuedTask]) -> int:
        """Step 5: add promoted tasks to their apps' ready queues (enqueue.lua)."""
        tasks = list(tasks)
        if not tasks:
            return 0
        keys = self.keys(algorithm)
        apps = sorted({task.app for task in tasks})
        index = {app: position for position, app in enumerate(apps, start=1)}
        entries: list[Any] = []
        for task in tasks:
            entries += [index[task.app], *ready_entry(task), task.cost]
        added = self._enqueue(
            keys=[keys.running, keys.attempts, keys.counts, keys.apps]
            + [keys.ready(app) for app in apps],
            args=[len(apps), *apps, *entries],
        )
        self._learn_apps(algorithm, apps)
        return int(added)

    def admit(
        self,
        algorithm: str,
        lease_until: datetime,
        limit: int,
        now: datetime | None = None,
        *,
        write_policy: Any = None,
    ) -> Admissions:
        """Step 5: take up to ``limit`` ready attempts into free capacity, by the policy.

        ``write_policy`` (called with no argument) writes the policy when Redis has
        none; without it a missing policy counts as lost state.
        """
        keys = self.keys(algorithm)
        moment = _score(now or datetime.now(UTC))
        for _ in range(ADMIT_TRIES):
            apps = self._apps_of(algorithm)
            answer = self._admit(
                keys=[
                    keys.policy,
                    keys.epoch,
                    keys.hold,
                    keys.running,
                    keys.attempts,
                    keys.counts,
                    keys.cooldown,
                    keys.rate,
                    keys.reserve,
                    keys.apps,
                    *[keys.ready(app) for app in apps],
                ],
                args=[_score(lease_until), limit, moment, *apps],
            )
            if answer is None:
                raise RedisStateLost(algorithm)
            kind = _text(answer[0])
            if kind == "apps":
                self._learn_apps(algorithm, (_text(app) for app in answer[1:]))
                continue
            if kind == "policy":
                if write_policy is None:
                    raise RedisStateLost(algorithm)
                write_policy()
                continue
            slots = []
            for at in range(2, len(answer), 4):
                member, url, app, cost = answer[at : at + 4]
                task_id, attempt = parse_running_member(_text(member))
                slots.append(Slot(task_id, attempt, _text(app), int(cost), _text(url)))
            return Admissions(slots, AdmissionStop(_text(answer[1])))
        raise RedisStateLost(algorithm)

    def confirm_slot(
        self, algorithm: str, slot: Slot, deadline: datetime, now: datetime | None = None
    ) -> SlotConfirmation:
        """Step 9: once the attempt row is committed, take one request from the rate
        limit and score the slot by the attempt's deadline; or say the slot was lost
        (Redis rebuilt) or taken, or that the rate limit has no request left (confirm.lua)."""
        keys = self.keys(algorithm)
        answer = self._confirm(
            keys=[keys.running, keys.epoch, keys.attempts, keys.counts, keys.policy, keys.rate],
            args=[
                running_member(slot.task_id, slot.attempt),
                _score(deadline),
                slot.app,
                slot.cost,
                slot.endpoint,
                _score(now or datetime.now(UTC)),
            ],
        )
        return SlotConfirmation(_text(answer))

    def rate_wait_seconds(self, algorithm: str, now: datetime) -> float:
        """How long until the algorithm's rate limit has a request left (0: now)."""
        state = self.policy_state(algorithm)
        interval = float(state.policy.get("rate_interval", "0"))
        if interval <= 0:
            return 0.0
        tolerance = (int(state.policy.get("rate_burst", "1")) - 1) * interval
        return max(0.0, state.rate_tat - _score(now) - tolerance)

    def cool_down(
        self, algorithm: str, endpoint: str, until: datetime, now: datetime | None = None
    ) -> None:
        """Admit nothing more to this endpoint until ``until`` (it said it is busy or
        failing); slots already held, and the other endpoints, are not affected."""
        self._cool_down(
            keys=[self.keys(algorithm).cooldown],
            args=[endpoint, repr(_score(until)), _score(now or datetime.now(UTC))],
        )

    def cooling_until(
        self, algorithm: str, endpoint: str, now: datetime | None = None
    ) -> datetime | None:
        """When the endpoint's cool-down ends, or None if it is not cooling down."""
        value = self._client.hget(self.keys(algorithm).cooldown, endpoint)
        if value is None or float(value) <= _score(now or datetime.now(UTC)):
            return None
        return datetime.fromtimestamp(float(value), UTC)

    def extend_slot(self, algorithm: str, task_id: str, attempt: int, deadline: datetime) -> None:
        """Move a held slot's deadline (heartbeat); never creates a slot."""
        self._client.zadd(
            self.keys(algorithm).running,
            {running_member(task_id, attempt): _score(deadline)},
            xx=True,
        )

    def release(
        self, algorithm: str, task_id: str, attempt: int, now: datetime | None = None
    ) -> bool:
        """Step 13: free the slot of one attempt, give its cost back, and settle its
        app's pass by how long it ran (``now``). Members are per attempt, so a late
        release of attempt N can never free the slot of attempt N+1."""
        keys = self.keys(algorithm)
        released = self._release(
            keys=[keys.running, keys.attempts, keys.counts, keys.policy],
            args=[running_member(task_id, attempt), _score(now or datetime.now(UTC))],
        )
        return bool(released)

    def release_lease(
        self,
        algorithm: str,
        task_id: str,
        attempt: int,
        score: float,
        now: datetime | None = None,
    ) -> bool:
        """Free an admission's slot only if its score is still ``score`` (the expired
        lease seen): a worker that started the attempt has confirmed it since, and keeps it."""
        keys = self.keys(algorithm)
        released = self._release(
            keys=[keys.running, keys.attempts, keys.counts, keys.policy],
            args=[running_member(task_id, attempt), _score(now or datetime.now(UTC)), score],
        )
        return bool(released)

    # -- reads --------------------------------------------------------------------------

    def running(self, algorithm: str) -> dict[tuple[str, int], datetime]:
        members = cast(
            "list[tuple[bytes, float]]",
            self._client.zrange(self.keys(algorithm).running, 0, -1, withscores=True),
        )
        return {
            parse_running_member(_text(member)): datetime.fromtimestamp(score, UTC)
            for member, score in members
        }

    def overdue(self, algorithm: str, now: datetime, limit: int) -> list[tuple[str, int]]:
        members = self._client.zrangebyscore(
            self.keys(algorithm).running, "-inf", _score(now), start=0, num=limit
        )
        return [parse_running_member(_text(member)) for member in members]

    def overdue_slots(
        self, algorithm: str, now: datetime, limit: int
    ) -> list[tuple[str, int, float]]:
        """As ``overdue``, with each slot's score (for ``release_lease``)."""
        members = cast(
            "list[tuple[bytes, float]]",
            self._client.zrangebyscore(
                self.keys(algorithm).running,
                "-inf",
                _score(now),
                start=0,
                num=limit,
                withscores=True,
            ),
        )
        return [(*parse_running_member(_text(member)), float(score)) for member, score in members]

    def running_count(self, algorithm: str) -> int:
        return int(self._client.zcard(self.keys(algorithm).running))

    def inflight_cost(self, algorithm: str) -> int:
        return int(self._client.hget(self.keys(algorithm).counts, "inflight") or 0)

    def ready_count(self, algorithm: str) -> int:
        return int(self._client.hget(self.keys(algorithm).counts, "ready") or 0)

    def ready_counts(self, algorithm: str, apps: Iterable[str]) -> dict[str, int]:
        """The ready tasks of each of ``apps`` (one round trip)."""
        apps = list(apps)
        keys = self.keys(algorithm)
        pipe = self._client.pipeline(transaction=False)
        for app in apps:
            pipe.zcard(keys.ready(app))
        return {app: int(count) for app, count in zip(apps, pipe.execute(), strict=True)}

    def apps_with_ready_tasks(self, algorithm: str) -> set[str]:
        return {_text(app) for app in self._client.smembers(self.keys(algorithm).apps)}

    def ready_members(self, algorithm: str) -> set[tuple[str, int]]:
        keys = self.keys(algorithm)
        result = set()
        for app in self.apps_with_ready_tasks(algorithm) | set(self._apps_of(algorithm)):
            for entry in self._client.zrange(keys.ready(app), 0, -1):
                _, _, member = _text(entry).partition(":")
                result.add(parse_running_member(member))
        return result

    def has_state(self, algorithm: str) -> bool:
        return bool(self._client.exists(self.keys(algorithm).epoch))

    # -- reconcile ----------------------------------------------------------------------

    def mark_snapshot(self, algorithm: str) -> str:
        """Mark the moment before a reconcile reads the database; pass the mark to
        ``restore``. If Redis loses its data in between, the mark goes with it and
        ``restore`` refuses to rebuild from a read that may miss attempts sent meanwhile."""
        mark = secrets.token_hex(8)
        self._client.set(self._snapshot_key(algorithm, mark), 1, px=SNAPSHOT_MARK_MS)
        return mark

    def _snapshot_key(self, algorithm: str, mark: str) -> str:
        return f"{self.keys(algorithm).base}:snapshot:{mark}"

    def restore(
        self,
        algorithm: str,
        active: Iterable[ActiveAttempt],
        queued: Iterable[QueuedTask],
        snapshot: str | None = None,
        *,
        held: bool = False,
    ) -> RestoreReport:
        """Add what the database says to Redis (``active`` and ``queued`` read after
        ``mark_snapshot`` returned ``snapshot``), put the operator's pause (``held``)
        back, recount, and set the epoch if it was missing."""
        keys = self.keys(algorithm)
        queued = list(queued)
        apps = sorted(
            {task.app for task in queued}
            | self.apps_with_ready_tasks(algorithm)
            | set(self._apps_of(algorithm))
        )
        index = {app: position for position, app in enumerate(apps, start=1)}
        running_args: list[Any] = []
        for attempt in active:
            running_args += [
                _score(attempt.deadline),
                running_member(attempt.task_id, attempt.attempt),
                attempt.app,
                attempt.cost,
                attempt.endpoint,
            ]
        ready_args: list[Any] = []
        for task in queued:
            ready_args += [index[task.app], *ready_entry(task), task.cost]
        rebuilt, running_added, ready_added = cast(
            "list[int]",
            self._restore(
                keys=[
                    keys.epoch,
                    keys.running,
                    keys.attempts,
                    keys.counts,
                    keys.apps,
                    keys.hold,
                    self._snapshot_key(algorithm, snapshot or "none"),
                    *[keys.ready(app) for app in apps],
                ],
                args=[
                    secrets.token_hex(8),
                    "1" if snapshot is not None else "0",
                    "1" if held else "0",
                    len(apps),
                    *apps,
                    len(running_args) // 5,
                    *running_args,
                    *ready_args,
                ],
            ),
        )
        self._learn_apps(algorithm, apps)
        if int(rebuilt) < 0:
            return RestoreReport(rebuilt=False, running_added=0, ready_added=0, stale=True)
        return RestoreReport(bool(rebuilt), int(running_added), int(ready_added))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
