"""``baton dlq redrive`` through SQS's message move task, against a stand-in client: moto
has no StartMessageMoveTask or ListMessageMoveTasks, so the e2e test moves by hand and
this one follows a move task's progress, and when the by-hand move takes over."""

from __future__ import annotations

from typing import Any, cast

import pytest
from baton.dead_letters import RedriveProgress, redrive
from botocore.exceptions import ClientError

DLQ = "https://sqs.eu-west-1.amazonaws.com/123456789012/baton-intake-dlq"
QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/baton-intake"


class MoveTaskSqs:
    """Answers like SQS: a move task that reports progress on each listing, then ends.
    ``start_error``: the code start_message_move_task fails with."""

    def __init__(
        self,
        progress: list[tuple[str, int]],
        *,
        running: bool = False,
        start_error: str | None = None,
    ) -> None:
        self.progress = progress
        self.started: list[dict[str, Any]] = []
        self.running = running
        self.start_error = start_error
        self.received = 0

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:  # noqa: N803
        name = QueueUrl.rsplit("/", 1)[1]
        return {
            "Attributes": {
                "QueueArn": f"arn:aws:sqs:eu-west-1:123456789012:{name}",
                "ApproximateNumberOfMessages": "0",
            }
        }

    def start_message_move_task(self, **kwargs: Any) -> dict[str, Any]:
        if self.start_error:
            raise ClientError(
                {"Error": {"Code": self.start_error, "Message": "no"}}, "StartMessageMoveTask"
            )
        self.started.append(kwargs)
        return {"TaskHandle": "handle-1"}

    def list_message_move_tasks(self, SourceArn: str, MaxResults: int) -> dict[str, Any]:  # noqa: N803
        if not self.started and not self.running:
            return {"Results": []}
        status, moved = self.progress[0] if len(self.progress) == 1 else self.progress.pop(0)
        result: dict[str, Any] = {
            "Status": status,
            "SourceArn": SourceArn,
            "ApproximateNumberOfMessagesMoved": moved,
            "ApproximateNumberOfMessagesToMove": 3,
        }
        if status == "RUNNING":  # SQS gives the handle of a running task only
            result["TaskHandle"] = "handle-1"
        return {"Results": [result]}

    def receive_message(self, **_kwargs: Any) -> dict[str, Any]:
        self.received += 1
        return {"Messages": []}


def test_a_move_task_is_started_and_followed_until_it_completes() -> None:
    sqs = MoveTaskSqs([("RUNNING", 0), ("RUNNING", 1), ("RUNNING", 3), ("COMPLETED", 3)])
    seen: list[RedriveProgress] = []
    naps: list[float] = []

    report = redrive(
        cast(Any, sqs), DLQ, QUEUE, on_progress=seen.append, poll_seconds=0.5, sleep=naps.append
    )

    assert sqs.started == [
        {
            "SourceArn": "arn:aws:sqs:eu-west-1:123456789012:baton-intake-dlq",
            "DestinationArn": "arn:aws:sqs:eu-west-1:123456789012:baton-intake",
        }
    ]
    assert [(p.status, p.moved, p.to_move) for p in seen] == [
        ("RUNNING", 0, 3),
        ("RUNNING", 1, 3),
        ("RUNNING", 3, 3),
        ("COMPLETED", 3, 3),
    ]
    assert naps == [0.5, 0.5, 0.5]
    assert (report.method, report.status, report.moved, report.followed) == (
        "move_task",
        "COMPLETED",
        3,
        False,
    )


def test_a_move_task_already_running_is_followed_not_started_again() -> None:
    sqs = MoveTaskSqs([("RUNNING", 2), ("RUNNING", 2), ("COMPLETED", 3)], running=True)
    report = redrive(cast(Any, sqs), DLQ, QUEUE, sleep=lambda _seconds: None)
    assert sqs.started == []
    assert (report.status, report.moved, report.followed) == ("COMPLETED", 3, True)


def test_a_failed_move_task_says_why() -> None:
    sqs = MoveTaskSqs([("RUNNING", 0), ("FAILED", 1)])
    sqs.list_message_move_tasks = _with_reason(sqs.list_message_move_tasks)  # type: ignore[method-assign]
    report = redrive(cast(Any, sqs), DLQ, QUEUE, sleep=lambda _seconds: None)
    assert (report.status, report.failure_reason) == ("FAILED", "AccessDenied")


def _with_reason(listing: Any) -> Any:
    def answer(**kwargs: Any) -> dict[str, Any]:
        results: dict[str, Any] = listing(**kwargs)
        for result in results["Results"]:
            if result["Status"] == "FAILED":
                result["FailureReason"] = "AccessDenied"
        return results

    return answer


def test_auto_moves_by_hand_where_sqs_runs_no_move_task() -> None:
    sqs = MoveTaskSqs([("RUNNING", 0)], start_error="UnsupportedOperation")
    report = redrive(cast(Any, sqs), DLQ, QUEUE, method="auto")
    assert (report.method, report.status, report.moved) == ("receive_send", "COMPLETED", 0)
    assert sqs.received == 1


@pytest.mark.parametrize(
    ("method", "code"), [("move_task", "UnsupportedOperation"), ("auto", "AccessDenied")]
)
def test_any_other_refusal_is_not_hidden_by_a_move_by_hand(method: Any, code: str) -> None:
    sqs = MoveTaskSqs([("RUNNING", 0)], start_error=code)
    with pytest.raises(ClientError):
        redrive(cast(Any, sqs), DLQ, QUEUE, method=method)
    assert sqs.received == 0
