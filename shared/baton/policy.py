"""The live scheduling policy: what admission enforces for each algorithm (its cap,
endpoints, rate limit and pause from the algorithm registry; each app's weight and
quota from the app registry), written to Redis where admission reads it atomically.

Every function writes the policy from its own copy of the registries when it has not
done so for ``BATON_POLICY_REFRESH_SECONDS`` (and reconcile always does), but a copy
older than the one in Redis is never written over a newer one: so after a registry
change every warm function enforces the new policy within the refresh period, and no
two functions ever enforce different caps.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from baton.queue import Policy, TaskQueue
from baton.registry import AlgorithmConfig
from baton.settings import Config


class AppShare(Protocol):
    """What the policy needs of an app registry entry."""

    @property
    def weight(self) -> float: ...

    def limit_for(self, algorithm: str) -> int | None: ...


def build_policy(
    algorithm: str, config: AlgorithmConfig, apps: Mapping[str, AppShare] | None
) -> Policy:
    """The policy of one algorithm; without an app registry every app weighs 1."""
    rate = config.rate_limit
    weights = {name: app.weight for name, app in (apps or {}).items() if app.weight != 1}
    limits: dict[str, int] = {}
    for name, app in (apps or {}).items():
        limit = app.limit_for(algorithm)
        if limit is not None:
            limits[name] = limit
    return Policy(
        capacity=config.capacity,
        endpoints=[(str(e.url), e.max_concurrency) for e in config.endpoint_list],
        paused=config.paused,
        rate_interval_seconds=rate.interval_seconds if rate else 0.0,
        rate_burst=rate.burst_size if rate else 1,
        weights=weights,
        limits=limits,
    )


def policy_digest(policy: Policy) -> str:
    canonical = json.dumps(policy.fields(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class PolicyWriter:
    """Writes each algorithm's policy once per refresh period per process, at once when
    this process took a new copy of a registry, and when Redis has none."""

    def __init__(
        self,
        queue: TaskQueue,
        refresh_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queue = queue
        self._refresh = refresh_seconds
        self._monotonic = monotonic
        self._written: dict[str, tuple[float, object, object]] = {}
        self._lock = threading.Lock()

    def due(self, config: Config, algorithm: str) -> bool:
        # Reading the registries re-reads them when their refresh is due: a new copy
        # (a new object; an unchanged re-read keeps the old one) is written at once.
        registries = config.registries
        algorithms, apps = registries.algorithms_taken(), registries.apps_taken()
        with self._lock:
            last = self._written.get(algorithm)
        if last is None:
            return True
        written_at, algorithms_written, apps_written = last
        apps_value = apps.value if apps is not None else None
        return (
            algorithms.value is not algorithms_written
            or apps_value is not apps_written
            or self._monotonic() - written_at >= self._refresh
        )

    def write(self, config: Config, algorithm: str) -> bool:
        """Write the algorithm's policy from ``config``'s registries (compare-and-set: a
        copy older than Redis's is refused there) and remember when; True if Redis took it."""
        registries = config.registries
        algorithms, apps = registries.algorithms_taken(), registries.apps_taken()
        if algorithm not in algorithms.value:
            return False  # it left the registry since the caller looked
        policy = build_policy(
            algorithm, algorithms.value[algorithm], apps.value.apps if apps is not None else None
        )
        written = self._queue.write_policy(
            algorithm,
            policy,
            policy_digest(policy),
            algorithms.taken_at.timestamp(),
            apps.taken_at.timestamp() if apps is not None else 0.0,
        )
        with self._lock:
            self._written[algorithm] = (
                self._monotonic(),
                algorithms.value,
                apps.value if apps is not None else None,
            )
        return written
