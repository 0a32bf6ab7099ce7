"""``baton demo``: a small document platform on the emulated stack, shared by two
business apps.

Four algorithm services on loopback (``algorithms``) do real work on the sample
documents: one bills by the page (task cost), one runs on two servers of different
sizes (two endpoints), one is an LLM-like service behind a request-rate limit. Two
business apps (``app``) share them: docs-portal (weight 4) sends a steady stream,
bulk-import (weight 1) far more, at once; both are registered in an app registry (the
``AppsJson`` parameter) with the SenderId the local SQS records for them. The whole
template runs in the local emulator (``baton_local.emulator``) with Baton's profile. A
live view shows each algorithm's cost in flight per app against its cap; at the end a
summary, a JSON report and a PNG timeline (``report``) say what happened.

The exit code is 0 when every task reached a terminal state with exactly one
notification, every succeeded result could be read, no algorithm and no endpoint ever
had more cost in flight than its ``max_concurrency``, every algorithm kept at least 90 %
of its cap in flight while its tasks waited (from Baton's own attempt records), each app
got its weighted share of every algorithm while both waited for it, and the
rate-limited service never received more requests than its limit allows; 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import urllib3
from rich.console import Console
from rich.live import Live

from baton_local.demo.algorithms import SERVICES, AlgorithmService, ServiceSpec, load_corpus, pages
from baton_local.demo.app import BULK, PORTAL, WEIGHTS, BusinessApp, Ledger, plan_tasks
from baton_local.demo.report import (
    AttemptSpan,
    Sample,
    Timeline,
    build_report,
    plot_timeline,
    progress_line,
    progress_table,
    summary_tables,
    write_json,
)

if TYPE_CHECKING:
    from baton_local.emulator.cloud import LocalCloud

SAMPLE_SECONDS = 0.1
RAM_DISK = "/dev/shm"  # noqa: S108 -- TemporaryDirectory makes a private one inside
DRAIN_SECONDS = 1.0
WHY_AFTER_SECONDS = 3.0
WHY_TRIES = 5
"""When the demo asks ``baton task why`` of a waiting task: once the caps are full."""
"""After the last notification, listen this much longer for a repeated one."""
WARM_FUNCTIONS = ("PromoteFunction", "DispatchFunction", "SweepFunction")
"""The scheduled functions: once each has run, the stack's cold starts are behind it
(on a small machine they take seconds each, and they all start together)."""
WARM_UP_SECONDS = 30.0
BUSY_FUNCTIONS = ("IntakeFunction", "CallbackFunction")
"""The functions every task passes through (its batch, its callback): all their
instances are started, and each has built its runtime, before the first task, so that
no cold start (seconds long on a small machine) holds up a freed slot mid-run."""
TIMER_FUNCTIONS = (*WARM_FUNCTIONS, "ReconcileFunction")
TIMER_CONCURRENCY = 1
"""Instances of each scheduled function. At 60 times real speed a timer fires again
before a run on a small machine is over, which on AWS, a minute apart, it does not:
with one instance the next run waits for the last, instead of three more interpreters
starting per timer in the middle of the run."""


@dataclass(frozen=True)
class DemoOptions:
    tasks: int = 200
    seed: int = 7
    tick: float = 1.0
    """Seconds per emulated minute (the schedules' period)."""
    reports: Path = Path("reports")
    redis_url: str | None = None
    database_url: str | None = None
    timeout: float = 180.0
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
        run.collect()
    return run.finish()


class _DemoRun:
    def __init__(self, options: DemoOptions, console: Console) -> None:
        self.options = options
        self.console = console
        self.live = console.is_terminal if options.live is None else options.live
        self.started = time.monotonic()
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.run_id = uuid.uuid4().hex[:8]
        corpus = load_corpus()
        costs = {
            (spec.name, document): pages(text)
            for spec in options.services
            if spec.by_page
            for document, text in corpus.items()
        }
        self.plan = plan_tasks(
            options.tasks,
            options.seed,
            sorted(corpus),
            [spec.name for spec in options.services],
            costs=costs,
        )
        self.ledger = Ledger(self.plan)
        self.timeline = Timeline()
        self.services = [
            AlgorithmService(spec, corpus, listener=self.ledger, seed=options.seed)
            for spec in options.services
        ]
        self.apps: dict[str, BusinessApp] = {}
        self.senders: dict[str, str | None] = {}
        """The SenderId the queue recorded for each app's probe message."""
        self.cloud: LocalCloud | None = None
        self.setup_seconds = 0.0
        self.warm_up_seconds = 0.0
        self.submitted_at = 0.0
        self.timed_out = False
        self.attempts: list[AttemptSpan] = []
        self.state_dir: Path | None = None
        self.waited: dict[str, Any] | None = None
        """``baton task why --json`` of one task while it waited, as an operator asks it."""
        self.stats = ""
        """``baton stats`` at the end of the run, as an operator reads it."""

    def start(self, stack: ExitStack) -> None:
        """The algorithm services, the emulated stack, and each app's subscription."""
        from baton_local.emulator.cloud import LocalCloud, LocalOptions
        from baton_local.profile import baton_profile
        from baton_local.signing import algorithm_secrets, stack_signing_keys

        for service in self.services:
            service.start()
            stack.callback(service.stop)
        registry = {s.name: s.registry_entry() for s in self.services}
        state_dir = self.state_dir = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="baton-demo-", dir=_scratch()))
        )
        self.console.print(
            f"[bold]baton demo[/]: {len(self.plan)} tasks for"
            f" {', '.join(f'{s.name} (cap {s.spec.max_concurrency})' for s in self.services)};"
            f" starting the emulated stack (a minute = {self.options.tick:g} s) ..."
        )
        cloud = self.cloud = stack.enter_context(
            LocalCloud(
                LocalOptions(
                    template=self.options.template or find_template(),
                    env_file=None,
                    tick_seconds=self.options.tick,
                    state_dir=state_dir,
                    parameter_overrides={
                        "AlgorithmsJson": json.dumps(registry),
                        "AppsJson": json.dumps(app_registry()),
                    },
                    region="eu-west-1",
                    quiet=True,
                    concurrency=dict.fromkeys(TIMER_FUNCTIONS, TIMER_CONCURRENCY),
                ),
                [baton_profile(self.options.redis_url, self.options.database_url)],
            )
        )
        keys = stack_signing_keys(cloud)
        for service in self.services:
            service.use_secrets(algorithm_secrets(keys, service.name))
        warming = time.monotonic()
        _warm_up(cloud)
        self.warm_up_seconds = time.monotonic() - warming
        self.setup_seconds = time.monotonic() - self.started
        session = cloud.boto_session()
        for name in (PORTAL, BULK):
            app = self.apps[name] = BusinessApp(
                name, session, cloud.outputs, self.ledger, self.run_id
            )
            app.subscribe()
            stack.callback(app.unsubscribe)
            self.senders[name] = app.sender_id()
            app.start()
            stack.callback(app.stop)

    def drive(self) -> None:
        """Submit every task, then watch until each is notified (and its result read)."""
        deadline = self.started + self.options.timeout
        self.submitted_at = time.monotonic()
        stop_sampling = threading.Event()
        sampler = threading.Thread(
            target=_sample,
            args=(self.ledger, self.services, self.timeline, self.submitted_at, stop_sampling),
            daemon=True,
        )
        sampler.start()
        self.apps[PORTAL].stream([t for t in self.plan if t.app == PORTAL], self.submitted_at)
        self.apps[BULK].submit([t for t in self.plan if t.app == BULK])
        with _progress(
            self.console,
            live=self.live,
            ledger=self.ledger,
            services=self.services,
            origin=self.submitted_at,
        ) as refresh:
            asking: threading.Thread | None = None
            while not (self.ledger.all_final() and self.ledger.results_pending() == 0):
                if time.monotonic() > deadline:
                    self.timed_out = True
                    break
                time.sleep(0.25)
                refresh()
                if asking is None and time.monotonic() - self.submitted_at > WHY_AFTER_SECONDS:
                    asking = threading.Thread(target=self._ask_why, daemon=True)
                    asking.start()
            if asking is not None:
                asking.join(timeout=30)
            drain = 0 if self.timed_out else DRAIN_SECONDS
            for app in self.apps.values():
                app.stop(drain_seconds=drain)
                drain = 0
            stop_sampling.set()
            sampler.join(timeout=5)
            refresh()

    def _ask_why(self) -> None:
        """What an operator asks of a task that waits: ``baton task why`` against the
        running stack (its env file), for the waiting task that was sent first (again,
        should it have started by the time the command asks)."""
        for _ in range(WHY_TRIES):
            record = self.ledger.longest_waiting()
            if record is None:
                return
            key = f"{self.run_id}:{record.task.ref}"
            answer = self._baton("task", "why", "--app", record.task.app, "--key", key, "--json")
            waiting = json.loads(answer) if answer else None
            if waiting is not None:
                self.waited = {"ref": record.task.ref, "app": record.task.app, "waiting": waiting}
                return

    def _baton(self, *args: str) -> str | None:
        """An operator command against this run's stack; its output, or None if it failed."""
        if self.state_dir is None:
            return None
        command = [
            sys.executable,
            "-m",
            "baton.cli",
            *args,
            "--local",
            "--state-dir",
            str(self.state_dir),
        ]
        # Our own interpreter and console script, arguments built here: nothing untrusted.
        done = subprocess.run(  # noqa: S603
            command, capture_output=True, text=True, timeout=60, check=False
        )
        return done.stdout if done.returncode == 0 else None

    def collect(self) -> None:
        """Baton's own record of every attempt of the run (its ``task_execution`` rows),
        read while the stack is still up: when each took its slot and gave it back."""
        from baton.database import create_repository
        from baton.records import ExecutionStatus

        if self.cloud is None:
            return
        self.stats = self._baton("stats") or ""
        repository, engine = create_repository(self.cloud.environment()["BATON_DATABASE_URL"])
        try:
            for record in self.ledger.records.values():
                if record.task_id is None:
                    continue
                for execution in repository.executions_of(record.task_id):
                    # An abandoned attempt never held a slot (it was lost before dispatch).
                    if execution.status == ExecutionStatus.ABANDONED:
                        continue
                    ended = execution.finished_at or datetime.now(UTC)
                    self.attempts.append(
                        AttemptSpan(
                            ref=record.task.ref,
                            algorithm=execution.algorithm,
                            attempt=execution.attempt,
                            cost=execution.cost,
                            start=execution.created_at.timestamp(),
                            end=ended.timestamp(),
                            status=str(execution.status),
                        )
                    )
        finally:
            engine.dispose()

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
            "started_at": self.started_at,
            "setup_seconds": round(self.setup_seconds, 2),
            "stack_start_seconds": round(cloud.startup_seconds, 2) if cloud is not None else None,
            "warm_up_seconds": round(self.warm_up_seconds, 2),
            "run_seconds": round((finished or time.monotonic()) - self.submitted_at, 2),
            "wall_seconds": round(time.monotonic() - self.started, 2),
            "timed_out": self.timed_out,
        }
        report = build_report(
            ledger=self.ledger,
            services=self.services,
            timeline=self.timeline,
            run=run,
            send_failures=[f for app in self.apps.values() for f in app.send_failures],
            apps={
                name: {
                    "weight": WEIGHTS[name],
                    "senders": app_registry()[name]["senders"],
                    "sender_seen": self.senders.get(name),
                }
                for name in (PORTAL, BULK)
            },
            origin=self.submitted_at,
            attempts=self.attempts,
            emulator={
                "invocations": dict(cloud.invocations) if cloud is not None else {},
                "instances": cloud.instances() if cloud is not None else {},
                "errors": [{"function": f, "error": str(e)} for f, e in errors[:50]],
            },
        )
        report["operator"] = {"task_why": self.waited, "stats": self.stats}
        if self.timed_out:
            report["passed"] = False
            report["checks"].append(
                {"name": f"finished within {options.timeout:g} s", "passed": False, "detail": ""}
            )
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        json_path = write_json(report, options.reports / f"demo-{stamp}.json")
        png_path = plot_timeline(report, options.reports / f"demo-{stamp}.png")
        self.console.print(summary_tables(report))
        if self.stats:
            self.console.print("[bold]baton stats[/] (as an operator reads it at the end)")
            self.console.print(self.stats.rstrip(), highlight=False, markup=False)
        if self.waited is not None:
            why = self.waited["waiting"]
            self.console.print(
                f"[bold]baton task why[/] {self.waited['app']}/{self.waited['ref']} while it"
                f" waited: {why['reason']}: {why['detail']}",
                highlight=False,
            )
        if errors:
            self.console.print(f"[yellow]the emulator recorded {len(errors)} function errors[/]")
        self.console.print(f"report:   {json_path}\ntimeline: {png_path}")
        verdict = "[bold green]PASS[/]" if report["passed"] else "[bold red]FAIL[/]"
        self.console.print(f"{verdict} in {run['wall_seconds']:.1f} s")
        return DemoResult(0 if report["passed"] else 1, report, json_path, png_path)


