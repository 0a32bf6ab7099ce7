"""Draw the stack's CloudWatch dashboard from the metrics a compressed run emits.

A run through the real handlers, against the real Redis and MariaDB on this machine,
moto on loopback and the loopback algorithm service (tests.support): two algorithms,
a burst of tasks larger than one of them can take, a few dispatches refused, busy or
failing, a few attempts that never call back, a pause. The clock moves a minute per
step (a quarter of a real second, so a task that works for a real second runs for four
minutes); the timers (dispatch, sweep) run once per step. Every EMF document printed
during a step belongs to that minute.

The widgets are read from template.yaml: each SEARCH becomes one line per algorithm,
with the widget's statistic and period, from the datapoints of the run. The Lambda
widgets have no counterpart off AWS and say so.

    python -m bench.dashboard [--out docs/dashboard.png] [--minutes 40]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import random
import re
import statistics
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")

import boto3
import matplotlib
import redis
import sqlalchemy as sa
from baton.pausing import pause_algorithm, resume_algorithm
from baton.runtime import Runtime, build_runtime, set_runtime
from baton.schema import upgrade_database
from baton.settings import load_settings
from moto.server import ThreadedMotoServer

from tests.support.algorithm_service import AlgorithmService
from tests.support.clock import ShiftableClock
from tests.support.emf import Datapoint, datapoints, emf_documents
from tests.support.events import schedule_event, sqs_event, sqs_record, task_body
from tests.support.gateway import CallbackGateway
from tests.support.handlers import Handlers
from tests.support.template import load_template

MYSQL = os.environ.get("BATON_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
REDIS = os.environ.get("BATON_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
STEP_SECONDS = 0.25
"""Real seconds a simulated minute lasts."""
SEARCH = re.compile(r"MetricName=\\?\"(?P<name>\w+)\\?\"', '(?P<stat>[^']+)', (?P<period>\d+)")


class Run:
    """The stack of one run (its own database and key prefix), torn down after."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        name = uuid.uuid4().hex[:8]
        database = f"baton_dashboard_{name}"
        server = sa.create_engine(MYSQL, isolation_level="AUTOCOMMIT")
        with server.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE `{database}`")

        def drop() -> None:
            with server.connect() as connection:
                connection.exec_driver_sql(f"DROP DATABASE `{database}`")

        stack.callback(drop)
        url = f"{MYSQL}/{database}?charset=utf8mb4"
        upgrade_database(url)
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        stack.callback(moto.stop)
        host, port = moto.get_host_and_port()
        os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
        session = boto3.session.Session(region_name="eu-west-1")
        bucket = f"dashboard-{name}"
        session.client("s3").create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        topic = session.client("sns").create_topic(Name=f"dashboard-{name}")["TopicArn"]
        self.handlers = Handlers()
        self.service = AlgorithmService().start()
        stack.callback(self.service.stop)
        gateway = CallbackGateway(self.handlers).start()
        stack.callback(gateway.stop)
        client = redis.Redis.from_url(REDIS)
        prefix = f"baton-dashboard-{name}"

        def forget() -> None:
            for key in client.scan_iter(match=f"{prefix}:*"):
                client.delete(key)

        stack.callback(forget)
        registry = {
            algorithm: {
                "endpoint": self.service.endpoint(algorithm),
                "max_concurrency": cap,
                "timeout_seconds": 600,
                "max_attempts": 3,
                "backoff_base_seconds": 60,
            }
            for algorithm, cap in (("ocr", 4), ("nlp", 2))
        }
        settings = load_settings(
            {
                "BATON_DATABASE_URL": url,
                "BATON_REDIS_URL": REDIS,
                "BATON_RESULT_BUCKET": bucket,
                "BATON_NOTIFICATION_TOPIC_ARN": topic,
                "BATON_CALLBACK_BASE_URL": gateway.base_url,
                "BATON_TOKEN_SECRET": "dashboard-token-secret-of-at-least-32-chars",
                "BATON_ALGORITHMS": json.dumps(registry),
                "BATON_KEY_PREFIX": prefix,
                "BATON_NOTIFICATION_GRACE_SECONDS": "0",
            }
        )
        self.clock = ShiftableClock()
        self.runtime: Runtime = build_runtime(
            settings, redis_client=client, boto_session=session, clock=self.clock
        )
        set_runtime(self.runtime)
        stack.callback(set_runtime, None)


def _task(rng: random.Random, algorithm: str, n: int) -> str:
    test: dict[str, Any] = {"run_seconds": round(rng.uniform(0.5, 1.5), 2)}
    roll = rng.random()
    if roll < 0.05:
        test["dispatch_status"] = [400]
    elif roll < 0.12:
        test["dispatch_status"] = [503, 202]
    elif roll < 0.17:
        test["dispatch_status"] = [429, 202]
        test["retry_after"] = "60"
    elif roll < 0.22:
        test["outcome"] = "silent"
    app = "portal" if rng.random() < 0.4 else "bulk"
    return task_body(
        app=app, algorithm=algorithm, idempotency_key=f"{algorithm}-{n}", input={"test": test}
    )


