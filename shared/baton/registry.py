"""The algorithm registry: each algorithm's endpoint, cap and defaults, as the
operator wrote it (``BATON_ALGORITHMS`` or the SSM parameter it names)."""

from __future__ import annotations

import json
from typing import Self

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, ValidationError, model_validator

from baton.contracts import Name
from baton.errors import SettingsError

MAX_CAPACITY = 100_000
MAX_WAIT_SECONDS = 30 * 24 * 3600
DEFAULT_MAX_RUN_SECONDS = 86_400
"""The longest a queue or total timeout, or an attempt's run, may be: 30 days."""


class EndpointConfig(BaseModel):
    """One server (or fleet behind one URL) of an algorithm, with its own cap."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: AnyHttpUrl
    max_concurrency: int = Field(ge=1, le=MAX_CAPACITY)
    cancel_url: AnyHttpUrl | None = Field(
        default=None,
        description="Where Baton sends the signed cancel request of an attempt it ended; "
        "without one the attempt's slot is freed at once",
    )


class RateLimit(BaseModel):
    """At most ``burst`` dispatch requests at once, then ``requests`` per ``per_seconds``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: int = Field(ge=1, le=1_000_000)
    per_seconds: float = Field(gt=0, le=86_400)
    burst: int | None = Field(default=None, ge=1, le=1_000_000, description="default: requests")

    @property
    def burst_size(self) -> int:
        return self.burst or self.requests

    @property
    def interval_seconds(self) -> float:
        """The time one request takes from the allowance."""
        return self.per_seconds / self.requests


