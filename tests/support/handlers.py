"""Load the Lambda handlers from functions/<name>/app.py and invoke them in-process,
the way the Lambda runtime does: one event at a time per function."""

from __future__ import annotations

import importlib.util
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FUNCTION_NAMES = ("intake", "promote", "dispatch", "sweep", "callback", "reconcile")


@dataclass
class FakeLambdaContext:
    function_name: str
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_stream_name: str = "local"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:eu-west-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def load_handler_module(name: str) -> ModuleType:
    path = ROOT / "functions" / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"baton_function_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Handlers:
    """Each function's handler, serialised per function like one Lambda instance."""

    def __init__(self) -> None:
        self._modules = {name: load_handler_module(name) for name in FUNCTION_NAMES}
        self._locks = {name: threading.Lock() for name in FUNCTION_NAMES}

    def invoke(self, name: str, event: dict[str, Any]) -> Any:
        handler: Callable[[dict[str, Any], Any], Any] = self._modules[name].lambda_handler
        with self._locks[name]:
            return handler(event, FakeLambdaContext(function_name=f"baton-{name}"))
