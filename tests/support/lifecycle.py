"""Steps of a task's life as the e2e tests drive them through the handlers: a message
on the intake queue, the sweep's timer, a task found by its key, its notifications."""

from __future__ import annotations

from typing import Any

from baton.models import Task
from baton.runtime import Runtime

from tests.support.aws import AwsResources
from tests.support.events import schedule_event, sqs_event, sqs_record
from tests.support.handlers import Handlers


def send_message(handlers: Handlers, body: str, sender_id: str | None = None) -> dict[str, Any]:
    """One intake record, as SQS delivers it; the batch's answer."""
    answer: dict[str, Any] = handlers.invoke(
        "intake", sqs_event(sqs_record(body, sender_id=sender_id))
    )
    return answer


def run_sweep(handlers: Handlers) -> dict[str, Any]:
    """The sweep's timer fires; its report."""
    answer: dict[str, Any] = handlers.invoke("sweep", schedule_event("sweep"))
    return answer


def task_of(runtime: Runtime, key: str, app: str = "contracts") -> Task:
    task = runtime.repository.find_task(app, key)
    assert task is not None, f"no task {app}/{key}"
    return task


def notifications_of(aws: AwsResources, task: Task) -> list[dict[str, Any]]:
    """What the app's queue received about the task so far."""
    return [n for n in aws.notifications(wait_seconds=1) if n["task_id"] == task.id]
