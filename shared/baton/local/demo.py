"""``baton demo``: a small document platform on the emulated stack.

Three algorithm services on loopback (``demo_algorithms``) do real work on the
sample documents; a business app, docs-portal (``demo_app``), submits tasks through
the intake queue and reads its notifications and results; the whole template runs
in the local emulator (``baton.local.emulator``). A live view shows each algorithm's
running tasks against its cap; at the end a summary, a JSON report and a PNG
timeline (``demo_report``) say what happened.

The exit code is 0 when every task reached a terminal state with exactly one
notification, every succeeded result could be read, and no algorithm ever had more
attempts in flight than its ``max_concurrency``; 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from baton.local.demo_algorithms import SERVICES, AlgorithmService, ServiceSpec, load_corpus
from baton.local.demo_app import DocsPortal, Ledger, plan_tasks
from baton.local.demo_report import (
    Sample,
    Timeline,
    build_report,
    plot_timeline,
    progress_line,
    progress_table,
    summary_tables,
    write_json,
)
from rich.console import Console
from rich.live import Live

SAMPLE_SECONDS = 0.1
DRAIN_SECONDS = 1.0
"""After the last notification, listen this much longer for a repeated one."""
WARM_FUNCTIONS = ("PromoteFunction", "DispatchFunction", "SweepFunction")
"""The scheduled functions: once each has run, the stack's cold starts are behind it
(on a small machine they take seconds each, and they all start together)."""
WARM_UP_SECONDS = 30.0


@dataclass(frozen=True)
class DemoOptions:
    tasks: int = 200
    seed: int = 7
    tick: float = 1.0
    """Seconds per emulated minute (the schedules' period)."""
    reports: Path = Path("reports")
    redis_url: str | None = None
    database_url: str | None = None
    timeout: float = 120.0
    """Overall limit of the run, stack start included."""
    live: bool | None = None
    """None: a live view when stdout is a terminal, progress lines otherwise."""
    template: Path | None = None
    services: Sequence[ServiceSpec] = field(default=SERVICES)


@dataclass(frozen=True)
class DemoResult:
    exit_code: int
    report: dict[str, Any]
    json_path: Path
    png_path: Path


def find_template(start: Path | None = None) -> Path:
    """template.yaml of the working directory or of the checkout this package runs from."""
    candidates = [(start or Path.cwd()) / "template.yaml"]
    candidates += [parent / "template.yaml" for parent in Path(__file__).resolve().parents]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("template.yaml not found: run from the Baton checkout (--template)")


def run_demo(options: DemoOptions, console: Console | None = None) -> DemoResult:
    """Run the whole demo; the returned exit code says whether every check passed."""
    run = _DemoRun(options, console or _console())
    with ExitStack() as stack:
        run.start(stack)
        run.drive()
    return run.finish()


class _DemoRun:
    def __init__(self, options: DemoOptions, console: Console) -> None:
        self.options = options
        self.console = console
        self.live = console.is_terminal if options.live is None else options.live
        self.started = time.monotonic()
        self.run_id = uuid.uuid4().hex[:8]
        corpus = load_corpus()
        self.plan = plan_tasks(
            options.tasks, options.seed, sorted(corpus), [spec.name for spec in options.services]
        )
        self.ledger = Ledger(self.plan)
        self.timeline = Timeline()
        self.services = [
            AlgorithmService(spec, corpus, listener=self.ledger, seed=options.seed)
            for spec in options.services
        ]
        self.portal: DocsPortal | None = None
        self.cloud: Any = None
        self.setup_seconds = 0.0
        self.submitted_at = 0.0
        self.timed_out = False

    def start(self, stack: ExitStack) -> None:
        """The algorithm services, the emulated stack, and docs-portal's subscription."""
        from baton.local.emulator import LocalCloud, LocalOptions

        for service in self.services:
            service.start()
            stack.callback(service.stop)
        registry = {s.name: s.spec.registry_entry(s.endpoint) for s in self.services}
        state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="baton-demo-")))
        self.console.print(
            f"[bold]baton demo[/]: {len(self.plan)} tasks for"
            f" {', '.join(f'{s.name} (cap {s.spec.max_concurrency})' for s in self.services)};"
            f" starting the emulated stack (a minute = {self.options.tick:g} s) ..."
        )
        self.cloud = stack.enter_context(
            LocalCloud(
                LocalOptions(
                    template=self.options.template or find_template(),
                    env_file=None,
                    redis_url=self.options.redis_url,
                    database_url=self.options.database_url,
                    tick_seconds=self.options.tick,
                    state_dir=state_dir,
                    parameter_overrides={"AlgorithmsJson": json.dumps(registry)},
                    region="eu-west-1",
                    quiet=True,
                )
            )
        )
        self._warm_up()
        self.setup_seconds = time.monotonic() - self.started
        self.portal = DocsPortal(
            self.cloud.boto_session(), self.cloud.outputs, self.ledger, self.run_id
        )
        self.portal.subscribe()
        stack.callback(self.portal.unsubscribe)
        self.portal.start()
        stack.callback(self.portal.stop)

    def _warm_up(self) -> None:
        """Wait for the scheduled functions' first runs, so that the latencies measure
        Baton rather than a dozen interpreters starting at once."""
        limit = time.monotonic() + WARM_UP_SECONDS
        while time.monotonic() < limit:
            if all(self.cloud.invocations[name] > 0 for name in WARM_FUNCTIONS):
                return
            time.sleep(0.1)

    def drive(self) -> None:
        """Submit every task, then watch until each is notified (and its result read)."""
        assert self.portal is not None
        deadline = self.started + self.options.timeout
        self.submitted_at = time.monotonic()
        stop_sampling = threading.Event()
        sampler = threading.Thread(
            target=_sample,
            args=(self.ledger, self.services, self.timeline, self.submitted_at, stop_sampling),
            daemon=True,
        )
        sampler.start()
        self.portal.submit(self.plan)
        with _progress(
            self.console,
            live=self.live,
            ledger=self.ledger,
            services=self.services,
            origin=self.submitted_at,
        ) as refresh:
            while not (self.ledger.all_final() and self.ledger.results_pending() == 0):
                if time.monotonic() > deadline:
                    self.timed_out = True
                    break
                time.sleep(0.25)
                refresh()
            self.portal.stop(drain_seconds=0 if self.timed_out else DRAIN_SECONDS)
            stop_sampling.set()
            sampler.join(timeout=5)
            refresh()

    def finish(self) -> DemoResult:
        """The report, its files, the summary on the console, and the verdict."""
        options, cloud = self.options, self.cloud
        finished = self.ledger.finished_at
        errors = list(cloud.errors) if cloud is not None else []
        run = {
            "run_id": self.run_id,
            "tasks": options.tasks,
            "seed": options.seed,
            "tick_seconds": options.tick,
            "redis": "given" if options.redis_url else "embedded",
            "database": "given" if options.database_url else "embedded",
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "setup_seconds": round(self.setup_seconds, 2),
            "run_seconds": round((finished or time.monotonic()) - self.submitted_at, 2),
            "wall_seconds": round(time.monotonic() - self.started, 2),
            "timed_out": self.timed_out,
        }
        report = build_report(
            ledger=self.ledger,
            services=self.services,
            timeline=self.timeline,
            run=run,
            send_failures=self.portal.send_failures if self.portal else [],
            emulator={
                "invocations": dict(cloud.invocations) if cloud is not None else {},
                "errors": [{"function": f, "error": str(e)} for f, e in errors[:50]],
            },
        )
        if self.timed_out:
            report["passed"] = False
            report["checks"].append(
                {"name": f"finished within {options.timeout:g} s", "passed": False, "detail": ""}
            )
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        json_path = write_json(report, options.reports / f"demo-{stamp}.json")
        png_path = plot_timeline(report, options.reports / f"demo-{stamp}.png")
        self.console.print(summary_tables(report))
        if errors:
            self.console.print(f"[yellow]the emulator recorded {len(errors)} function errors[/]")
        self.console.print(f"report:   {json_path}\ntimeline: {png_path}")
        verdict = "[bold green]PASS[/]" if report["passed"] else "[bold red]FAIL[/]"
        self.console.print(f"{verdict} in {run['wall_seconds']:.1f} s")
        return DemoResult(0 if report["passed"] else 1, report, json_path, png_path)


