"""The algorithm registry: each algorithm's endpoint, cap and defaults, as the
operator wrote it (``BATON_ALGORITHMS`` or the SSM parameter it names)."""

from __future__ import annotations

import json
from typing import Self

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, ValidationError, model_validator

from baton.contracts import Name
from baton.errors import SettingsError


class AlgorithmConfig(BaseModel):
    """One entry of the algorithm registry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: AnyHttpUrl
    max_concurrency: int = Field(ge=1, le=100_000)
    timeout_seconds: int = Field(default=900, ge=1, le=7 * 24 * 3600)
    max_timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        le=7 * 24 * 3600,
        description="Longest per-attempt timeout a task message may ask for "
        "(default: timeout_seconds, so a message can only shorten it).",
    )
    max_attempts: int = Field(default=3, ge=1, le=100)

    @model_validator(mode="after")
    def _limit_covers_default(self) -> Self:
        if self.max_timeout_seconds is not None and self.max_timeout_seconds < self.timeout_seconds:
            raise ValueError("max_timeout_seconds must be at least timeout_seconds")
        return self

    @property
    def timeout_limit_seconds(self) -> int:
        return self.max_timeout_seconds or self.timeout_seconds


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
