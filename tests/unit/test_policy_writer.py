"""When a function writes the live policy again: once per refresh period, and at once
when it took a new copy of a registry (so a change is enforced within one period)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, cast

from baton.policy import PolicyWriter
from baton.registries import Registries, RegistrySource
from baton.registry import parse_algorithm_registry
from baton.settings import Config


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _registry(cap: int) -> str:
    return json.dumps({"ocr": {"endpoint": "https://ocr.example.com/run", "max_concurrency": cap}})


def test_a_new_copy_of_the_registry_is_written_at_once_an_unchanged_one_per_period() -> None:
    monotonic = FakeMonotonic()
    parameter = {"text": _registry(4)}
    source = RegistrySource.fetched(
        "BATON_ALGORITHMS_PARAMETER",
        parse_algorithm_registry,
        lambda: parameter["text"],
        refresh_seconds=10,
        monotonic=monotonic,
    )
    config = cast(Config, SimpleNamespace(registries=Registries(source)))
    queue: Any = SimpleNamespace(write_policy=lambda *args: True)
    writer = PolicyWriter(queue, refresh_seconds=60, monotonic=monotonic)

    assert writer.due(config, "ocr")  # never written
    writer.write(config, "ocr")
    monotonic.now = 11  # the registry is re-read: unchanged
    assert not writer.due(config, "ocr")
    parameter["text"] = _registry(2)
    monotonic.now = 22  # re-read again: a new copy, long before the writer's period
    assert writer.due(config, "ocr")
    writer.write(config, "ocr")
    assert not writer.due(config, "ocr")
    monotonic.now = 83  # the writer's own period
    assert writer.due(config, "ocr")
