"""What the demo shows: the live progress view, the summary tables, the JSON report
and the PNG timeline. Everything here reads the demo's records; nothing acts."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from baton_local.demo.algorithms import AlgorithmService
from baton_local.demo.app import Ledger, TaskRecord

STATUSES = ("succeeded", "failed", "timed_out", "cancelled")
MARKERS = {"failed": ("v", "#ff7f0e"), "timed_out": ("x", "#9467bd")}
COLOURS = {"text-stats": "#1f77b4", "keywords": "#d62728", "classify": "#2ca02c"}


@dataclass
class Sample:
    t: float
    """Seconds since the first task was submitted."""
    running: dict[str, int]
    queued: dict[str, int]


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
        mine = counts.get(service.name, Counter())
        rows.append(
            {
                "algorithm": service.name,
                "running": running,
                "cap": service.spec.max_concurrency,
                "max": most,
                "queued": mine["queued"] + mine["planned"],
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
    table = Table(title="Baton demo: docs-portal on the emulated stack", title_justify="left")
    for name in ("algorithm", "running/cap", "max", "queued", "done", "failed", "timed out"):
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
            f"{row['algorithm']} {row['running']}/{row['cap']} q{row['queued']} "
            f"ok{row['done']} f{row['failed']} t{row['timed_out']}"
        )
    return f"[{elapsed:5.1f}s] {finished}/{total} finished | " + " | ".join(parts)


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
) -> dict[str, Any]:
    """Every figure of the run, and the checks that decide the exit code."""
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

    algorithms: dict[str, Any] = {}
    for service in services:
        mine = [r for r in records if r.task.algorithm == service.name]
        algorithms[service.name] = {
            "max_concurrency": service.spec.max_concurrency,
            "max_in_flight": service.max_in_flight,
            "service_workers": service.workers,
            "requests": service.requests,
            "accepted": service.accepted,
            "refused_busy_429": service.refused_busy,
            "rejected_422": service.rejected,
            "stalled": service.stalled,
            "callback_answers": dict(Counter(str(c.http_status) for c in service.callbacks)),
            "callbacks_refused": [
                {
                    "ref": c.ref,
                    "attempt": c.attempt,
                    "status": c.status,
                    "http_status": c.http_status,
                    "error": (c.answer.get("error") or {}).get("code"),
                }
                for c in service.callbacks
                if c.http_status != 200
            ],
            "tasks": len(mine),
            "statuses": dict(Counter(r.status or "unfinished" for r in mine)),
            "submit_to_dispatch_ms": _latency(_present([_dispatch_ms(r) for r in mine])),
            "submit_to_notify_ms": _latency(_present([_notify_ms(r) for r in mine])),
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
            "no algorithm above its cap",
            all(a["max_in_flight"] <= a["max_concurrency"] for a in algorithms.values()),
            ", ".join(
                f"{name} {a['max_in_flight']}/{a['max_concurrency']}"
                for name, a in algorithms.items()
                if a["max_in_flight"] > a["max_concurrency"]
            ),
        ),
        _check(
            "every succeeded result readable",
            not unread,
            f"{len(unread)} unreadable: {unread[:3]}" if unread else "",
        ),
    ]

    return {
        "passed": all(check["passed"] for check in checks),
        "checks": checks,
        "run": dict(run),
        "statuses": {status: statuses.get(status, 0) for status in STATUSES},
        "latency_ms": {
            "submit_to_dispatch": _latency(_present([_dispatch_ms(r) for r in records])),
            "submit_to_notify": _latency(_present([_notify_ms(r) for r in records])),
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
        "tasks": [_task_row(record, min(submitted, default=0.0)) for record in records],
        "timeline": {
            "t": [round(s.t, 3) for s in timeline.samples],
            "running": {
                name: [s.running.get(name, 0) for s in timeline.samples] for name in algorithms
            },
            "queued": {
                name: [s.queued.get(name, 0) for s in timeline.samples] for name in algorithms
            },
        },
    }


def _check(name: str, passed: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "passed": passed, "detail": detail}


def _task_row(record: TaskRecord, origin: float) -> dict[str, Any]:
    dispatch, notify = _dispatch_ms(record), _notify_ms(record)
    notified = None if record.notified_at is None else round(record.notified_at - origin, 3)
    return {
        "ref": record.task.ref,
        "algorithm": record.task.algorithm,
        "document": record.task.document,
        "priority": record.task.priority,
        "task_id": record.task_id,
        "status": record.status,
        "attempts": record.attempts,
        "dispatch_requests": record.dispatches,
        "error_code": record.error_code,
        "submit_to_dispatch_ms": None if dispatch is None else round(dispatch, 1),
        "submit_to_notify_ms": None if notify is None else round(notify, 1),
        "notified_s": notified,
        "result_ok": record.result_ok,
    }


# -- summary ------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


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

    checks = Table(title="Checks", title_justify="left", show_header=False)
    checks.add_column("result")
    checks.add_column("check")
    checks.add_column("detail", style="dim")
    for check in report["checks"]:
        mark = Text("PASS", style="bold green") if check["passed"] else Text("FAIL", "bold red")
        checks.add_row(mark, check["name"], check["detail"])
    return Group(statuses, latency, figures_line, algorithms, priorities, checks)


# -- files --------------------------------------------------------------------------------


def write_json(report: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path


def plot_timeline(report: Mapping[str, Any], path: Path) -> Path:
    """One panel per algorithm (running against its cap), then the queue depths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    timeline = report["timeline"]
    t = timeline["t"]
    names = list(report["algorithms"])
    figure, axes = plt.subplots(
        len(names) + 1,
        1,
        figsize=(10, 2.0 * len(names) + 3),
        sharex=True,
        gridspec_kw={"height_ratios": [1] * len(names) + [1.6]},
    )
    for axis, name in zip(axes, names, strict=False):
        figures = report["algorithms"][name]
        cap = figures["max_concurrency"]
        colour = COLOURS.get(name, "#555555")
        axis.step(t, timeline["running"][name], where="post", color=colour, linewidth=1.4)
        axis.fill_between(t, timeline["running"][name], step="post", color=colour, alpha=0.15)
        axis.axhline(cap, color="black", linestyle="--", linewidth=1)
        axis.annotate(
            f"max_concurrency {cap}",
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
            axis.scatter(moments, [cap + 0.55] * len(moments), marker=marker, color=shade, s=22)
        axis.set_ylim(0, cap + 1.2)
        axis.set_yticks(range(cap + 1))
        axis.set_ylabel("in flight")
        statuses = figures["statuses"]
        axis.set_title(
            f"{name}: max {figures['max_in_flight']}/{cap} in flight;"
            f" {statuses.get('succeeded', 0)} succeeded, {statuses.get('failed', 0)} failed,"
            f" {statuses.get('timed_out', 0)} timed out, {figures['refused_busy_429']} x 429",
            loc="left",
            fontsize=9,
        )
        axis.grid(axis="y", alpha=0.3)
    axes[0].legend(
        handles=[
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
        loc="lower right",
        bbox_to_anchor=(1.0, 1.0),
        ncol=len(MARKERS),
        fontsize=8,
        frameon=False,
    )
    queue_axis = axes[-1]
    for name in names:
        queue_axis.step(
            t,
            timeline["queued"][name],
            where="post",
            color=COLOURS.get(name),
            label=name,
            linewidth=1.4,
        )
    total = [sum(values) for values in zip(*timeline["queued"].values(), strict=True)]
    queue_axis.step(t, total, where="post", color="black", linestyle=":", label="all")
    queue_axis.set_ylabel("waiting tasks")
    queue_axis.set_xlabel("seconds since the first task was submitted")
    queue_axis.set_title(
        "Queue depth (submitted, not running, not finished)", loc="left", fontsize=9
    )
    queue_axis.legend(loc="upper right", fontsize=8, frameon=False)
    queue_axis.grid(alpha=0.3)
    dispatch = report["latency_ms"]["submit_to_dispatch"]
    notify = report["latency_ms"]["submit_to_notify"]
    figure.suptitle(
        f"Baton demo: {report['run'].get('tasks')} tasks in"
        f" {report['run'].get('run_seconds', 0):.1f} s, tick {report['run'].get('tick_seconds')} s"
        f" | submit->dispatch p50 {_ms(dispatch['p50'])} ms, p95 {_ms(dispatch['p95'])} ms"
        f" | submit->notify p50 {_ms(notify['p50'])} ms, p95 {_ms(notify['p95'])} ms",
        fontsize=10,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
