"""What the demo shows: the live progress view, the summary tables, the JSON report
and the PNG timeline. Everything here reads the demo's records; nothing acts."""

from __future__ import annotations

import json
import math
import textwrap
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from baton_local.demo.algorithms import AlgorithmService, RateLimitSpec, Received
from baton_local.demo.app import BULK, PORTAL, WEIGHTS, Ledger, TaskRecord

STATUSES = ("succeeded", "failed", "timed_out", "cancelled")
MARKERS = {"failed": ("v", "#ff7f0e"), "timed_out": ("x", "#9467bd")}
APP_COLOURS = {PORTAL: "#1f77b4", BULK: "#ff7f0e"}
SHORT = {PORTAL: "portal", BULK: "bulk"}
BACKLOG_COLOUR = "#2ca02c"
CAPTION_WIDTH = 160
"""Characters per caption line of the PNG (11 inches at 9 points)."""

SMALLER_APP_TASKS = 4
"""A share window must be expected to hold this many tasks of the app with the smallest
weight share: shares are counted in whole tasks, so with fewer, one task more or less
swings the small app's share by more than the tolerance."""
SHARE_TOLERANCE = 0.12
"""How far (absolute) an app's share of a window may be from its weight share."""
RATE_JITTER_SECONDS = 0.15
"""Slack on the rate bound for the path from Baton to the service: requests taken from
the limit at steady intervals may arrive a little bunched on a loaded machine."""
RATE_WINDOW_SECONDS = 1.0
"""The sliding window of the requests-per-second curve."""
UTILIZATION_TARGET = 0.9
"""The share of its cap each algorithm must keep in flight while it has tasks waiting."""
MIN_BACKLOG_SECONDS = 15.0
"""Utilization is measured where an algorithm had tasks waiting for at least this long.
Its backlog starts with its slots filling as the intake stores the first tasks, a
second or three on a small machine; over a shorter backlog that is most of what there
is to see."""


@dataclass
class Sample:
    t: float
    """Seconds since the first task was submitted."""
    running: dict[str, dict[str, int]]
    """Algorithm -> app -> cost in flight."""
    queued: dict[str, dict[str, int]]
    """Algorithm -> app -> tasks waiting."""


@dataclass
class Timeline:
    samples: list[Sample] = field(default_factory=list)

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)


# -- live view ----------------------------------------------------------------------------


def progress_rows(ledger: Ledger, services: Sequence[AlgorithmService]) -> list[dict[str, Any]]:
    counts = ledger.counts()
    rows = []
    for service in services:
        running, most = service.snapshot()
        by_app = Counter(ledger.app_of(ref) for ref, _ in service.running_refs())
        mine = counts.get(service.name, Counter())
        rows.append(
            {
                "algorithm": service.name,
                "running": running,
                "portal": by_app[PORTAL],
                "bulk": by_app[BULK],
                "cap": service.spec.max_concurrency,
                "max": most,
                "queued": mine["queued"],
                "done": mine["succeeded"],
                "failed": mine["failed"],
                "timed_out": mine["timed_out"],
                "busy_429": service.refused_busy,
            }
        )
    return rows


def progress_table(
    ledger: Ledger, services: Sequence[AlgorithmService], elapsed: float, total: int
) -> Group:
    table = Table(
        title="Baton demo: docs-portal and bulk-import on the emulated stack", title_justify="left"
    )
    columns = ("algorithm", "in flight/cap", "max", "portal", "bulk", "waiting", "done")
    for name in (*columns, "failed", "timed out"):
        table.add_column(name, justify="left" if name == "algorithm" else "right")
    table.add_column("429s", justify="right", style="dim")
    finished = 0
    for row in progress_rows(ledger, services):
        finished += row["done"] + row["failed"] + row["timed_out"]
        bar = "█" * row["running"] + "·" * max(0, row["cap"] - row["running"])
        style = "bold red" if row["max"] > row["cap"] else ""
        table.add_row(
            row["algorithm"],
            f"{bar} {row['running']}/{row['cap']}",
            Text(str(row["max"]), style=style),
            str(row["portal"]),
            str(row["bulk"]),
            str(row["queued"]),
            Text(str(row["done"]), style="green"),
            Text(str(row["failed"]), style="yellow" if row["failed"] else ""),
            Text(str(row["timed_out"]), style="magenta" if row["timed_out"] else ""),
            str(row["busy_429"]),
        )
    footer = Text(f"elapsed {elapsed:5.1f} s   finished {finished}/{total}")
    return Group(table, footer)


def progress_line(
    ledger: Ledger, services: Sequence[AlgorithmService], elapsed: float, total: int
) -> str:
    parts = []
    finished = 0
    for row in progress_rows(ledger, services):
        finished += row["done"] + row["failed"] + row["timed_out"]
        parts.append(
            f"{row['algorithm']} {row['running']}/{row['cap']} (p{row['portal']} b{row['bulk']})"
            f" q{row['queued']} ok{row['done']} f{row['failed']} t{row['timed_out']}"
        )
    return f"[{elapsed:5.1f}s] {finished}/{total} finished | " + " | ".join(parts)


# -- shares and rates ---------------------------------------------------------------------


def window_tasks(weights: Mapping[str, float]) -> int:
    """Dispatches a share window holds: enough that the app with the smallest weight
    share is expected to have ``SMALLER_APP_TASKS`` of them."""
    smallest = min(weights.values()) / sum(weights.values())
    return math.ceil(SMALLER_APP_TASKS / smallest - 1e-9)


