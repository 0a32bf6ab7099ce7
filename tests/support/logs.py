"""The log lines the package's Powertools logger writes, captured as the JSON records
they become on stdout (the same formatter, so a test sees what CloudWatch would)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from baton.observability import logger as baton_logger


@dataclass
class CapturedLogs:
    """Every line the package's Powertools logger wrote, as the JSON it puts on stdout."""

    lines: list[str] = field(default_factory=list)

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def with_message(self, message: str) -> list[dict[str, Any]]:
        return [record for record in self.records if record.get("message") == message]

    def clear(self) -> None:
        self.lines.clear()


class LogCollector(logging.Handler):
    def __init__(self, sink: CapturedLogs) -> None:
        super().__init__(level=logging.DEBUG)
        self._sink = sink
        self.setFormatter(baton_logger.registered_formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self._sink.lines.append(self.format(record))


@contextmanager
def captured_log_lines(level: int | None = None) -> Iterator[CapturedLogs]:
    """Every record at or above the logger's level (or ``level``, for the block) while
    the block runs."""
    sink = CapturedLogs()
    collector = LogCollector(sink)
    target = logging.getLogger(baton_logger.service)
    previous = target.level
    if level is not None:
        target.setLevel(level)
    target.addHandler(collector)
    try:
        yield sink
    finally:
        target.removeHandler(collector)
        target.setLevel(previous)
