"""What the tests build a Baton runtime from: the token secret, the algorithm registry
pointing at the loopback algorithm service, and the type of the runtime factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from baton.runtime import Runtime

from tests.support.algorithm_service import AlgorithmService

TOKEN_SECRET = "test-token-secret-of-at-least-32-characters!"

RuntimeFactory = Callable[..., Runtime]


def registry_for(service: AlgorithmService, **caps: int) -> dict[str, Any]:
    caps = caps or {"ocr": 2, "nlp": 3}
    return {
        name: {
            "endpoint": service.endpoint(name),
            "max_concurrency": cap,
            "timeout_seconds": 30,
            "max_timeout_seconds": 7200,
            "max_attempts": 3,
        }
        for name, cap in caps.items()
    }
