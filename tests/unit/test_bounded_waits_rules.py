"""The rules of bounded waits that need no server: what the registry accepts for an
algorithm's run, backoff and timeouts, and what a message may ask for."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from baton.errors import InvalidTaskMessage
from baton.intake import derive_idempotency_key, parse_task_message
from baton.registry import AlgorithmConfig, AlgorithmRegistry
from pydantic import ValidationError

from tests.unit.test_task_message import make_runtime

ONE_DAY = 86_400


def algorithm(**fields: Any) -> AlgorithmConfig:
    return AlgorithmConfig.model_validate(
        {"endpoint": "https://ocr.example.com/run", "max_concurrency": 2, **fields}
    )


def test_an_attempt_may_run_a_day_by_default_or_its_longest_timeout() -> None:
    assert algorithm().run_limit_seconds == ONE_DAY
    assert algorithm(timeout_seconds=3 * ONE_DAY).run_limit_seconds == 3 * ONE_DAY
    assert algorithm(timeout_seconds=60, max_run_seconds=600).run_limit_seconds == 600


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"max_run_seconds": 100, "timeout_seconds": 900}, "max_run_seconds"),
        ({"queue_timeout_seconds": 0}, "queue_timeout_seconds"),
        ({"total_timeout_seconds": 31 * ONE_DAY}, "total_timeout_seconds"),
        ({"backoff_base_seconds": -1}, "backoff_base_seconds"),
    ],
)
def test_the_registry_refuses_waits_it_cannot_honour(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError) as refused:
        algorithm(**fields)
    assert problem in str(refused.value)


def _runtime_with(**ocr: Any) -> SimpleNamespace:
    runtime = make_runtime()
    registry = {"ocr": {"endpoint": "https://ocr.example.com/run", "max_concurrency": 2, **ocr}}
    runtime.config = SimpleNamespace(registry=AlgorithmRegistry.from_json(json.dumps(registry)))
    return runtime


def _message(**fields: Any) -> str:
    return json.dumps({"app": "a", "algorithm": "ocr", "input": {}, **fields})


def test_a_message_may_only_shorten_the_algorithms_timeouts() -> None:
    runtime = _runtime_with(queue_timeout_seconds=600, total_timeout_seconds=3600)
    accepted = parse_task_message(runtime, _message(queue_timeout_seconds=60))  # type: ignore[arg-type]
    assert accepted.queue_timeout_seconds == 60
    for name, limit in (("queue_timeout_seconds", 600), ("total_timeout_seconds", 3600)):
        with pytest.raises(InvalidTaskMessage) as refused:
            parse_task_message(runtime, _message(**{name: limit + 1}))  # type: ignore[arg-type]
        assert str(refused.value).startswith(f"{name}: above the limit of {limit}")


def test_a_message_may_set_timeouts_the_algorithm_has_not() -> None:
    runtime = _runtime_with()
    message = parse_task_message(runtime, _message(total_timeout_seconds=30 * ONE_DAY))  # type: ignore[arg-type]
    assert message.total_timeout_seconds == 30 * ONE_DAY


def test_the_new_fields_at_their_defaults_leave_derived_keys_as_they_were() -> None:
    runtime = _runtime_with()
    plain = parse_task_message(runtime, _message())  # type: ignore[arg-type]
    timed = parse_task_message(runtime, _message(queue_timeout_seconds=60))  # type: ignore[arg-type]
    assert derive_idempotency_key(plain) != derive_idempotency_key(timed)
    assert derive_idempotency_key(plain) == derive_idempotency_key(
        parse_task_message(runtime, _message(queue_timeout_seconds=None))  # type: ignore[arg-type]
    )