def fair_shares(
    dispatches: Sequence[tuple[float, str, int]],
    waiting: Mapping[str, Sequence[tuple[float, float]]],
    weights: Mapping[str, float],
) -> dict[str, Any]:
    """Each app's share of one algorithm's dispatched cost while every app had a task
    waiting for it, against its weight share.

    ``dispatches`` are (time, app, cost) of the requests the service accepted;
    ``waiting`` the (since, until) of each app's tasks between their arrival in Baton and
    their first dispatch. A dispatch is contended when every app had a task waiting at
    that moment; the contended dispatches, in order, are cut into windows of
    ``window_tasks`` (the remainder joins the last window), and each app's share of
    each window's cost must be within ``SHARE_TOLERANCE`` of its weight share."""
    apps = sorted(weights)
    total_weight = sum(weights.values())
    expected = {app: weights[app] / total_weight for app in apps}
    size = window_tasks(weights)

    def waits(app: str, moment: float) -> bool:
        return any(since <= moment < until for since, until in waiting.get(app, ()))

    contended = [d for d in sorted(dispatches) if all(waits(app, d[0]) for app in apps)]
    chunks = [list(contended[n : n + size]) for n in range(0, len(contended), size)]
    if len(chunks) > 1 and len(chunks[-1]) < size:
        chunks[-2].extend(chunks.pop())
    windows = []
    if chunks and len(chunks[0]) >= size:
        for chunk in chunks:
            cost = sum(c for _, _, c in chunk)
            shares = {app: sum(c for _, a, c in chunk if a == app) / cost for app in apps}
            deviation = max(abs(shares[app] - expected[app]) for app in apps)
            windows.append(
                {
                    "from": chunk[0][0],
                    "to": chunk[-1][0],
                    "tasks": len(chunk),
                    "cost": cost,
                    "tasks_by_app": {app: sum(1 for _, a, _ in chunk if a == app) for app in apps},
                    "shares": {app: round(share, 3) for app, share in shares.items()},
                    "deviation": round(deviation, 3),
                    "passed": deviation <= SHARE_TOLERANCE + 1e-9,
                }
            )
    overall_cost = sum(c for _, _, c in contended)
    return {
        "expected": {app: round(share, 3) for app, share in expected.items()},
        "window_tasks": size,
        "tolerance": SHARE_TOLERANCE,
        "dispatches": len(dispatches),
        "contended_tasks": len(contended),
        "contended_cost": overall_cost,
        "contended_shares": {
            app: round(sum(c for _, a, c in contended if a == app) / overall_cost, 3)
            for app in apps
        }
        if overall_cost
        else {},
        "measured": bool(windows),
        "windows": windows,
        "passed": all(window["passed"] for window in windows),
    }


def rate_held(times: Sequence[float], limit: RateLimitSpec) -> dict[str, Any]:
    """Whether no interval saw more requests than the limit allows: for every run of
    requests from the i-th to the j-th, j - i + 1 <= burst + rate * (T + jitter), T the
    time between them. ``stretch`` is the jitter the worst run needed."""
    ordered = sorted(times)
    rate = limit.requests / limit.per_seconds
    worst_stretch = 0.0
    worst: tuple[int, float] | None = None
    for i in range(len(ordered)):
        for j in range(i + limit.burst, len(ordered)):
            span = ordered[j] - ordered[i]
            needed = (j - i + 1 - limit.burst) / rate - span
            if needed > worst_stretch:
                worst_stretch, worst = needed, (j - i + 1, span)
    per_window = 0
    for j in range(len(ordered)):
        start = ordered[j] - RATE_WINDOW_SECONDS
        per_window = max(per_window, sum(1 for t in ordered[: j + 1] if t > start))
    return {
        "requests": len(ordered),
        "limit": limit.registry_entry(),
        "jitter_seconds": RATE_JITTER_SECONDS,
        "stretch_seconds": round(worst_stretch, 3),
        "worst_run": {"requests": worst[0], "seconds": round(worst[1], 3)} if worst else None,
        "max_per_window": per_window,
        "window_seconds": RATE_WINDOW_SECONDS,
        "window_bound": limit.bound(RATE_WINDOW_SECONDS),
        "span_seconds": round(ordered[-1] - ordered[0], 2) if ordered else 0.0,
        "passed": worst_stretch <= RATE_JITTER_SECONDS + 1e-9,
    }


# -- utilization ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptSpan:
    """One attempt as Baton recorded it (its ``task_execution`` row): from taking its
    slot (the row is written just before the request goes out) until the callback,
    timeout or dispatch failure that gave the slot back. Seconds since the epoch."""

    ref: str
    algorithm: str
    attempt: int
    cost: int
    start: float
    end: float
    status: str


def busy_while_waiting(
    spans: Sequence[tuple[float, float, int]], waiting: Sequence[tuple[float, float]]
) -> tuple[float, float]:
    """(seconds during which some task waited, cost-seconds in flight during them).

    ``spans`` are (start, end, cost) of the attempts; ``waiting`` the (since, until) of
    the tasks' waits. One sweep over every start and end."""
    events: list[tuple[float, int, int]] = []
    for start, end, cost in spans:
        events += [(start, 0, cost), (end, 0, -cost)]
    for since, until in waiting:
        if until > since:
            events += [(since, 1, 1), (until, 1, -1)]
    events.sort(key=lambda event: event[0])
    in_flight = waiting_now = 0
    queued = busy = 0.0
    last: float | None = None
    for moment, kind, delta in events:
        if last is not None and waiting_now > 0:
            queued += moment - last
            busy += (moment - last) * in_flight
        if kind == 0:
            in_flight += delta
        else:
            waiting_now += delta
        last = moment
    return queued, busy


def utilization(
    spans: Sequence[AttemptSpan],
    waiting: Sequence[tuple[float, float]],
    cap: int,
    target: float = UTILIZATION_TARGET,
    min_backlog: float = MIN_BACKLOG_SECONDS,
) -> dict[str, Any]:
    """How much of its cap an algorithm used while it had tasks waiting: the cost in
    flight (Baton's own attempt records), averaged over the time some task of it waited
    between its arrival in Baton and its first dispatch, over the cap.

    Measured only when the algorithm had tasks waiting for ``min_backlog`` seconds in
    all (see ``MIN_BACKLOG_SECONDS``)."""
    queued, busy = busy_while_waiting([(s.start, s.end, s.cost) for s in spans], waiting)
    run = percentile([s.end - s.start for s in spans if s.status != "dispatch_failed"], 50)
    measured = queued >= min_backlog
    ratio = busy / (queued * cap) if queued > 0 and cap > 0 else None
    return {
        "cap": cap,
        "queued_seconds": round(queued, 2),
        "median_run_seconds": None if run is None else round(run, 2),
        "mean_in_flight": None if not queued else round(busy / queued, 2),
        "utilization": None if ratio is None else round(ratio, 3),
        "target": target,
        "min_backlog_seconds": min_backlog,
        "measured": measured,
        "passed": not measured or (ratio is not None and ratio >= target - 1e-9),
    }