class AlgorithmConfig(BaseModel):
    """One entry of the algorithm registry: ``endpoint`` + ``max_concurrency`` is the
    shorthand for one endpoint; ``endpoints`` lists several, each with its own cap."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: AnyHttpUrl | None = None
    cancel_url: AnyHttpUrl | None = Field(
        default=None, description="With endpoint: that endpoint's cancel URL"
    )
    endpoints: tuple[EndpointConfig, ...] | None = Field(default=None, min_length=1, max_length=64)
    max_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=MAX_CAPACITY,
        description="Cost units in flight at most; with endpoints, default their sum.",
    )
    timeout_seconds: int = Field(default=900, ge=1, le=7 * 24 * 3600)
    max_timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        le=7 * 24 * 3600,
        description="Longest per-attempt timeout a task message may ask for "
        "(default: timeout_seconds, so a message can only shorten it).",
    )
    max_attempts: int = Field(default=3, ge=1, le=100)
    max_run_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_WAIT_SECONDS,
        description="Heartbeats extend an attempt at most this long after its dispatch "
        "(default: a day, or the longest timeout if that is longer)",
    )
    backoff_base_seconds: float | None = Field(
        default=None, ge=0, le=3600, description="default: BATON_BACKOFF_BASE_SECONDS"
    )
    backoff_max_seconds: float | None = Field(
        default=None, ge=0, le=86_400, description="default: BATON_BACKOFF_MAX_SECONDS"
    )
    queue_timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_WAIT_SECONDS,
        description="A task not dispatched (accepted) this long after it was accepted "
        "ends timed_out / queue_timeout; a message may only shorten it",
    )
    total_timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_WAIT_SECONDS,
        description="A task not final this long after it was accepted ends timed_out / "
        "deadline_exceeded; a message may only shorten it",
    )
    rate_limit: RateLimit | None = None
    cancel_grace_seconds: int = Field(
        default=60,
        ge=0,
        le=86_400,
        description="How long an attempt Baton ended keeps its slot while its endpoint "
        "has not acknowledged the cancel request, counted from the end",
    )
    paused: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.max_timeout_seconds is not None and self.max_timeout_seconds < self.timeout_seconds:
            raise ValueError("max_timeout_seconds must be at least timeout_seconds")
        if self.max_run_seconds is not None and self.max_run_seconds < self.timeout_limit_seconds:
            raise ValueError("max_run_seconds must be at least the longest timeout")
        if (self.endpoint is None) == (self.endpoints is None):
            raise ValueError("give exactly one of endpoint and endpoints")
        if self.endpoints is not None and self.cancel_url is not None:
            raise ValueError("cancel_url goes with endpoint; with endpoints, give each its own")
        if self.endpoints is None:
            if self.max_concurrency is None:
                raise ValueError("max_concurrency is required with endpoint")
        else:
            urls = [str(endpoint.url) for endpoint in self.endpoints]
            if len(set(urls)) != len(urls):
                raise ValueError("endpoints: each url may appear once")
            total = sum(endpoint.max_concurrency for endpoint in self.endpoints)
            if self.max_concurrency is not None and self.max_concurrency > total:
                raise ValueError(
                    f"max_concurrency {self.max_concurrency} is above the sum of the "
                    f"endpoints' caps ({total})"
                )
        return self

    @property
    def endpoint_list(self) -> tuple[EndpointConfig, ...]:
        if self.endpoints is not None:
            return self.endpoints
        assert self.endpoint is not None
        assert self.max_concurrency is not None
        return (
            EndpointConfig(
                url=self.endpoint, max_concurrency=self.max_concurrency, cancel_url=self.cancel_url
            ),
        )

    def cancel_url_of(self, endpoint: str | None) -> str | None:
        """The cancel URL of the endpoint whose dispatch URL is ``endpoint`` (None: it has
        none, or the registry no longer lists it)."""
        for each in self.endpoint_list:
            if str(each.url) == endpoint and each.cancel_url is not None:
                return str(each.cancel_url)
        return None

    @property
    def draining_endpoints(self) -> frozenset[str]:
        """The dispatch URLs of the endpoints that have a cancel URL."""
        return frozenset(str(e.url) for e in self.endpoint_list if e.cancel_url is not None)

    @property
    def capacity(self) -> int:
        """The algorithm's cap, in cost units."""
        if self.max_concurrency is not None:
            return self.max_concurrency
        return sum(endpoint.max_concurrency for endpoint in self.endpoint_list)

    @property
    def largest_cost(self) -> int:
        """The most a single task may cost: it must fit one endpoint and the cap."""
        return min(self.capacity, max(e.max_concurrency for e in self.endpoint_list))

    @property
    def timeout_limit_seconds(self) -> int:
        return self.max_timeout_seconds or self.timeout_seconds

    @property
    def run_limit_seconds(self) -> int:
        """How long after its dispatch an attempt may run, heartbeats included."""
        return self.max_run_seconds or max(DEFAULT_MAX_RUN_SECONDS, self.timeout_limit_seconds)


class AlgorithmRegistry(BaseModel):
    """The registry: algorithm name -> its endpoint, cap and defaults."""

    model_config = ConfigDict(frozen=True)

    algorithms: dict[Name, AlgorithmConfig] = Field(min_length=1)

    @classmethod
    def from_json(cls, text: str) -> AlgorithmRegistry:
        return cls.model_validate({"algorithms": json.loads(text)})

    def __contains__(self, name: object) -> bool:
        return name in self.algorithms

    def __getitem__(self, name: str) -> AlgorithmConfig:
        return self.algorithms[name]

    def names(self) -> list[str]:
        return sorted(self.algorithms)


def parse_algorithm_registry(text: str, source: str) -> AlgorithmRegistry:
    """The registry in ``text``, or ``SettingsError`` naming ``source`` and each problem."""
    try:
        return AlgorithmRegistry.from_json(text)
    except ValueError as exc:
        detail = (
            "; ".join(
                ".".join(str(part) for part in error["loc"][1:]) + ": " + error["msg"]
                for error in exc.errors(include_input=False, include_url=False)
            )
            if isinstance(exc, ValidationError)
            else "not valid JSON"
        )
        raise SettingsError(f"{source}: invalid algorithm registry: {detail}") from None
