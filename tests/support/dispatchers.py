"""Dispatch functions in processes of their own, as many Lambda instances dispatch at
once in production: each builds its runtime from the settings it is given and runs
promote-and-dispatch in a loop until its time is up."""

from __future__ import annotations

import os
import time
from typing import Any


def dispatch_for(
    environ: dict[str, str], algorithm: str, seconds: float, ready: Any, go: Any
) -> None:
    """Entry point of a spawned process: ``ready`` is set once the runtime is built,
    then it waits for ``go`` and dispatches for ``seconds``."""
    os.environ.update(
        {
            "POWERTOOLS_TRACE_DISABLED": "1",
            "POWERTOOLS_METRICS_DISABLED": "1",
            "POWERTOOLS_LOG_LEVEL": "ERROR",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
    )
    # Baton and Powertools read the environment above when they are imported.
    from baton.runtime import build_runtime
    from baton.scheduling import promote_and_dispatch
    from baton.settings import load_settings

    runtime = build_runtime(load_settings(environ))
    ready.set()
    go.wait()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        promote_and_dispatch(runtime, [algorithm])
        # A pause between rounds, as a function between invocations: eight processes
        # spinning on two cores would delay the service, not test the limit.
        time.sleep(0.05)