def _console() -> Console:
    """The terminal; 120 columns when the output goes to a file or a pipe (CI)."""
    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 120))


def _sample(
    ledger: Ledger,
    services: Sequence[AlgorithmService],
    timeline: Timeline,
    origin: float,
    stop: threading.Event,
) -> None:
    """~10 times a second: running per algorithm (the services' own counters) and the
    tasks waiting per algorithm (the ledger: submitted, not running, not finished)."""
    while True:
        counts = ledger.counts()
        timeline.add(
            Sample(
                t=time.monotonic() - origin,
                running={service.name: service.snapshot()[0] for service in services},
                queued={service.name: counts[service.name]["queued"] for service in services},
            )
        )
        if stop.wait(SAMPLE_SECONDS):
            return


@contextmanager
def _progress(
    console: Console,
    *,
    live: bool,
    ledger: Ledger,
    services: Sequence[AlgorithmService],
    origin: float,
) -> Iterator[Callable[[], None]]:
    """A refresh function: a rich Live table, or a progress line about every second."""
    total = len(ledger.records)
    if live:
        with Live(
            progress_table(ledger, services, 0.0, total),
            console=console,
            auto_refresh=False,
            transient=False,
        ) as view:

            def refresh_live() -> None:
                elapsed = time.monotonic() - origin
                view.update(progress_table(ledger, services, elapsed, total), refresh=True)

            yield refresh_live
        return

    last = [0.0]

    def refresh_lines() -> None:
        now = time.monotonic()
        if now - last[0] >= 1.0:
            last[0] = now
            console.print(progress_line(ledger, services, now - origin, total), highlight=False)

    yield refresh_lines