def found_free_slot(
    created: float,
    cost: int,
    spans: Sequence[AttemptSpan],
    waits: Sequence[tuple[float, float, int]],
    cap: int,
) -> bool:
    """Whether a task arriving at ``created`` found room for its cost: the cost in flight
    then, and that of the tasks that arrived before it and still waited, left it room."""
    in_flight = sum(s.cost for s in spans if s.start <= created < s.end)
    ahead = sum(c for since, until, c in waits if since < created < until)
    return in_flight + ahead + cost <= cap


def _per_second(times: Sequence[float], at: Sequence[float]) -> list[int]:
    """Requests in the sliding window ending at each moment of ``at``."""
    ordered = sorted(times)
    return [sum(1 for t in ordered if moment - RATE_WINDOW_SECONDS < t <= moment) for moment in at]


# -- the report ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _latency(values_ms: Sequence[float]) -> dict[str, Any]:
    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    return {
        "count": len(values_ms),
        "p50": rounded(percentile(values_ms, 50)),
        "p95": rounded(percentile(values_ms, 95)),
        "max": rounded(max(values_ms) if values_ms else None),
    }


def _dispatch_ms(record: TaskRecord) -> float | None:
    if record.submitted_at is None or record.first_dispatch_at is None:
        return None
    return (record.first_dispatch_at - record.submitted_at) * 1000


def _notify_ms(record: TaskRecord) -> float | None:
    if record.submitted_at is None or record.notified_at is None:
        return None
    return (record.notified_at - record.submitted_at) * 1000


def _present(values: Sequence[float | None]) -> list[float]:
    return [value for value in values if value is not None]


