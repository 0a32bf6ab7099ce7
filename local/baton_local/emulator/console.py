"""What ``baton local`` shows while it runs, at three levels:

- "errors": failed invocations only;
- "summary": a line per API request (method, full path, status) and per SQS batch
  ("4 records: 3 ok, 1 rejected"), each custom resource and direct invocation, every
  error at once; scheduled runs summed up per function every ``summary_seconds``, on a
  line only when they did something (the counts in their answers) or failed;
- "all": every invocation on its own line.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from baton_local.emulator.lambdas import Invocation

LEVELS = ("errors", "summary", "all")
SUMMED_KINDS = ("schedule", "event")


@dataclass
class _Tally:
    runs: int = 0
    errors: int = 0
    milliseconds: float = 0.0
    counts: dict[str, float] = field(default_factory=dict)

    def add(self, invocation: Invocation) -> None:
        self.runs += 1
        self.errors += 0 if invocation.ok else 1
        self.milliseconds += invocation.duration_ms
        if isinstance(invocation.result, dict):
            for key, value in invocation.result.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self.counts[key] = self.counts.get(key, 0) + value

    @property
    def did_something(self) -> bool:
        return self.errors > 0 or any(self.counts.values())


class ActivityConsole:
    """Writes invocations as lines through ``write``; ``start`` begins the periodic
    summary of scheduled runs, ``stop`` writes what is left of it."""

    def __init__(
        self, write: Callable[[str], None], level: str = "summary", summary_seconds: float = 10.0
    ) -> None:
        if level not in LEVELS:
            raise ValueError(f"activity must be one of {', '.join(LEVELS)}, not {level!r}")
        self.write = write
        self.level = level
        self.summary_seconds = summary_seconds
        self._tallies: dict[str, _Tally] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.level == "summary" and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="console", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        self.flush()

    def record(self, invocation: Invocation) -> None:
        if self.level == "errors":
            if not invocation.ok:
                self.write(self._line(invocation))
            return
        if self.level == "summary" and invocation.kind in SUMMED_KINDS:
            with self._lock:
                self._tallies.setdefault(invocation.function, _Tally()).add(invocation)
            if invocation.ok:
                return
        self.write(self._line(invocation))

    def flush(self) -> None:
        """One line per function whose scheduled runs did something since the last one."""
        with self._lock:
            tallies, self._tallies = self._tallies, {}
        for function, tally in tallies.items():
            if not tally.did_something:
                continue
            counts = ", ".join(f"{k} {v:g}" for k, v in tally.counts.items() if v)
            errors = f", {tally.errors} failed" if tally.errors else ""
            self.write(
                f"{_now()} {function:<24} {tally.runs} scheduled runs{errors}"
                f"{': ' + counts if counts else ''}"
                f"  ({tally.milliseconds / tally.runs:.0f} ms each)"
            )

    def _run(self) -> None:
        while not self._stop.wait(self.summary_seconds):
            self.flush()

    @staticmethod
    def _line(invocation: Invocation) -> str:
        outcome = invocation.outcome or _default_outcome(invocation)
        detail = f"  {invocation.error_text}" if not invocation.ok else ""
        return (
            f"{_now()} {invocation.function:<24} {invocation.source}  {outcome}"
            f"  {invocation.duration_ms:.0f} ms{detail}"
        )


def _default_outcome(invocation: Invocation) -> str:
    if not invocation.ok:
        return "ERROR"
    result: Any = invocation.result
    if isinstance(result, dict) and "statusCode" in result:
        return f"-> {result['statusCode']}"
    return "ok"


def _now() -> str:
    return f"{datetime.now():%H:%M:%S}"
