"""Fixtures for the emulator tests: a LocalCloud per test on a small template of
tests/local/templates (functions in tests/local/functions), stopped afterwards; with
Baton's profile plugged in, as ``baton local`` does."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from baton_local.emulator.cloud import LocalCloud, LocalOptions
from baton_local.profile import baton_profile

TEMPLATES = Path(__file__).parent / "templates"
FUNCTIONS = Path(__file__).parent / "functions"

StartCloud = Callable[..., LocalCloud]


@pytest.fixture
def start_cloud(tmp_path: Path) -> Iterator[StartCloud]:
    """Start a LocalCloud on a template (a name in templates/ or a path); keyword
    arguments are LocalOptions, but for ``redis_url`` and ``database_url``, which go to
    Baton's profile."""
    clouds: list[LocalCloud] = []

    def start(
        template: str | Path,
        redis_url: str | None = None,
        database_url: str | None = None,
        **options: Any,
    ) -> LocalCloud:
        path = TEMPLATES / template if isinstance(template, str) else template
        options.setdefault("state_dir", tmp_path / "state")
        options.setdefault("tick_seconds", 1.0)
        options.setdefault("quiet", True)
        cloud = LocalCloud(
            LocalOptions(template=path, **options),
            [baton_profile(redis_url, database_url)],
        )
        clouds.append(cloud)
        return cloud.start()

    yield start
    for cloud in clouds:
        cloud.stop()


def records(cloud: LocalCloud, function: str) -> list[dict[str, Any]]:
    """What a test function recorded (one RECORD line per invocation), oldest first."""
    path = cloud.function_log(function)
    if not path.exists():
        return []
    return [
        json.loads(line.removeprefix("RECORD "))
        for line in path.read_text().splitlines()
        if line.startswith("RECORD ")
    ]


def sqs_bodies(cloud: LocalCloud, function: str) -> list[str]:
    """Every SQS message body the function was invoked with, in order, redeliveries too."""
    return [
        item["body"]
        for record in records(cloud, function)
        for item in record["event"].get("Records", [])
    ]
