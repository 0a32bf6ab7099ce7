"""What ``baton local`` prints while it runs: scheduled runs summed up (and silent when
they did nothing), API requests with method, full path and status, SQS batches as
"3 ok, 1 rejected"; --quiet shows failures only, --verbose everything."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import urllib3
from baton_local.emulator.console import ActivityConsole
from baton_local.emulator.lambdas import Invocation

from tests.local.conftest import StartCloud
from tests.support.waiting import wait_for


def _invocation(function: str, kind: str, result: Any = None, ok: bool = True) -> Invocation:
    return Invocation(
        function=function,
        source=f"schedule {function}.EveryMinute" if kind == "schedule" else "invoke",
        request_id="r",
        ok=ok,
        result=result,
        duration_ms=12.0,
        error=None if ok else {"errorType": "RuntimeError", "errorMessage": "broken"},
        kind=kind,
    )


def test_scheduled_runs_are_summed_up_and_idle_ones_stay_silent() -> None:
    lines: list[str] = []
    console = ActivityConsole(lines.append, "summary")

    for _ in range(10):
        console.record(_invocation("PromoteFunction", "schedule", {"promoted": 0}))
        console.record(_invocation("SweepFunction", "schedule", {"timed_out": 0}))
    console.record(_invocation("PromoteFunction", "schedule", {"promoted": 3}))
    console.record(_invocation("SweepFunction", "schedule", ok=False))
    assert len(lines) == 1  # the failure, at once
    assert "SweepFunction" in lines[0]
    assert "RuntimeError: broken" in lines[0]

    console.flush()
    promote, sweep = lines[1:]
    assert "PromoteFunction" in promote
    assert "11 scheduled runs: promoted 3" in promote
    assert "11 scheduled runs, 1 failed" in sweep

    console.record(_invocation("PromoteFunction", "schedule", {"promoted": 0}))
    console.flush()
    assert len(lines) == 3  # nothing done: nothing said


def test_quiet_shows_failures_only_and_verbose_every_run() -> None:
    quiet: list[str] = []
    loud: list[str] = []
    for level, lines in (("errors", quiet), ("all", loud)):
        console = ActivityConsole(lines.append, level)
        console.record(_invocation("PromoteFunction", "schedule", {"promoted": 0}))
        console.record(_invocation("IntakeFunction", "invoke"))
        console.record(_invocation("IntakeFunction", "invoke", ok=False))
        console.flush()
    assert len(quiet) == 1
    assert "ERROR" in quiet[0]
    assert len(loud) == 3
    with pytest.raises(ValueError, match="activity must be one of"):
        ActivityConsole(quiet.append, "loud")


def test_requests_and_batches_are_one_line_each(start_cloud: StartCloud) -> None:
    out = io.StringIO()
    cloud = start_cloud("sqs.yaml", quiet=False, output=out, concurrency={"ConsumerFunction": 1})
    sqs = cloud.boto_session().client("sqs")

    sqs.send_message_batch(
        QueueUrl=cloud.outputs["WorkQueueUrl"],
        Entries=[
            {"Id": "1", "MessageBody": json.dumps({"n": 1})},
            {"Id": "2", "MessageBody": json.dumps({"n": 2, "fail": True})},
            {"Id": "3", "MessageBody": json.dumps({"n": 3})},
        ],
    )

    line = wait_for(
        lambda: next((t for t in out.getvalue().splitlines() if "SQS Work" in t), None),
        timeout=20,
    )
    assert "ConsumerFunction" in line
    assert "3 records: 2 ok, 1 rejected" in line
    banner = out.getvalue()
    assert "resources have no local meaning (--verbose names them)" in banner
    assert "Outputs:" in banner


def test_an_api_request_shows_its_method_full_path_and_status(start_cloud: StartCloud) -> None:
    out = io.StringIO()
    cloud = start_cloud("api.yaml", quiet=False, output=out)
    base = cloud.outputs["ApiUrl"]

    urllib3.request("POST", f"{base}/items/7/notes?tag=a", body=b"{}", timeout=30)
    urllib3.request("GET", f"{base}/items/1/boom", timeout=30)

    lines = out.getvalue().splitlines()
    stage = base.rsplit("/", 1)[-1]
    assert any(f"POST /{stage}/items/7/notes  -> 201" in line for line in lines), lines
    assert any(
        f"GET /{stage}/items/1/boom  -> 502" in line and "ValueError" in line for line in lines
    )
