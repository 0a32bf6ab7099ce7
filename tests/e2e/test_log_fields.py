"""Every intake, dispatch and sweep log line about a task names its app, idempotency key
and task id, and an intake line its SQS message id; a failed dispatch names the
endpoint and the cause. Read from the JSON lines a whole run writes, at DEBUG: the
lines about each step of a task that goes well ("dispatch accepted", "callback
applied") are written at DEBUG, and they name it as much as the INFO ones do."""

from __future__ import annotations

import logging
from typing import Any

from tests.support.algorithm_service import AlgorithmService
from tests.support.aws import AwsResources
from tests.support.clock import ShiftableClock
from tests.support.events import schedule_event, sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.logs import captured_log_lines
from tests.support.runtime import RuntimeFactory
from tests.support.waiting import wait_for

INTAKE_LINES = {
    "task accepted",
    "duplicate task message ignored",
    "duplicate of a final task: its notification is published again",
    "notification published again",
    "task message rejected",
    "rejected notification published",
}
TASK_LINES = {
    "task accepted",
    "duplicate task message ignored",
    "duplicate of a final task: its notification is published again",
    "notification published again",
    "dispatch accepted",
    "dispatch failed; will retry while attempts remain",
    "attempt timed out",
    "task finished",
}


def test_every_line_about_a_task_names_it(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
) -> None:
    runtime = make_runtime()
    records = {
        "fine": sqs_record(task_body(idempotency_key="fine")),
        "flaky": sqs_record(
            task_body(idempotency_key="flaky", input={"test": {"dispatch_status": [503, 202]}})
        ),
        "silent": sqs_record(
            task_body(
                idempotency_key="silent",
                algorithm="nlp",
                max_attempts=1,
                timeout_seconds=5,
                input={"test": {"outcome": "silent"}},
            )
        ),
        "bad": sqs_record(task_body(idempotency_key="bad", colour="red")),
    }
    with captured_log_lines(logging.DEBUG) as logs:
        handlers.invoke("intake", sqs_event(*records.values()))
        handlers.invoke("intake", sqs_event(records["silent"]))  # a duplicate, not final
        wait_for(lambda: [n for n in aws.notifications() if n.get("task_id")])  # fine is done
        again = sqs_record(records["fine"]["body"])
        handlers.invoke("intake", sqs_event(again))  # a duplicate of a final task
        clock.advance(6)
        handlers.invoke("sweep", schedule_event("sweep"))
        handlers.invoke("dispatch", schedule_event("dispatch"))
        # every task final: fine (told again for its duplicate), flaky and silent
        wait_for(lambda: len({n["task_id"] for n in aws.notifications() if n.get("task_id")}) == 3)
        algorithm_service.wait_idle()
        handlers.invoke("sweep", schedule_event("sweep"))

    lines = logs.records
    messages = {line["message"] for line in lines}
    assert messages >= TASK_LINES | INTAKE_LINES, sorted(messages)
    tasks = {
        key: runtime.repository.find_task("contracts", key) for key in ("fine", "flaky", "silent")
    }
    ids = {key: task.id for key, task in tasks.items() if task is not None}
    keys_of = {task_id: key for key, task_id in ids.items()}
    message_ids = {record["messageId"]: key for key, record in records.items()}
    message_ids[again["messageId"]] = "fine"

    def about(line: dict[str, Any]) -> str:
        return f"{line['message']!r}: {line}"

    for line in lines:
        if line["message"] in TASK_LINES:
            assert line["task_id"] in keys_of, about(line)
            key = keys_of[line["task_id"]]
            assert (line["app"], line["idempotency_key"]) == ("contracts", key), about(line)
        if line["message"] in INTAKE_LINES:
            assert line["message_id"] in message_ids, about(line)
            key = message_ids[line["message_id"]]
            assert (line["app"], line["idempotency_key"]) == ("contracts", key), about(line)
            if key in ids:
                assert line["task_id"] == ids[key], about(line)
    # A task that goes well writes one INFO line when it is accepted and one when it
    # ends (here its message comes once more, and is answered): its dispatch and its
    # callback are told at DEBUG only.
    fine_at_info = [
        line["message"]
        for line in lines
        if line.get("task_id") == ids["fine"] and line["level"] == "INFO"
    ]
    assert sorted(fine_at_info) == [
        "duplicate of a final task: its notification is published again",
        "notification published again",
        "task accepted",
        "task finished",
    ], fine_at_info
    (failed,) = [
        line
        for line in lines
        if line["message"] == "dispatch failed; will retry while attempts remain"
    ]
    assert failed["endpoint"] == algorithm_service.endpoint("ocr")
    assert failed["http_status"] == 503
    assert failed["error"]
    # the dispatches the fast path made after the batch name no message of it
    for line in lines:
        if line["message"] == "dispatch accepted":
            assert "message_id" not in line, about(line)
