"""Operators pause and resume admission for one algorithm (``baton algorithm pause``).

The pause is kept in the database, so it survives Redis losing its data (reconcile
puts it back with the rest of the state), and in Redis, where admission reads it, so
it takes effect at the next admission. Attempts already running finish as usual.
"""

from __future__ import annotations

from baton.errors import UnknownAlgorithm
from baton.observability import logger
from baton.runtime import Runtime
from baton.scheduling import run_fast_path


def pause_algorithm(runtime: Runtime, algorithm: str, reason: str) -> bool:
    """Stop admitting tasks of ``algorithm``; False if it was already paused."""
    _require(runtime, algorithm)
    paused = runtime.repository.hold_algorithm(algorithm, runtime.clock(), reason)
    runtime.queue.hold(algorithm, True)
    logger.info("algorithm paused", algorithm=algorithm, reason=reason)
    return paused


def resume_algorithm(runtime: Runtime, algorithm: str) -> bool:
    """Admit tasks of ``algorithm`` again (at once, where there is room); False if it
    was not paused."""
    _require(runtime, algorithm)
    resumed = runtime.repository.release_hold(algorithm)
    runtime.queue.hold(algorithm, False)
    logger.info("algorithm resumed", algorithm=algorithm)
    run_fast_path(runtime, [algorithm])
    return resumed


def _require(runtime: Runtime, algorithm: str) -> None:
    if algorithm not in runtime.config.registry:
        raise UnknownAlgorithm(f"algorithm {algorithm!r} is not registered")