def run(minutes: int, seed: int) -> list[list[Datapoint]]:
    """The datapoints of each simulated minute."""
    rng = random.Random(seed)
    per_minute: list[list[Datapoint]] = []
    with contextlib.ExitStack() as stack:
        stack_run = Run(stack)
        handlers, runtime = stack_run.handlers, stack_run.runtime
        count = 0
        for minute in range(minutes):
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                arrivals = {"ocr": 7 if minute < 8 else 0, "nlp": 1 if minute < 25 else 0}
                bodies = []
                for algorithm, many in arrivals.items():
                    for _ in range(many):
                        bodies.append(_task(rng, algorithm, count))
                        count += 1
                for start in range(0, len(bodies), 10):
                    batch = sqs_event(*(sqs_record(b) for b in bodies[start : start + 10]))
                    handlers.invoke("intake", batch)
                if minute == 12:
                    pause_algorithm(runtime, "nlp", "maintenance window")
                if minute == 16:
                    resume_algorithm(runtime, "nlp")
                handlers.invoke("dispatch", schedule_event("dispatch"))
                time.sleep(STEP_SECONDS)
                handlers.invoke("sweep", schedule_event("sweep"))
            per_minute.append(datapoints(emf_documents(printed.getvalue())))
            stack_run.clock.advance(60)
        # Attempts still at work call back before the gateway goes.
        with contextlib.redirect_stdout(io.StringIO()):
            stack_run.service.wait_idle()
    return per_minute


def _series(
    per_minute: list[list[Datapoint]], name: str, stat: str, period: int
) -> dict[str, tuple[list[int], list[float]]]:
    """Per algorithm: the widget's statistic of ``name`` per period, by minute."""
    width = max(1, period // 60)
    buckets: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for minute, points in enumerate(per_minute):
        for point in points:
            if point.name == name and point.dimension_names == ("algorithm", "service"):
                algorithm = dict(point.dimensions)["algorithm"]
                buckets[algorithm][minute // width * width].extend(point.values)
    found = {}
    for algorithm, by_bucket in sorted(buckets.items()):
        xs = sorted(by_bucket)
        found[algorithm] = (xs, [_statistic(by_bucket[x], stat) for x in xs])
    return found


def _statistic(values: list[float], stat: str) -> float:
    if stat == "Maximum":
        return max(values)
    if stat == "Sum":
        return sum(values)
    if stat.startswith("p"):
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(float(stat[1:]) / 100 * len(ordered)))]
    return statistics.fmean(values)


def _widgets() -> list[dict[str, Any]]:
    body = load_template()["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    text = re.sub(r"\$\{(?!!)[^}]+\}", "0", body).replace("${!", "${")
    widgets: list[dict[str, Any]] = json.loads(text)["widgets"]
    return [widget for widget in widgets if widget["type"] == "metric"]


def draw(per_minute: list[list[Datapoint]], out: Path) -> None:
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # noqa: PLC0415 - after the backend is chosen

    widgets = _widgets()
    rows = max(w["y"] + w["height"] for w in widgets)
    top = min(w["y"] for w in widgets)
    figure = plt.figure(figsize=(16, (rows - top) * 0.55))
    grid = figure.add_gridspec(rows - top, 24, hspace=1.6, wspace=2.5, top=0.95, bottom=0.03)
    for widget in widgets:
        props = widget["properties"]
        y, x = widget["y"] - top, widget["x"]
        axes = figure.add_subplot(grid[y + 1 : y + widget["height"], x : x + widget["width"]])
        axes.set_title(props["title"], fontsize=9, loc="left")
        axes.tick_params(labelsize=7)
        drawn = False
        for row in props["metrics"]:
            item = row[0]
            if not isinstance(item, dict) or "SEARCH(" not in item.get("expression", ""):
                continue
            match = SEARCH.search(item["expression"])
            assert match, item["expression"]
            prefix = item.get("label", "").replace("${PROP('Dim.algorithm')}", "").strip()
            for algorithm, (xs, ys) in _series(
                per_minute, match["name"], match["stat"], int(match["period"])
            ).items():
                label = f"{prefix} {algorithm}".strip()
                axes.plot(xs, ys, label=label, linewidth=1.2, drawstyle="steps-post")
                drawn = True
        if props["title"].startswith("Timeout rate"):
            drawn = _timeout_rate(axes, per_minute) or drawn
        if not drawn:
            note = "AWS/Lambda metrics: only on AWS" if "Function" in props["title"] else "no data"
            axes.text(0.5, 0.5, note, ha="center", va="center", fontsize=8, color="grey")
            axes.set_xticks([])
            axes.set_yticks([])
            continue
        axes.set_ylim(bottom=0)
        axes.set_xlabel("minute", fontsize=7)
        axes.legend(fontsize=6, loc="upper right", ncol=2)
    figure.suptitle(
        "Baton dashboard, drawn from the metrics of a compressed local run", fontsize=11
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90, bbox_inches="tight")


def _timeout_rate(axes: Any, per_minute: list[list[Datapoint]]) -> bool:
    timed: dict[int, float] = defaultdict(float)
    called: dict[int, float] = defaultdict(float)
    for minute, points in enumerate(per_minute):
        for point in points:
            if point.dimension_names != ("service",):
                continue
            if point.name == "AttemptsTimedOut":
                timed[minute // 15 * 15] += sum(point.values)
            if point.name == "Callbacks":
                called[minute // 15 * 15] += sum(point.values)
    xs = sorted(set(timed) | set(called))
    if not xs:
        return False
    rates = [100 * timed[x] / max(1.0, timed[x] + called[x]) for x in xs]
    axes.plot(xs, rates, label="timed out %", linewidth=1.2, drawstyle="steps-post")
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.png"))
    parser.add_argument("--minutes", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    per_minute = run(args.minutes, args.seed)
    draw(per_minute, args.out)
    print(f"{args.out}: {sum(len(points) for points in per_minute)} datapoints drawn")


if __name__ == "__main__":
    main()
