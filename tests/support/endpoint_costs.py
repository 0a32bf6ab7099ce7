"""The fake algorithm service, also counting cost in flight per endpoint (path) and
keeping which endpoint each accepted request came to: what an algorithm served by
several servers of different sizes would see of its own load."""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tests.support.algorithm_service import AlgorithmService


@dataclass
class EndpointCostService(AlgorithmService):
    cost_by_path: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    max_cost_by_path: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    accepted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (path, request)
    # Taken around the parent's own bookkeeping, so that a task that finishes at once
    # is never counted out before it was counted in.
    _ledger: threading.Lock = field(default_factory=threading.Lock)

    def _accept(self, path: str, request: dict[str, Any]) -> tuple[int, int | None]:
        with self._ledger:
            status, retry_after = super()._accept(path, request)
            if status < 300:
                self.cost_by_path[path] += int(request.get("cost", 1))
                self.max_cost_by_path[path] = max(
                    self.max_cost_by_path[path], self.cost_by_path[path]
                )
                self.accepted.append((path, request))
        return status, retry_after

    def _finish(self, path: str, request: dict[str, Any]) -> None:
        with self._ledger:
            super()._finish(path, request)
            self.cost_by_path[path] -= int(request.get("cost", 1))
