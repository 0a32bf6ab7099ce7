"""The package's log lines as a test sees them: the JSON its Powertools logger writes."""

from __future__ import annotations

import json
import logging
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

    def with_message(self, message: str) -> list[dict[str, Any]]:
        return [record for record in self.records if record.get("message") == message]

    def clear(self) -> None:
        self.lines.clear()


class LogCollector(logging.Handler):
    def __init__(self, sink: CapturedLogs) -> None:
        super().__init__()
        self._sink = sink
        self.setFormatter(baton_logger.registered_formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self._sink.lines.append(self.format(record))