def build_report(
    *,
    ledger: Ledger,
    services: Sequence[AlgorithmService],
    timeline: Timeline,
    run: Mapping[str, Any],
    send_failures: Sequence[Mapping[str, Any]],
    emulator: Mapping[str, Any],
    apps: Mapping[str, Mapping[str, Any]] | None = None,
    origin: float = 0.0,
    attempts: Sequence[AttemptSpan] = (),
) -> dict[str, Any]:
    """Every figure of the run, and the checks that decide the exit code. ``origin`` is
    the monotonic moment of the first submission (the timeline's zero); ``attempts``
    Baton's records of every attempt, for the utilization of the caps."""
    records = list(ledger.records.values())
    statuses = Counter(record.status for record in records if record.status is not None)
    missing = [record.task.ref for record in records if record.state != "final"]
    doubled = [record.task.ref for record in records if len(record.notification_ids) > 1]
    submitted = [r.submitted_at for r in records if r.submitted_at is not None]
    notified = [r.notified_at for r in records if r.notified_at is not None]
    span = (max(notified) - min(submitted)) if submitted and notified else 0.0
    succeeded = [r for r in records if r.status == "succeeded"]
    unread = [
        {"ref": r.task.ref, "problem": r.result_problem or "not read"}
        for r in succeeded
        if not r.result_ok
    ]
    apps = apps or {name: {"weight": weight} for name, weight in WEIGHTS.items()}
    weights = {name: float(app["weight"]) for name, app in apps.items()}
    wall_origin = _wall_origin(services, origin)
    free_slot: list[TaskRecord] = []

    algorithms: dict[str, Any] = {}
    for service in services:
        mine = [r for r in records if r.task.algorithm == service.name]
        accepted = [d for d in service.received if d.status == 202]
        by_app: dict[str, Any] = {}
        for app in weights:
            theirs = [r for r in mine if r.task.app == app]
            by_app[app] = {
                "tasks": len(theirs),
                "dispatched_cost": sum(d.cost for d in accepted if ledger.app_of(d.ref) == app),
                "submit_to_dispatch_ms": _latency(_present([_dispatch_ms(r) for r in theirs])),
            }
        waiting = {
            app: [
                (r.created_wall, r.first_dispatched_wall)
                for r in mine
                if r.task.app == app
                and r.created_wall is not None
                and r.first_dispatched_wall is not None
            ]
            for app in weights
        }
        limit = service.spec.rate_limit
        spans = [a for a in attempts if a.algorithm == service.name]
        cap = service.spec.max_concurrency
        waits = [
            (r.created_wall, r.first_dispatched_wall, r.task.cost)
            for r in mine
            if r.created_wall is not None and r.first_dispatched_wall is not None
        ]
        backlog = [(since, until) for since, until, _ in waits]
        use = utilization(spans, backlog, cap)
        # The same over the service's own count (request to callback): what of Baton's
        # slot time the service spent on the work, not on the way to and from it.
        queued, worked = busy_while_waiting(
            [(w.since, w.until, w.cost) for w in service.worked], backlog
        )
        use["at_service"] = round(worked / (queued * cap), 3) if queued and cap else None
        # Without Baton's records nothing says what was in flight: no task is taken to
        # have found a free slot.
        mine_free = [
            r
            for r in mine
            if spans
            and r.created_wall is not None
            and r.first_dispatched_wall is not None
            and found_free_slot(r.created_wall, r.task.cost, spans, waits, cap)
        ]
        # A task that found a slot free on arriving was not chosen over anyone: the slots
        # filling at the start go to whichever tasks arrive first, not by weight.
        unchosen = {r.task.ref for r in mine_free}
        chosen = [d for d in accepted if not (d.ref in unchosen and _first(d, accepted))]
        shares = fair_shares(
            [(d.wall, ledger.app_of(d.ref) or "", d.cost) for d in chosen], waiting, weights
        )
        for window in shares["windows"]:
            window["from_s"] = round(window.pop("from") - wall_origin, 2)
            window["to_s"] = round(window.pop("to") - wall_origin, 2)
        free_slot += mine_free
        held = [a.cost * (a.end - a.start) for a in spans if a.status != "dispatch_failed"]
        use["capacity_tasks_per_second"] = (
            round(cap * len(held) / sum(held), 2) if held and sum(held) > 0 else None
        )
        use["backlog_s"] = _merged(
            [(since - wall_origin, until - wall_origin) for since, until, _ in waits]
        )
        algorithms[service.name] = {
            "max_concurrency": service.spec.max_concurrency,
            "max_in_flight": service.max_in_flight,
            "service_workers": service.workers,
            "endpoints": [
                {
                    "name": state.spec.name,
                    "max_concurrency": state.spec.max_concurrency,
                    "max_in_flight": state.max_in_flight,
                    "requests": state.requests,
                    "accepted": state.accepted,
                }
                for state in service.endpoint_states
            ],
            "cost_per_task": sorted({r.task.cost for r in mine}),
            "requests": service.requests,
            "accepted": service.accepted,
            "refused_busy_429": service.refused_busy,
            "rejected_422": service.rejected,
            "stalled": service.stalled,
            "refused_unsigned_401": service.refused_unsigned,
            "cancel_requests": service.cancel_requests,
            "callback_answers": dict(Counter(str(c.http_status) for c in service.callbacks)),
            "callbacks_refused": [
                {
                    "ref": c.ref,
                    "attempt": c.attempt,
                    "status": c.status,
                    "http_status": c.http_status,
                    "error": c.error,
                }
                for c in service.callbacks
                if c.http_status != 200
            ],
            "tasks": len(mine),
            "statuses": dict(Counter(r.status or "unfinished" for r in mine)),
            "submit_to_dispatch_ms": _latency(_present([_dispatch_ms(r) for r in mine])),
            "submit_to_notify_ms": _latency(_present([_notify_ms(r) for r in mine])),
            "submit_to_dispatch_free_slot_ms": _latency(
                _present([_dispatch_ms(r) for r in mine_free])
            ),
            "utilization": use,
            "apps": by_app,
            "shares": shares,
            "rate": rate_held([d.at for d in service.received], limit) if limit else None,
        }

    by_priority: dict[str, Any] = {}
    for priority in sorted({r.task.priority for r in records}, reverse=True):
        mine = [r for r in records if r.task.priority == priority]
        by_priority[str(priority)] = {
            "tasks": len(mine),
            "submit_to_dispatch_ms": _latency(_present([_dispatch_ms(r) for r in mine])),
        }

    checks = [
        _check(
            "every task submitted",
            not send_failures,
            f"{len(send_failures)} messages refused by SQS" if send_failures else "",
        ),
        _senders_check(apps),
        _check(
            "every task reached a terminal state",
            not missing,
            f"{len(missing)} without a notification: {', '.join(missing[:10])}" if missing else "",
        ),
        _check(
            "exactly one notification per task",
            not doubled and not ledger.duplicates and not ledger.strangers,
            "; ".join(
                part
                for part in (
                    f"{len(doubled)} tasks with two notification ids" if doubled else "",
                    f"{len(ledger.duplicates)} repeated notification ids"
                    if ledger.duplicates
                    else "",
                    f"{len(ledger.strangers)} notifications of unknown tasks"
                    if ledger.strangers
                    else "",
                )
                if part
            ),
        ),
        _check(
            "notification attributes match the body",
            not ledger.attribute_mismatches,
            f"{len(ledger.attribute_mismatches)} notifications whose app, algorithm or status"
            " attribute differs from the body"
            if ledger.attribute_mismatches
            else "",
        ),
        _check(
            "no algorithm above its cap (cost units)",
            all(a["max_in_flight"] <= a["max_concurrency"] for a in algorithms.values()),
            ", ".join(
                f"{name} {a['max_in_flight']}/{a['max_concurrency']}"
                for name, a in algorithms.items()
            ),
        ),
        _check(
            "no endpoint above its cap (cost units)",
            all(
                e["max_in_flight"] <= e["max_concurrency"]
                for a in algorithms.values()
                for e in a["endpoints"]
            ),
            ", ".join(
                f"{name}/{e['name']} {e['max_in_flight']}/{e['max_concurrency']}"
                for name, a in algorithms.items()
                if len(a["endpoints"]) > 1
                for e in a["endpoints"]
            ),
        ),
        _utilization_check(algorithms, measured=bool(attempts)),
        _shares_check(algorithms, weights),
        _rate_check(algorithms),
        _check(
            "every succeeded result readable",
            not unread,
            f"{len(unread)} unreadable: {unread[:3]}" if unread else "",
        ),
    ]

    t = [s.t for s in timeline.samples]
    return {
        "passed": all(check["passed"] for check in checks),
        "checks": checks,
        "run": dict(run),
        "apps": {name: dict(app) for name, app in apps.items()},
        "statuses": {status: statuses.get(status, 0) for status in STATUSES},
        "latency_ms": {
            "submit_to_dispatch": _latency(_present([_dispatch_ms(r) for r in records])),
            "submit_to_dispatch_free_slot": _latency(
                _present([_dispatch_ms(r) for r in free_slot])
            ),
            "submit_to_notify": _latency(_present([_notify_ms(r) for r in records])),
        },
        "latency_by_app_ms": {
            app: {
                "submit_to_dispatch": _latency(
                    _present([_dispatch_ms(r) for r in records if r.task.app == app])
                ),
                "submit_to_notify": _latency(
                    _present([_notify_ms(r) for r in records if r.task.app == app])
                ),
            }
            for app in weights
        },
        "throughput_tasks_per_second": round(len(notified) / span, 2) if span > 0 else None,
        "algorithms": algorithms,
        "by_priority": by_priority,
        "notifications": {
            "tasks_notified": len(notified),
            "repeated_ids": len(ledger.duplicates),
            "unknown_tasks": len(ledger.strangers),
            "missing": missing,
        },
        "results": {"succeeded": len(succeeded), "read_ok": len(succeeded) - len(unread)},
        "emulator": dict(emulator),
        "tasks": [
            _task_row(record, min(submitted, default=0.0), wall_origin) for record in records
        ],
        "attempts": [
            {
                "ref": a.ref,
                "algorithm": a.algorithm,
                "attempt": a.attempt,
                "cost": a.cost,
                "status": a.status,
                "start_s": round(a.start - wall_origin, 3),
                "end_s": round(a.end - wall_origin, 3),
            }
            for a in sorted(attempts, key=lambda a: a.start)
        ],
        "timeline": {
            "t": [round(moment, 3) for moment in t],
            "running": {
                name: {
                    app: [s.running.get(name, {}).get(app, 0) for s in timeline.samples]
                    for app in weights
                }
                for name in algorithms
            },
            "queued": {
                name: {
                    app: [s.queued.get(name, {}).get(app, 0) for s in timeline.samples]
                    for app in weights
                }
                for name in algorithms
            },
            "requests_per_window": {
                service.name: _per_second([d.at - origin for d in service.received], t)
                for service in services
                if service.spec.rate_limit is not None
            },
        },
    }


