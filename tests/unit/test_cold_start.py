"""What a cold start leaves out, and the shape of a log line: the handlers import no
X-Ray SDK, no boto3 and no half of the SDK they never call, boto3 clients are made on
their first call (once), and Baton's lines carry the request id but none of the Lambda context
CloudWatch already has."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from baton.observability import LazyTracer, logger, merged_documents, tracing_enabled
from baton.runtime import LazyClient, LazySession

from tests.support.handlers import FUNCTION_NAMES, ROOT, FakeLambdaContext
from tests.support.logs import captured_log_lines

NEVER_AT_IMPORT = (
    "aws_xray_sdk",
    "boto3",
    "botocore.client",
    "baton_sdk.app",
    "baton_sdk.algorithm",
    "baton.cli",
)

PROBE = """
import json, sys
import app
print(json.dumps(sorted(sys.modules)))
"""


def _modules_after_import(name: str, env: dict[str, str]) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT / "functions" / name,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def _env(**changes: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWERTOOLS_TRACE")}
    env.pop("LAMBDA_TASK_ROOT", None)
    env.pop("AWS_SAM_LOCAL", None)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@pytest.mark.parametrize("name", [*FUNCTION_NAMES, "migrate"])
def test_a_handler_imports_no_xray_sdk_and_no_unused_sdk_half_when_tracing_is_off(
    name: str,
) -> None:
    loaded = _modules_after_import(name, _env(POWERTOOLS_TRACE_DISABLED="1"))
    assert "app" in loaded
    assert not [m for m in loaded if m.split(".")[0] == "aws_xray_sdk"]
    assert not [m for m in NEVER_AT_IMPORT if m in loaded]


def test_in_lambda_with_tracing_on_the_handler_is_traced_by_powertools(tmp_path: Path) -> None:
    # Where the X-Ray daemon listens, the Tracer is built at import (its patches must
    # come before any client is made) and wraps the handler.
    probe = PROBE.replace(
        "print(json.dumps(sorted(sys.modules)))",
        "print(json.dumps([app.lambda_handler.__module__, 'aws_xray_sdk.core' in sys.modules]))",
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT / "functions" / "dispatch",
        env=_env(LAMBDA_TASK_ROOT=str(tmp_path)),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    module, xray_loaded = json.loads(done.stdout.splitlines()[-1])
    assert xray_loaded
    assert module == "app"  # functools.wraps keeps the name; the wrapper is Powertools'


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "0"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "AWS_SAM_LOCAL": "true"}, False),
    ],
)
def test_tracing_is_on_in_lambda_alone_unless_turned_off(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: bool
) -> None:
    for key in ("POWERTOOLS_TRACE_DISABLED", "LAMBDA_TASK_ROOT", "AWS_SAM_LOCAL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert tracing_enabled() is expected


def test_with_tracing_off_the_tracer_leaves_the_handler_as_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")

    def handler(event: dict[str, Any], context: Any) -> str:
        return "answer"

    tracer = LazyTracer("baton")
    assert tracer.capture_lambda_handler(handler) is handler
    assert tracer.capture_lambda_handler(capture_response=False)(handler) is handler


def test_a_lazy_client_is_made_on_its_first_call_and_once() -> None:
    made: list[object] = []
    barrier = threading.Barrier(8)

    class Client:
        def publish(self, message: str) -> str:
            return message

    def make() -> Client:
        made.append(object())
        return Client()

    client: Any = LazyClient(make)
    assert made == []

    def call(n: int) -> None:
        barrier.wait()
        assert client.publish(f"m{n}") == f"m{n}"

    threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1


def test_the_runtime_session_is_the_one_given_or_one_made_on_first_need() -> None:
    given = object()
    assert LazySession(given).get() is given
    sessions = LazySession()
    made = sessions.get()
    assert type(made).__module__ == "boto3.session"
    assert sessions.get() is made


def test_a_line_carries_the_request_id_and_none_of_the_context_cloudwatch_has() -> None:
    context = FakeLambdaContext(function_name="baton-intake")
    # One process serves every function here: a callback invocation of another test
    # may have left its correlation id on the one logger.
    logger.set_correlation_id(None)

    @logger.inject_lambda_context
    def handler(event: dict[str, Any], ctx: Any) -> None:
        logger.info("task accepted", task_id="t-1", app="billing")
        logger.debug("dispatch accepted", task_id="t-1")

    with captured_log_lines(logging.INFO) as logs:
        handler({}, context)
    (line,) = logs.records
    assert list(line) == [
        "level",
        "message",
        "timestamp",
        "function_request_id",
        "task_id",
        "app",
    ]
    assert line["function_request_id"] == context.aws_request_id
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["timestamp"])


def _document(metrics: dict[str, float], dimension_sets: list[list[str]], **values: str) -> Any:
    return {
        "_aws": {
            "Timestamp": 1,
            "CloudWatchMetrics": [
                {
                    "Namespace": "Baton",
                    "Dimensions": dimension_sets,
                    "Metrics": [{"Name": name, "Unit": "Count"} for name in metrics],
                }
            ],
        },
        **values,
        **{name: [value] for name, value in metrics.items()},
    }


def test_emf_documents_whose_dimension_values_agree_are_written_as_one() -> None:
    per_app = [["service", "algorithm"], ["service", "algorithm", "app"]]
    ocr = {"service": "baton", "algorithm": "ocr", "app": "portal"}
    callbacks = _document({"Callbacks": 1}, [*per_app, ["service"]], **ocr)
    outcome = _document({"TasksSucceeded": 1, "RunTimeSeconds": 2.5}, per_app, **ocr)
    other_algorithm = _document({"Callbacks": 1}, per_app, **{**ocr, "algorithm": "nlp"})
    same_name = _document({"Callbacks": 1}, [["service"]], service="baton")

    one, nlp, again = merged_documents([callbacks, outcome, other_algorithm, same_name])

    assert [d["Metrics"][0]["Name"] for d in one["_aws"]["CloudWatchMetrics"]] == [
        "Callbacks",
        "TasksSucceeded",
    ]
    assert (one["Callbacks"], one["TasksSucceeded"], one["RunTimeSeconds"]) == ([1], [1], [2.5])
    assert nlp["algorithm"] == "nlp"  # a value that differs is a document of its own
    assert again["Callbacks"] == [1]  # and so is a metric the line already has
    assert again["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
