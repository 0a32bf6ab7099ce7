"""Callbacks Baton refused: counted against the attempt they name, so that the attempt's
timeout says why no callback was taken ("no callback by the deadline" would send its
operator looking for a service that did call back).

A refused callback proves nothing about its caller (a 401 is one whose token did not
verify), so it is recorded only against an active attempt of the task and attempt it
names, and read only to word that timeout message.
"""

from __future__ import annotations

import json
from typing import Any

import redis
from sqlalchemy.exc import OperationalError

from baton.errors import ApiError
from baton.models import TaskExecution
from baton.observability import logger
from baton.runtime import Runtime

RECORDED = {"unauthorized", "result_missing"}
"""The refusals that are recorded: a callback whose token did not verify for the task
and attempt it names (401), and a "succeeded" with no result object (409)."""

_WORDING = {
    "unauthorized": "with 401 unauthorized (its token did not verify for this task and attempt)",
    "result_missing": "with 409 result_missing (it said succeeded, and no result object "
    "had been uploaded)",
}

MAX_ATTEMPT = 1000


def attempt_named(raw: bytes | str) -> int | None:
    """The ``attempt`` a callback body names, read leniently (it may be refused for its
    token before its body is checked): an integer from 1 to 1000, or None."""
    try:
        document: Any = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    attempt = document.get("attempt") if isinstance(document, dict) else None
    if isinstance(attempt, bool) or not isinstance(attempt, int):
        return None
    return attempt if 1 <= attempt <= MAX_ATTEMPT else None


def note_refused_callback(runtime: Runtime, task_id: str, raw: bytes, error: ApiError) -> None:
    """Record ``error`` against the attempt the body names, if it is one that is
    recorded; never changes the answer (a database that is down leaves it unrecorded)."""
    attempt = attempt_named(raw)
    # An id Baton could have issued: the path is the caller's text, anything may be in it.
    plausible = len(task_id) <= 36 and task_id.isascii() and task_id.isprintable()
    if error.code not in RECORDED or attempt is None or not plausible:
        return
    try:
        runtime.repository.record_refused_callback(task_id, attempt, error.code)
    except (OperationalError, redis.RedisError) as exc:
        logger.warning("refused callback not recorded", task_id=task_id, error=type(exc).__name__)


def timeout_message(execution: TaskExecution | None, deadline_text: str) -> str:
    """Why an attempt timed out: no callback by its deadline, or only refused ones."""
    if execution is None or not execution.refused_callbacks:
        return f"no callback by the deadline {deadline_text}"
    last = execution.last_refusal or "refused"
    return (
        f"no callback accepted by the deadline {deadline_text}: "
        f"{execution.refused_callbacks} refused, the last {_WORDING.get(last, last)}"
    )