def app_registry() -> dict[str, dict[str, Any]]:
    """The two apps as the operator registers them. Their ``senders`` are the SenderId
    that the local SQS (moto) records for every message, whoever sends it: locally both
    apps necessarily share it; on AWS each has its own role's unique id."""
    from moto.sqs.models import DEFAULT_SENDER_ID

    return {
        name: {"senders": [DEFAULT_SENDER_ID], "principals": [], "weight": weight}
        for name, weight in WEIGHTS.items()
    }


def _warm_up(cloud: LocalCloud) -> None:
    """Let the stack's cold starts pass before the first task, so that the latencies
    measure Baton rather than a dozen interpreters starting at once on a small machine:
    start every instance of the busy functions and have each build its runtime (a
    callback without a token, answered 401; an intake batch of one message it refuses,
    given to the function itself, so nothing reaches the queue), and wait for the
    scheduled functions' first runs."""
    limit = time.monotonic() + WARM_UP_SECONDS
    started: dict[str, int] = {}

    def start(function: str) -> None:
        started[function] = cloud.prewarm(function)

    _all_at_once([(start, (name,)) for name in BUSY_FUNCTIONS], limit)
    _all_at_once(
        [
            (_warm_instance, (cloud, name, n))
            for name, count in started.items()
            for n in range(count)
        ],
        limit,
    )
    while time.monotonic() < limit:
        if all(cloud.invocations[name] > 0 for name in WARM_FUNCTIONS):
            return
        time.sleep(0.1)