# -- command line ---------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``baton demo``."""
    defaults = DemoOptions()
    parser.add_argument("--tasks", type=int, default=defaults.tasks, help="tasks to submit")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="of the task plan")
    parser.add_argument(
        "--tick", type=float, default=defaults.tick, help="seconds per emulated minute"
    )
    parser.add_argument("--reports", type=Path, default=defaults.reports, help="output folder")
    parser.add_argument("--redis-url", help="a real Redis instead of the embedded one")
    parser.add_argument("--database-url", help="a real database instead of SQLite")
    parser.add_argument(
        "--timeout", type=float, default=defaults.timeout, help="overall limit, seconds"
    )
    parser.add_argument(
        "--no-live", dest="live", action="store_false", default=None, help="progress lines"
    )
    parser.add_argument("--template", type=Path, help="default: ./template.yaml")


def options_from_args(args: argparse.Namespace) -> DemoOptions:
    if args.tasks < 1:
        raise SystemExit("baton demo: --tasks must be at least 1")
    if args.tick <= 0 or args.timeout <= 0:
        raise SystemExit("baton demo: --tick and --timeout must be positive")
    return DemoOptions(
        tasks=args.tasks,
        seed=args.seed,
        tick=args.tick,
        reports=args.reports,
        redis_url=args.redis_url,
        database_url=args.database_url,
        timeout=args.timeout,
        live=args.live,
        template=args.template,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="baton demo", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run_demo(options_from_args(parser.parse_args(argv))).exit_code


if __name__ == "__main__":
    raise SystemExit(main())