def _wall_origin(services: Sequence[AlgorithmService], origin: float) -> float:
    """The wall-clock moment of the monotonic ``origin``, from any request the services
    recorded both ways (else now's offset)."""
    for service in services:
        for received in service.received:
            return received.wall - (received.at - origin)
    return time.time() - (time.monotonic() - origin)


def _first(dispatch: Received, accepted: Sequence[Received]) -> bool:
    """Whether ``dispatch`` is the first accepted dispatch of its task."""
    return next(d for d in accepted if d.ref == dispatch.ref) is dispatch


def _merged(intervals: Sequence[tuple[float, float]]) -> list[list[float]]:
    """The union of the intervals, as few as cover it, in order."""
    merged: list[list[float]] = []
    for since, until in sorted(i for i in intervals if i[1] > i[0]):
        if merged and since <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], until)
        else:
            merged.append([since, until])
    return [[round(since, 2), round(until, 2)] for since, until in merged]


def _utilization_check(algorithms: Mapping[str, Any], *, measured: bool) -> dict[str, Any]:
    parts, passed = [], measured
    for name, figures in algorithms.items():
        use = figures["utilization"]
        if not use["measured"]:
            parts.append(
                f"{name}: not measured ({use['queued_seconds']:.1f} s of backlog,"
                f" under {use['min_backlog_seconds']:g} s)"
            )
            continue
        ok = use["passed"]
        passed = passed and ok
        parts.append(
            f"{name}: {use['utilization']:.0%} of cap {use['cap']} over"
            f" {use['queued_seconds']:.1f} s waiting{'' if ok else ' (BELOW)'}"
        )
    if not measured:
        parts.insert(0, "NOT MEASURED: no attempt records")
    return _check(
        f"every cap kept busy while its tasks waited (>= {UTILIZATION_TARGET:.0%} each)",
        passed,
        "; ".join(parts),
    )


