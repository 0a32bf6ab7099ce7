"""The Redis side: per algorithm, a ready queue ordered by priority then age, and a
running set of attempts scored by deadline whose size is the concurrency in use.

Keys are hash-tagged per algorithm (``baton:{ocr}:ready``) so each script touches one
cluster slot. An epoch marker, written only by reconcile, tells admission that the
state is whole: after a flush or failover the marker is gone and nothing is admitted
until reconcile has rebuilt the running set from the database.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from importlib import resources
from typing import Any, cast

import redis

from baton.errors import RedisStateLost
from baton.records import ActiveAttempt, QueuedTask


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


@dataclass(frozen=True)
class RestoreReport:
    rebuilt: bool
    running_added: int
    ready_added: int
    stale: bool = False  # refused: the snapshot was read before Redis lost its data


SNAPSHOT_MARK_MS = 600_000
"""How long a snapshot mark outlives a reconcile that died before restoring."""


@dataclass(frozen=True)
class AlgorithmKeys:
    ready: str
    running: str
    epoch: str
    cooldown: str


class TaskQueue:
    """The Lua scripts, registered once per cold start, and the reads around them."""

    def __init__(self, client: redis.Redis | redis.RedisCluster, prefix: str = "baton") -> None:
        self._client = client
        self._prefix = prefix
        self._enqueue = client.register_script(_load_script("enqueue"))
        self._admit = client.register_script(_load_script("admit"))
        self._confirm = client.register_script(_load_script("confirm"))
        self._restore = client.register_script(_load_script("restore"))
        self._release_lease = client.register_script(_load_script("release_lease"))

    @property
    def client(self) -> redis.Redis | redis.RedisCluster:
        return self._client

    def keys(self, algorithm: str) -> AlgorithmKeys:
        base = f"{self._prefix}:{{{algorithm}}}"
        return AlgorithmKeys(
            ready=f"{base}:ready",
            running=f"{base}:running",
            epoch=f"{base}:epoch",
            cooldown=f"{base}:cooldown",
        )

    def enqueue(self, algorithm: str, tasks: Iterable[QueuedTask]) -> int:
        """Step 5: add promoted tasks to the algorithm's ready queue (enqueue.lua)."""
        args: list[Any] = [part for task in tasks for part in ready_entry(task)]
        if not args:
            return 0
        keys = self.keys(algorithm)
        return int(self._enqueue(keys=[keys.ready, keys.running], args=args))

    def admit(
        self,
        algorithm: str,
        max_concurrency: int,
        lease_until: datetime,
        limit: int,
        now: datetime | None = None,
    ) -> list[tuple[str, int]]:
        """Step 5: take up to ``limit`` ready attempts into free slots; [] when full or empty."""
        keys = self.keys(algorithm)
        admitted = self._admit(
            keys=[keys.ready, keys.running, keys.epoch, keys.cooldown],
            args=[max_concurrency, _score(lease_until), limit, _score(now or datetime.now(UTC))],
        )
        if admitted is None:
            raise RedisStateLost(algorithm)
        return [parse_running_member(_text(member)) for member in admitted]

    def confirm_slot(
        self,
        algorithm: str,
        task_id: str,
        attempt: int,
        deadline: datetime,
        max_concurrency: int,
    ) -> SlotConfirmation:
        """Step 9: once the attempt row is committed, score its slot by the
        attempt's deadline, or say the slot was lost (Redis rebuilt) or taken (confirm.lua)."""
        keys = self.keys(algorithm)
        answer = self._confirm(
            keys=[keys.running, keys.epoch],
            args=[running_member(task_id, attempt), _score(deadline), max_concurrency],
        )
        return SlotConfirmation(_text(answer))

    def cool_down(self, algorithm: str, until: datetime, now: datetime) -> None:
        """Admit nothing more for this algorithm until ``until`` (it said it is busy or
        failing); slots already held are not affected. The key expires a minute after
        the pause, so a forgotten one cannot linger."""
        key = self.keys(algorithm).cooldown
        current = self._client.get(key)
        if current is not None and float(current) >= _score(until):
            return
        ttl_ms = int((until - now).total_seconds() * 1000) + 60_000
        self._client.set(key, repr(_score(until)), px=max(ttl_ms, 1))

    def paused_until(self, algorithm: str) -> datetime | None:
        value = self._client.get(self.keys(algorithm).cooldown)
        return None if value is None else datetime.fromtimestamp(float(value), UTC)

    def extend_slot(self, algorithm: str, task_id: str, attempt: int, deadline: datetime) -> None:
        """Move a held slot's deadline (heartbeat); never creates a slot."""
        self._client.zadd(
            self.keys(algorithm).running,
            {running_member(task_id, attempt): _score(deadline)},
            xx=True,
        )

    def release(self, algorithm: str, task_id: str, attempt: int) -> bool:
        """Step 13: free the slot of one attempt. Members are per attempt, so a late
        release of attempt N can never free the slot of attempt N+1."""
        removed = self._client.zrem(self.keys(algorithm).running, running_member(task_id, attempt))
        return bool(removed)

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

    def release_lease(self, algorithm: str, task_id: str, attempt: int, score: float) -> bool:
        """Free an admission's slot only if its score is still ``score`` (the expired
        lease seen): a worker that started the attempt has confirmed it since, and keeps it."""
        released = self._release_lease(
            keys=[self.keys(algorithm).running], args=[running_member(task_id, attempt), score]
        )
        return bool(released)

    def running_count(self, algorithm: str) -> int:
        return int(self._client.zcard(self.keys(algorithm).running))

    def ready_count(self, algorithm: str) -> int:
        return int(self._client.zcard(self.keys(algorithm).ready))

    def ready_members(self, algorithm: str) -> set[tuple[str, int]]:
        entries = self._client.zrange(self.keys(algorithm).ready, 0, -1)
        result = set()
        for entry in entries:
            _, _, member = _text(entry).partition(":")
            result.add(parse_running_member(member))
        return result

    def has_state(self, algorithm: str) -> bool:
        return bool(self._client.exists(self.keys(algorithm).epoch))

    def mark_snapshot(self, algorithm: str) -> str:
        """Mark the moment before a reconcile reads the database; pass the mark to
        ``restore``. If Redis loses its data in between, the mark goes with it and
        ``restore`` refuses to rebuild from a read that may miss attempts sent meanwhile."""
        mark = secrets.token_hex(8)
        self._client.set(self._snapshot_key(algorithm, mark), 1, px=SNAPSHOT_MARK_MS)
        return mark

    def _snapshot_key(self, algorithm: str, mark: str) -> str:
        return f"{self._prefix}:{{{algorithm}}}:snapshot:{mark}"

    def restore(
        self,
        algorithm: str,
        active: Iterable[ActiveAttempt],
        queued: Iterable[QueuedTask],
        snapshot: str | None = None,
    ) -> RestoreReport:
        """Add what the database says to Redis (``active`` and ``queued`` read after
        ``mark_snapshot`` returned ``snapshot``); set the epoch if it was missing."""
        running_args: list[Any] = []
        for attempt in active:
            running_args += [
                _score(attempt.deadline),
                running_member(attempt.task_id, attempt.attempt),
            ]
        ready_args: list[Any] = [part for task in queued for part in ready_entry(task)]
        keys = self.keys(algorithm)
        script_keys = [keys.ready, keys.running, keys.epoch]
        if snapshot is not None:
            script_keys.append(self._snapshot_key(algorithm, snapshot))
        rebuilt, running_added, ready_added = cast(
            "list[int]",
            self._restore(
                keys=script_keys,
                args=[secrets.token_hex(8), len(running_args) // 2, *running_args, *ready_args],
            ),
        )
        if int(rebuilt) < 0:
            return RestoreReport(rebuilt=False, running_added=0, ready_added=0, stale=True)
        return RestoreReport(bool(rebuilt), int(running_added), int(ready_added))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
