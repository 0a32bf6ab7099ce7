"""The registries in force: the algorithm registry and the optional app registry,
each read from its source at cold start and, when that source is an SSM parameter,
read again once the copy in force is older than ``BATON_POLICY_REFRESH_SECONDS``, so
that a warm function follows a change without a cold start.

A registry given as JSON in the environment never changes within a process. A new
value that is invalid (or a parameter that cannot be read) is not taken: the copy in
force stays, and the problem is logged naming the source (never the value) and counted
as the metric ``RegistryRejected``. At cold start there is no copy to keep, so the
same problem fails the start (``SettingsError``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from baton.apps import AppRegistry
from baton.errors import SettingsError
from baton.observability import REGISTRY_REJECTED, count, logger
from baton.registry import AlgorithmRegistry

T = TypeVar("T")

Parser = Callable[[str, str], T]
"""``parse(text, source)``: the registry, or ``SettingsError`` naming the source."""

Fetcher = Callable[[], str]
WallClock = Callable[[], datetime]
Monotonic = Callable[[], float]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Taken(Generic[T]):
    """A registry as taken from its source, and when."""

    value: T
    source: str
    taken_at: datetime
    """When this content was last read from its source and found valid (for a registry
    from the environment: the cold start). Never goes back within a process, so of two
    copies of the policy built from these, the one taken later may win."""


class RegistrySource(Generic[T]):
    """One registry and the variable it comes from, re-read when due."""

    def __init__(
        self,
        source: str,
        parse: Parser[T],
        text: str,
        *,
        fetch: Fetcher | None = None,
        refresh_seconds: float = 60.0,
        clock: WallClock = utc_now,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        self._source = source
        self._parse = parse
        self._fetch = fetch
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._taken = Taken(parse(text, source), source, clock())
        self._text = text
        self._checked = monotonic()

    @classmethod
    def fixed(
        cls, source: str, parse: Parser[T], text: str, clock: WallClock = utc_now
    ) -> RegistrySource[T]:
        """A registry given as a value: read once, never again."""
        return cls(source, parse, text, clock=clock)

    @classmethod
    def fetched(
        cls,
        source: str,
        parse: Parser[T],
        fetch: Fetcher,
        *,
        refresh_seconds: float,
        clock: WallClock = utc_now,
        monotonic: Monotonic = time.monotonic,
    ) -> RegistrySource[T]:
        """A registry behind a fetch (an SSM parameter): read now, and again when due."""
        try:
            text = fetch()
        except SettingsError as exc:
            raise SettingsError(f"{source}: {exc}") from None
        return cls(
            source,
            parse,
            text,
            fetch=fetch,
            refresh_seconds=refresh_seconds,
            clock=clock,
            monotonic=monotonic,
        )

    @property
    def source(self) -> str:
        return self._source

    @property
    def refreshes(self) -> bool:
        return self._fetch is not None

    def current(self) -> Taken[T]:
        """The copy in force, re-read first when it is older than the refresh period."""
        if self._fetch is not None and self._due():
            # One re-read per period, even when several threads find it due at once.
            with self._lock:
                if self._due():
                    self._reread(self._fetch)
        return self._taken

    def _due(self) -> bool:
        return self._monotonic() - self._checked >= self._refresh_seconds

    def _reread(self, fetch: Fetcher) -> None:
        # Marked checked before the read: a source that keeps failing is tried once
        # per period, not on every access.
        self._checked = self._monotonic()
        try:
            text = fetch()
            value = self._taken.value if text == self._text else self._parse(text, self._source)
        except SettingsError as exc:
            reason = str(exc)
            if not reason.startswith(self._source):
                reason = f"{self._source}: {reason}"
            logger.error(
                "registry not taken: the one in force stays",
                source=self._source,
                reason=reason,
                in_force_since=self._taken.taken_at.isoformat(),
            )
            count(REGISTRY_REJECTED)
            return
        if text != self._text:
            logger.info("registry changed", source=self._source)
        self._text = text
        self._taken = Taken(value, self._source, max(self._clock(), self._taken.taken_at))


class Registries:
    """The algorithm registry and the app registry (None: open mode) in force."""

    def __init__(
        self,
        algorithm_source: RegistrySource[AlgorithmRegistry],
        app_source: RegistrySource[AppRegistry] | None = None,
    ) -> None:
        self.algorithm_source = algorithm_source
        self.app_source = app_source

    @property
    def algorithms(self) -> AlgorithmRegistry:
        return self.algorithm_source.current().value

    @property
    def apps(self) -> AppRegistry | None:
        return None if self.app_source is None else self.app_source.current().value

    def algorithms_taken(self) -> Taken[AlgorithmRegistry]:
        return self.algorithm_source.current()

    def apps_taken(self) -> Taken[AppRegistry] | None:
        return None if self.app_source is None else self.app_source.current()