def _senders_check(apps: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    seen = {name: app.get("sender_seen") for name, app in apps.items() if "senders" in app}
    wrong = [name for name, sender in seen.items() if sender not in apps[name].get("senders", [])]
    return _check(
        "each app sends as one of its registered senders",
        not wrong,
        "; ".join(f"{name}: SQS records {sender}" for name, sender in seen.items()),
    )


def _shares_check(algorithms: Mapping[str, Any], weights: Mapping[str, float]) -> dict[str, Any]:
    expected = " / ".join(
        f"{SHORT.get(app, app)} {weight / sum(weights.values()):.0%}"
        for app, weight in weights.items()
    )
    parts, passed = [], True
    for name, figures in algorithms.items():
        shares = figures["shares"]
        if not shares["measured"]:
            parts.append(
                f"{name}: not measured ({shares['contended_tasks']} contended dispatches,"
                f" a window needs {shares['window_tasks']})"
            )
            continue
        passed = passed and shares["passed"]
        worst = max(window["deviation"] for window in shares["windows"])
        got = " / ".join(
            f"{SHORT.get(app, app)} {share:.0%}"
            for app, share in shares["contended_shares"].items()
        )
        parts.append(
            f"{name}: {got} over {shares['contended_tasks']} contended dispatches,"
            f" {len(shares['windows'])} window(s), worst {worst:.0%} off"
        )
    measured = any(figures["shares"]["measured"] for figures in algorithms.values())
    if not measured:
        parts.insert(0, "NOTHING MEASURED: too little contention in this run")
    return _check(
        f"weighted shares while both apps waited ({expected}, ±{SHARE_TOLERANCE:.0%})",
        passed,
        "; ".join(parts),
    )


def _rate_check(algorithms: Mapping[str, Any]) -> dict[str, Any]:
    parts, passed = [], True
    for name, figures in algorithms.items():
        rate = figures["rate"]
        if rate is None:
            continue
        passed = passed and rate["passed"]
        limit = rate["limit"]
        parts.append(
            f"{name}: {rate['requests']} requests in {rate['span_seconds']:.1f} s, at most"
            f" {rate['max_per_window']} in any {rate['window_seconds']:g} s"
            f" (bound {rate['window_bound']:g}); worst run needed"
            f" {rate['stretch_seconds']:.3f} s of jitter (allowed {rate['jitter_seconds']:g} s)"
            f" against burst {limit['burst']} + {limit['requests']}/{limit['per_seconds']:g} s"
        )
    return _check(
        "rate limit held (requests <= burst + rate x (T + jitter) for every T)",
        passed,
        "; ".join(parts) or "not measured: no algorithm has a rate limit",
    )


def _check(name: str, passed: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "passed": passed, "detail": detail}


def _task_row(record: TaskRecord, origin: float, wall_origin: float) -> dict[str, Any]:
    """One task; ``*_s`` are seconds on the timeline (``origin`` monotonic,
    ``wall_origin`` the same moment on the wall clock, for Baton's timestamps)."""
    dispatch, notify = _dispatch_ms(record), _notify_ms(record)
    notified = None if record.notified_at is None else round(record.notified_at - origin, 3)

    def wall(moment: float | None) -> float | None:
        return None if moment is None else round(moment - wall_origin, 3)

    return {
        "ref": record.task.ref,
        "app": record.task.app,
        "algorithm": record.task.algorithm,
        "cost": record.task.cost,
        "document": record.task.document,
        "priority": record.task.priority,
        "task_id": record.task_id,
        "status": record.status,
        "attempts": record.attempts,
        "dispatch_requests": record.dispatches,
        "error_code": record.error_code,
        "submit_to_dispatch_ms": None if dispatch is None else round(dispatch, 1),
        "submit_to_notify_ms": None if notify is None else round(notify, 1),
        "arrived_s": wall(record.created_wall),
        "first_dispatched_s": wall(record.first_dispatched_wall),
        "notified_s": notified,
        "result_ok": record.result_ok,
    }


# -- summary ------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _share(got: float | None, expected: float | None) -> str:
    if got is None or expected is None:
        return "-"
    return f"{got:.0%} (want {expected:.0%})"


def summary_tables(report: Mapping[str, Any]) -> Group:
    statuses = Table(title="Tasks by status", title_justify="left")
    statuses.add_column("status")
    statuses.add_column("tasks", justify="right")
    for status, count in report["statuses"].items():
        statuses.add_row(status, str(count))
    statuses.add_row(Text("total", style="bold"), str(sum(report["statuses"].values())))

    latency = Table(title="Latency and throughput", title_justify="left")
    latency.add_column("measure")
    for column in ("p50 ms", "p95 ms", "max ms"):
        latency.add_column(column, justify="right")
    for name, label in (
        ("submit_to_dispatch", "submit -> dispatch"),
        ("submit_to_dispatch_free_slot", "submit -> dispatch, a free slot"),
        ("submit_to_notify", "submit -> notify"),
    ):
        figures = report["latency_ms"][name]
        latency.add_row(label, _ms(figures["p50"]), _ms(figures["p95"]), _ms(figures["max"]))
    run = report["run"]
    throughput = report["throughput_tasks_per_second"]
    figures_line = Text(
        f"throughput {throughput if throughput is not None else '-'} tasks/s"
        f" | {run.get('run_seconds', 0):.1f} s from the first submission to the last notification"
        f" | wall time {run.get('wall_seconds', 0):.1f} s"
        f" (stack start {run.get('setup_seconds', 0):.1f} s)\n"
    )

    algorithms = Table(title="Algorithms", title_justify="left")
    for column in (
        "algorithm",
        "max/cap",
        "requests",
        "429s",
        "late 409s",
        "succeeded",
        "failed",
        "timed out",
        "p50 dispatch",
        "p50 notify",
    ):
        algorithms.add_column(column, justify="left" if column == "algorithm" else "right")
    for name, figures in report["algorithms"].items():
        over = figures["max_in_flight"] > figures["max_concurrency"]
        algorithms.add_row(
            name,
            Text(
                f"{figures['max_in_flight']}/{figures['max_concurrency']}",
                style="bold red" if over else "green",
            ),
            str(figures["requests"]),
            str(figures["refused_busy_429"]),
            str(figures["callback_answers"].get("409", 0)),
            str(figures["statuses"].get("succeeded", 0)),
            str(figures["statuses"].get("failed", 0)),
            str(figures["statuses"].get("timed_out", 0)),
            _ms(figures["submit_to_dispatch_ms"]["p50"]) + " ms",
            _ms(figures["submit_to_notify_ms"]["p50"]) + " ms",
        )

    priorities = Table(title="Dispatch order by priority", title_justify="left")
    for column in ("priority", "tasks", "p50 submit -> dispatch", "p95"):
        priorities.add_column(column, justify="right")
    for priority, figures in report["by_priority"].items():
        waited = figures["submit_to_dispatch_ms"]
        priorities.add_row(
            priority, str(figures["tasks"]), _ms(waited["p50"]) + " ms", _ms(waited["p95"]) + " ms"
        )

    shares, fleet, busy = _shares_table(report), _fleet_table(report), _utilization_table(report)

    checks = Table(title="Checks", title_justify="left", show_header=False)
    checks.add_column("result")
    checks.add_column("check")
    checks.add_column("detail", style="dim")
    for check in report["checks"]:
        mark = Text("PASS", style="bold green") if check["passed"] else Text("FAIL", "bold red")
        checks.add_row(mark, check["name"], check["detail"])
    bound = Text(throughput_caption(report) + "\n")
    return Group(
        statuses, latency, figures_line, algorithms, busy, bound, fleet, shares, priorities, checks
    )


def _utilization_table(report: Mapping[str, Any]) -> Table:
    busy = Table(
        title="Caps in use while tasks waited (Baton's attempt records)", title_justify="left"
    )
    for column in (
        "algorithm",
        "cap",
        "waited",
        "mean in flight",
        "utilization",
        "service at work",
        "at cap",
        "result",
    ):
        busy.add_column(column, justify="left" if column in ("algorithm", "result") else "right")
    for name, figures in report["algorithms"].items():
        use = figures["utilization"]
        ratio, mean = use["utilization"], use["mean_in_flight"]
        if not use["measured"]:
            verdict = Text("not measured", "dim")
        else:
            verdict = Text("held", "green") if use["passed"] else Text("below", "bold red")
        rate = use["capacity_tasks_per_second"]
        busy.add_row(
            name,
            str(use["cap"]),
            f"{use['queued_seconds']:.1f} s",
            "-" if mean is None else f"{mean:.2f}",
            "-" if ratio is None else f"{ratio:.0%}",
            "-" if use.get("at_service") is None else f"{use['at_service']:.0%}",
            "-" if rate is None else f"{rate:.2f} tasks/s",
            verdict,
        )
    return busy


def _shares_table(report: Mapping[str, Any]) -> Table:
    shares = Table(title="Shares while both apps waited (dispatched cost)", title_justify="left")
    for column in ("algorithm", "contended", "windows", "portal", "bulk", "worst off", "result"):
        shares.add_column(column, justify="left" if column in ("algorithm", "result") else "right")
    for name, figures in report["algorithms"].items():
        share = figures["shares"]
        got = share["contended_shares"]
        if share["measured"]:
            worst = max(window["deviation"] for window in share["windows"])
            verdict = Text("held", "green") if share["passed"] else Text("broken", "bold red")
        else:
            worst, verdict = None, Text(f"not measured (< {share['window_tasks']})", "dim")
        shares.add_row(
            name,
            f"{share['contended_tasks']} tasks",
            str(len(share["windows"])),
            _share(got.get(PORTAL), share["expected"].get(PORTAL)),
            _share(got.get(BULK), share["expected"].get(BULK)),
            "-" if worst is None else f"{worst:.0%}",
            verdict,
        )
    return shares


def _fleet_table(report: Mapping[str, Any]) -> Table:
    fleet = Table(title="Endpoints and rate limit", title_justify="left")
    for column in (
        "algorithm",
        "endpoint",
        "max/cap (cost)",
        "requests",
        "portal cost",
        "bulk cost",
    ):
        fleet.add_column(column, justify="left" if column in ("algorithm", "endpoint") else "right")
    for name, figures in report["algorithms"].items():
        for endpoint in figures["endpoints"]:
            fleet.add_row(
                name,
                endpoint["name"],
                f"{endpoint['max_in_flight']}/{endpoint['max_concurrency']}",
                str(endpoint["requests"]),
                str(figures["apps"].get(PORTAL, {}).get("dispatched_cost", 0)),
                str(figures["apps"].get(BULK, {}).get("dispatched_cost", 0)),
            )
        rate = figures["rate"]
        if rate is not None:
            limit = rate["limit"]
            fleet.add_row(
                name,
                Text(
                    f"rate limit {limit['requests']}/{limit['per_seconds']:g} s, burst"
                    f" {limit['burst']}: at most {rate['max_per_window']} requests in any"
                    f" {rate['window_seconds']:g} s (bound {rate['window_bound']:g}),"
                    f" jitter needed {rate['stretch_seconds']:.3f} s",
                    style="dim",
                ),
                "",
                "",
                "",
                "",
            )
    return fleet


# -- files --------------------------------------------------------------------------------


def write_json(report: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path


def plot_timeline(report: Mapping[str, Any], path: Path) -> Path:
    """One panel per algorithm (cost in flight, stacked by app, against its cap, with the
    share windows shaded and its backlog marked), the rate-limited algorithm's requests
    against its bound, then each app's waiting tasks; the title at the top and, at the
    bottom, a caption saying what bounded the run's throughput."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    timeline = report["timeline"]
    t = timeline["t"]
    names = list(report["algorithms"])
    limited = list(timeline.get("requests_per_window", {}))
    apps = list(report["apps"])
    rows = len(names) + len(limited) + 1
    caption = textwrap.wrap(throughput_caption(report), CAPTION_WIDTH)
    # Inches above the panels for the title and the legend, below them for the axis
    # label and the caption: the figure grows by them, the panels keep their size.
    head, foot = 1.45, 0.6 + 0.17 * len(caption)
    height = 2.1 * rows + head + foot
    figure, axes = plt.subplots(
        rows,
        1,
        figsize=(11, height),
        sharex=True,
        gridspec_kw={"height_ratios": [1.0] * (rows - 1) + [1.3]},
    )
    for axis, name in zip(axes, names, strict=False):
        _plot_algorithm(axis, report, name, t)
    figure.legend(
        handles=[
            Patch(color=APP_COLOURS.get(app, "#777777"), alpha=0.7, label=f"{app} in flight")
            for app in apps
        ]
        + [Patch(color=BACKLOG_COLOUR, alpha=0.6, label="its tasks waiting in Baton")]
        + [Patch(color="#bbbbbb", alpha=0.35, label="share window (both apps waiting)")]
        + [
            Line2D(
                [],
                [],
                marker=marker,
                color=shade,
                linestyle="None",
                label=f"{status.replace('_', ' ')} (when notified)",
            )
            for status, (marker, shade) in MARKERS.items()
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, 1 - 0.62 / height),
        ncol=4,
        fontsize=8,
        frameon=False,
    )
    for axis, name in zip(axes[len(names) :], limited, strict=False):
        rate = report["algorithms"][name]["rate"]
        bound = rate["window_bound"]
        axis.step(t, timeline["requests_per_window"][name], where="post", color="#8c564b")
        axis.axhline(bound, color="black", linestyle="--", linewidth=1)
        axis.annotate(
            f"bound: burst + rate x {rate['window_seconds']:g} s = {bound:g}",
            xy=(1, bound),
            xycoords=("axes fraction", "data"),
            xytext=(-4, 3),
            textcoords="offset points",
            ha="right",
            va="bottom",
            fontsize=8,
        )
        axis.set_ylim(0, bound + 2)
        axis.set_ylabel("requests")
        limit = rate["limit"]
        axis.set_title(
            f"{name}: requests received in the last {rate['window_seconds']:g} s"
            f" (rate limit {limit['requests']}/{limit['per_seconds']:g} s, burst {limit['burst']});"
            f" {rate['requests']} requests, at most {rate['max_per_window']} in any"
            f" {rate['window_seconds']:g} s, worst run {rate['stretch_seconds']:.2f} s early",
            loc="left",
            fontsize=9,
        )
        axis.grid(axis="y", alpha=0.3)
    queue_axis = axes[-1]
    for app in apps:
        waiting = [
            sum(values)
            for values in zip(*(timeline["queued"][name][app] for name in names), strict=True)
        ]
        queue_axis.step(
            t, waiting, where="post", color=APP_COLOURS.get(app), label=app, linewidth=1.4
        )
    queue_axis.set_ylabel("waiting tasks")
    queue_axis.set_xlabel("seconds since the first task was submitted")
    queue_axis.set_title(
        "Tasks waiting per app, all algorithms (sent, not running, not finished)",
        loc="left",
        fontsize=9,
    )
    queue_axis.legend(loc="upper right", fontsize=8, frameon=False)
    queue_axis.grid(alpha=0.3)
    figure.suptitle(_title(report), y=1 - 0.12 / height, va="top", fontsize=11)
    figure.text(
        0.012, 0.1 / height, "\n".join(caption), ha="left", va="bottom", fontsize=9, wrap=False
    )
    figure.subplots_adjust(
        left=0.07, right=0.98, top=1 - head / height, bottom=foot / height, hspace=0.55
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _title(report: Mapping[str, Any]) -> str:
    run = report["run"]
    by_app = report.get("latency_by_app_ms", {})
    waits = ", ".join(
        f"{SHORT.get(app, app)} {_ms(figures['submit_to_dispatch']['p50'])} ms"
        for app, figures in by_app.items()
    )
    weights = " : ".join(
        f"{SHORT.get(app, app)} {figures.get('weight', 1):g}"
        for app, figures in report["apps"].items()
    )
    free = report["latency_ms"].get("submit_to_dispatch_free_slot", {}).get("p50")
    throughput = report.get("throughput_tasks_per_second")
    return (
        f"Baton demo: {run.get('tasks')} tasks from two apps in {run.get('run_seconds', 0):.1f} s"
        f" ({'-' if throughput is None else throughput} tasks/s; a minute lasts"
        f" {run.get('tick_seconds')} s)\n"
        f"weights {weights}; p50 submit -> dispatch {waits};"
        f" with a free slot {_ms(free)} ms"
    )


def throughput_caption(report: Mapping[str, Any]) -> str:
    """What bounded the run's throughput, in a sentence or three, from the report."""
    algorithms = report["algorithms"]
    busy = [
        f"{name} {figures['utilization']['utilization']:.0%} of {figures['max_concurrency']}"
        for name, figures in algorithms.items()
        if figures["utilization"]["measured"]
    ]
    rates = {
        name: figures["utilization"]["capacity_tasks_per_second"]
        for name, figures in algorithms.items()
        if figures["utilization"]["capacity_tasks_per_second"] is not None
    }
    throughput = report.get("throughput_tasks_per_second")
    whole = (
        ""
        if throughput is None
        else f" Over the whole run {throughput} tasks/s: the first tasks' arrival and the last"
        " ones' tail run below the caps."
    )
    bound = (
        f" At its cap an algorithm finishes cap / (cost x run time) tasks a second:"
        f" {', '.join(f'{name} {rate:.2f}' for name, rate in rates.items())}"
        f" ({sum(rates.values()):.1f} in all)."
        if rates
        else ""
    )
    if not busy:
        return (
            "What bounds throughput: the caps, once saturated; no algorithm had a backlog of"
            f" {MIN_BACKLOG_SECONDS:g} s here, so how busy they were is not measured.{bound}{whole}"
        )
    return (
        "What bounds throughput here: the caps, once saturated. While its tasks waited, each"
        " algorithm kept its cap busy (cost in flight, Baton's attempt records):"
        f" {', '.join(busy)}.{bound}{whole}"
    )


def _plot_algorithm(axis: Any, report: Mapping[str, Any], name: str, t: Sequence[float]) -> None:
    figures = report["algorithms"][name]
    cap = figures["max_concurrency"]
    # Above the cap line: the share labels, the outcome markers, the backlog band.
    room = max(1.3, cap * 0.3)
    running = report["timeline"]["running"][name]
    base = [0] * len(t)
    for app, values in running.items():
        top = [low + value for low, value in zip(base, values, strict=True)]
        axis.fill_between(
            t, base, top, step="post", color=APP_COLOURS.get(app, "#777777"), alpha=0.7, lw=0
        )
        base = top
    for window in figures["shares"]["windows"]:
        axis.axvspan(window["from_s"], window["to_s"], color="#bbbbbb", alpha=0.35, lw=0)
        bulk = window["shares"].get(BULK)
        if bulk is not None:
            axis.annotate(
                f"bulk {bulk:.0%}",
                xy=((window["from_s"] + window["to_s"]) / 2, cap + room * 0.1),
                ha="center",
                va="bottom",
                fontsize=7,
            )
    use = figures["utilization"]
    axis.broken_barh(
        [(since, until - since) for since, until in use.get("backlog_s", [])],
        (cap + room * 0.8, room * 0.15),
        color=BACKLOG_COLOUR,
        alpha=0.6,
        lw=0,
    )
    axis.axhline(cap, color="black", linestyle="--", linewidth=1)
    endpoints = figures["endpoints"]
    label = f"max_concurrency {cap}"
    if len(endpoints) > 1:
        label += " = " + " + ".join(f"{e['name']} {e['max_concurrency']}" for e in endpoints)
    axis.annotate(
        label,
        xy=(1, cap),
        xycoords=("axes fraction", "data"),
        xytext=(-4, -3),
        textcoords="offset points",
        ha="right",
        va="top",
        fontsize=8,
    )
    for status, (marker, shade) in MARKERS.items():
        moments = [
            row["notified_s"]
            for row in report["tasks"]
            if row["algorithm"] == name and row["status"] == status and row["notified_s"]
        ]
        axis.scatter(moments, [cap + room * 0.55] * len(moments), marker=marker, color=shade, s=22)
    axis.set_ylim(0, cap + room)
    step = max(1, math.ceil(cap / 6))
    axis.set_yticks(range(0, cap + 1, step))
    axis.set_ylabel("cost in flight")
    statuses = figures["statuses"]
    shares = figures["shares"]
    if shares["measured"]:
        got = shares["contended_shares"]
        share_text = (
            f"while both apps waited: portal {got.get(PORTAL, 0):.0%} /"
            f" bulk {got.get(BULK, 0):.0%} of {shares['contended_cost']} cost units"
        )
    else:
        share_text = (
            f"shares not measured ({shares['contended_tasks']} dispatches while both waited)"
        )
    busy_text = (
        f"busy {use['utilization']:.0%} of cap while tasks waited"
        if use["measured"]
        else "busy: not measured"
    )
    costs = figures["cost_per_task"]
    cost_text = f", cost {costs[0]}-{costs[-1]} per task" if costs and costs[-1] > 1 else ""
    endpoint_text = (
        " ("
        + ", ".join(f"{e['name']} {e['max_in_flight']}/{e['max_concurrency']}" for e in endpoints)
        + ")"
        if len(endpoints) > 1
        else ""
    )
    axis.set_title(
        f"{name}: max {figures['max_in_flight']}/{cap}{endpoint_text}{cost_text};"
        f" {statuses.get('succeeded', 0)} ok, {statuses.get('failed', 0)} failed,"
        f" {statuses.get('timed_out', 0)} timed out, {figures['refused_busy_429']} x 429\n"
        f"{busy_text} | {share_text}",
        loc="left",
        fontsize=9,
    )
    axis.grid(axis="y", alpha=0.3)