def _all_at_once(
    calls: Sequence[tuple[Callable[..., None], tuple[Any, ...]]], limit: float
) -> None:
    threads = [threading.Thread(target=call, args=args, daemon=True) for call, args in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, limit - time.monotonic()))


def _warm_instance(cloud: LocalCloud, function: str, n: int) -> None:
    """One invocation that builds an instance's runtime and changes nothing; run as many
    at once as the function has instances, so that each lands on one of its own."""
    if function == "CallbackFunction":
        knock = f"{cloud.outputs['CallbackBaseUrl']}/tasks/warm-up-{n}/callback"
        with suppress(urllib3.exceptions.HTTPError):  # the run shows the problem, if any
            urllib3.request("POST", knock, json={}, timeout=WARM_UP_SECONDS, retries=False)
        return
    queue = str(cloud.outputs.get("IntakeQueueArn", ""))
    refused = {
        "messageId": f"warm-up-{n}",
        "receiptHandle": f"warm-up-{n}",
        "body": "{}",
        "attributes": {"SenderId": "warm-up"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": queue,
        "awsRegion": cloud.options.region,
    }
    cloud.invoke(function, {"Records": [refused]})


def _scratch() -> str | None:
    """Where the run's throwaway state (its SQLite database) goes: a RAM disk where the
    machine has one. Every commit of the stack's functions syncs the database file, and
    on a disk that other work shares those syncs, not Baton, set the pace."""
    ram = Path(RAM_DISK)
    return str(ram) if ram.is_dir() and os.access(ram, os.W_OK) else None


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
    """~10 times a second: the cost in flight per algorithm and app (the services' own
    counters) and the tasks waiting per algorithm and app (the ledger: submitted, not
    running, not finished)."""
    while True:
        waiting = ledger.waiting()
        running: dict[str, dict[str, int]] = {}
        queued: dict[str, dict[str, int]] = {}
        for service in services:
            mine = running[service.name] = dict.fromkeys(WEIGHTS, 0)
            for ref, cost in service.running_refs():
                app = ledger.app_of(ref)
                if app in mine:
                    mine[app] += cost
            queued[service.name] = {app: waiting.get((app, service.name), 0) for app in WEIGHTS}
        timeline.add(Sample(t=time.monotonic() - origin, running=running, queued=queued))
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


def options_from_args(args: argparse.Namespace) -> DemoOptions:
    """``baton demo``'s options (see ``baton_local.commands``); what is not given keeps
    its default."""
    given = {
        name: getattr(args, name)
        for name in ("tasks", "seed", "tick", "redis_url", "database_url", "timeout", "live")
        if getattr(args, name, None) is not None
    }
    if getattr(args, "reports", None):
        given["reports"] = Path(args.reports)
    given["template"] = Path(args.template) if getattr(args, "template", None) else find_template()
    if not given["template"].is_file():
        raise ValueError(f"no template at {given['template']}")
    options = DemoOptions(**given)
    if options.tasks < 1:
        raise ValueError("--tasks must be at least 1")
    if options.tick <= 0 or options.timeout <= 0:
        raise ValueError("--tick and --timeout must be positive")
    return options


def run_from_args(args: argparse.Namespace) -> int:
    """``baton demo``: 0 when every check passed, 1 when one failed, 2 when it could not
    run at all."""
    from baton_local.emulator.cloud import TemplateError

    try:
        options = options_from_args(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"baton demo: {exc}", file=sys.stderr)
        return 2
    try:
        return run_demo(options).exit_code
    except TemplateError as exc:  # the stack could not start
        print(f"baton demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
