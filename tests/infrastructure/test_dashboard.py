"""The dashboard and the alarms show what the code emits: every Baton metric the
template reads is one of ``baton.observability``'s, with a dimension set it is
written with, in the namespace the functions are given; and the dashboard shows what
an operator needs per algorithm."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from baton.observability import (
    ATTEMPTS_TIMED_OUT,
    BACKLOG,
    CAPACITY,
    DISPATCH_ACCEPTED,
    DISPATCH_BUSY,
    DISPATCH_FAILED,
    DISPATCH_REJECTED,
    OLDEST_PENDING_AGE_SECONDS,
    QUEUE_WAIT_SECONDS,
    RUN_TIME_SECONDS,
    RUNNING,
    SERVICE,
    emitted_dimension_sets,
)

from tests.support.template import load_template

SEARCH = re.compile(
    r"SEARCH\('\{(?P<namespace>[^,}]+),(?P<dimensions>[^}]*)\} "
    r"MetricName=\"(?P<name>\w+)\"', '(?P<stat>[^']+)', (?P<period>\d+)\)"
)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def namespace(template: dict[str, Any]) -> str:
    value: str = template["Globals"]["Function"]["Environment"]["Variables"][
        "POWERTOOLS_METRICS_NAMESPACE"
    ]
    return value


def dashboard_body(template: dict[str, Any]) -> dict[str, Any]:
    """The body as CloudFormation renders it: each ``${Parameter}`` becomes its default,
    each other ``${...}`` a placeholder, and ``${!...}`` the literal ``${...}``."""
    (dashboard,) = [
        body
        for body in template["Resources"].values()
        if body["Type"] == "AWS::CloudWatch::Dashboard"
    ]
    text: str = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    parameters = template["Parameters"]

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        if name in parameters:
            return str(parameters[name]["Default"])
        return f"<{name}>"

    body: dict[str, Any] = json.loads(re.sub(r"\$\{([^}]+)\}", substitute, text))
    return body


def metric_widgets(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [widget["properties"] for widget in body["widgets"] if widget["type"] == "metric"]


def searches(body: dict[str, Any]) -> list[re.Match[str]]:
    found = []
    for widget in metric_widgets(body):
        for row in widget["metrics"]:
            for item in row:
                if isinstance(item, dict) and "SEARCH(" in item.get("expression", ""):
                    match = SEARCH.fullmatch(item["expression"])
                    assert match, item["expression"]
                    found.append(match)
    return found


def named_metrics(body: dict[str, Any]) -> list[list[Any]]:
    """The rows that name a metric (namespace, name, dimension pairs, options)."""
    return [
        row
        for widget in metric_widgets(body)
        for row in widget["metrics"]
        if isinstance(row[0], str)
    ]


def test_every_searched_metric_is_emitted_with_those_dimensions(
    template: dict[str, Any], namespace: str
) -> None:
    emitted = emitted_dimension_sets()
    found = searches(dashboard_body(template))
    assert found
    for match in found:
        name = match["name"]
        dimensions = tuple(sorted(match["dimensions"].split(",")))
        assert match["namespace"] == namespace
        assert name in emitted, f"the dashboard searches {name}, which nothing emits"
        assert dimensions in emitted[name], f"{name} is not emitted with {dimensions}"
        assert dimensions == ("algorithm", "service"), "one line per algorithm"


def test_every_named_metric_is_emitted_or_is_a_function_of_the_stack(
    template: dict[str, Any], namespace: str
) -> None:
    emitted = emitted_dimension_sets()
    functions = {
        name
        for name, body in template["Resources"].items()
        if body["Type"] == "AWS::Serverless::Function"
    }
    shown_functions = set()
    for row in named_metrics(dashboard_body(template)):
        source, name, *rest = row
        pairs = [item for item in rest if not isinstance(item, dict)]
        dimensions = dict(zip(pairs[::2], pairs[1::2], strict=True))
        if source == "AWS/Lambda":
            assert name in ("Errors", "Duration")
            reference = dimensions["FunctionName"]
            assert reference.strip("<>") in functions
            shown_functions.add((name, reference.strip("<>")))
            continue
        assert source == namespace
        assert tuple(sorted(dimensions)) in emitted[name]
        assert dimensions.get("service") == SERVICE
    assert shown_functions == {(m, f) for m in ("Errors", "Duration") for f in functions}


def test_every_alarm_on_a_baton_metric_reads_one_the_code_emits(
    template: dict[str, Any], namespace: str
) -> None:
    emitted = emitted_dimension_sets()
    read = []
    for body in template["Resources"].values():
        if body["Type"] != "AWS::CloudWatch::Alarm":
            continue
        alarm = body["Properties"]
        metrics = [alarm] if "MetricName" in alarm else []
        metrics += [
            query["MetricStat"]["Metric"]
            for query in alarm.get("Metrics", [])
            if "MetricStat" in query
        ]
        for metric in metrics:
            if metric["Namespace"] != namespace:
                continue
            dimensions = {item["Name"]: item["Value"] for item in metric["Dimensions"]}
            assert tuple(sorted(dimensions)) in emitted[metric["MetricName"]], metric
            assert dimensions["service"] == SERVICE
            read.append(metric["MetricName"])
    assert set(read) >= {
        "OldestPendingAgeSeconds",
        "Saturated",
        "AttemptsTimedOut",
        "Callbacks",
        "RegistryRejected",
    }


def test_the_dashboard_shows_what_operators_watch(template: dict[str, Any]) -> None:
    shown = {(match["name"], match["stat"]) for match in searches(dashboard_body(template))}
    for spec in (BACKLOG, OLDEST_PENDING_AGE_SECONDS, RUNNING, CAPACITY):
        assert (spec.name, "Maximum") in shown, spec.name
    for spec in (
        DISPATCH_ACCEPTED,
        DISPATCH_REJECTED,
        DISPATCH_FAILED,
        DISPATCH_BUSY,
        ATTEMPTS_TIMED_OUT,
    ):
        assert (spec.name, "Sum") in shown, spec.name
    for spec in (QUEUE_WAIT_SECONDS, RUN_TIME_SECONDS):
        assert {(spec.name, "p50"), (spec.name, "p95")} <= shown, spec.name


def test_widgets_fit_the_grid_without_overlapping(template: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for widget in dashboard_body(template)["widgets"]:
        cells = {
            (x, y)
            for x in range(widget["x"], widget["x"] + widget["width"])
            for y in range(widget["y"], widget["y"] + widget["height"])
        }
        assert widget["x"] + widget["width"] <= 24
        assert not cells & taken, widget.get("properties", {}).get("title")
        taken |= cells
