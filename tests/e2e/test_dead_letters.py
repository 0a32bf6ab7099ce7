"""The intake DLQ, end to end: messages the intake function refused end there (SQS's
redrive policy, on moto), ``baton dlq list`` shows them without taking them, and
``baton dlq redrive`` moves them back, where each becomes one task however many
copies come back."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.support.algorithm_service import AlgorithmService
from tests.support.aws import AwsResources
from tests.support.console import baton
from tests.support.database import count_rows
from tests.support.events import task_body
from tests.support.handlers import Handlers
from tests.support.intake_queues import IntakeQueues
from tests.support.runtime import RuntimeFactory, registry_for
from tests.support.waiting import wait_for


@pytest.fixture
def queues(aws: AwsResources) -> IntakeQueues:
    return IntakeQueues.create(aws.session, max_receive_count=2)


@pytest.fixture
def engine(clean_database: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(clean_database)
    yield engine
    engine.dispose()


def test_refused_messages_are_listed_and_redriven_and_each_becomes_one_task(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    queues: IntakeQueues,
    engine: sa.Engine,
    capsys: pytest.CaptureFixture[str],
) -> None:
    urls = {"intake_queue_url": queues.queue_url, "intake_dlq_url": queues.dlq_url}
    make_runtime(**urls)
    # Given a task for an algorithm not registered yet, which the app sent twice
    late = task_body(algorithm="vision", idempotency_key="late-1", input={"page": 1})
    sent = {queues.send(late), queues.send(late)}
    queues.send(task_body(idempotency_key="fine-1"))

    # When intake refuses it until SQS gives up on both copies
    def dead_lettered() -> bool:
        queues.poll_into_intake(handlers)
        return queues.count(queues.dlq_url) == 2 and queues.count(queues.queue_url) == 0

    wait_for(dead_lettered, timeout=30)
    assert count_rows(engine, "task") == 1
    # (the other task's callback done: its handler's metrics do not land in our stdout)
    wait_for(lambda: [n for n in aws.notifications() if n["status"] != "rejected"])
    algorithm_service.wait_idle()

    # Then the DLQ lists both, with what is known of them, and keeps them
    code, out, _ = baton(capsys, "dlq", "list", "--json")
    assert code == 0
    listing = json.loads(out)
    assert listing["approximate_count"] == 2
    assert {m["message_id"] for m in listing["messages"]} == sent
    for message in listing["messages"]:
        assert message["body"] == late[:80]
        assert message["app"] == "contracts"
        assert message["receive_count"] >= queues.max_receive_count
        # what intake kept under the message id (SQS moves the message as it was sent)
        assert message["reason"] == "algorithm: 'vision' is not registered"
    code, out, _ = baton(capsys, "dlq", "list")
    assert code == 0
    assert out.splitlines()[0] == "about 2 message(s) in the intake DLQ; 2 shown"
    assert out.splitlines()[1].split() == ["message_id", "receive_count", "app", "reason", "body"]
    assert "algorithm: 'vision' is not registered" in out
    assert "intake log" not in out  # every reason is shown
    # listed messages are visible again at once
    assert queues.count(queues.dlq_url) == 2

    # When the algorithm is registered and the DLQ redriven
    make_runtime(algorithms=registry_for(algorithm_service, ocr=2, nlp=3, vision=1), **urls)
    code, out, err = baton(capsys, "dlq", "redrive", "--method", "receive-send", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["method"] == "receive_send"
    assert (report["status"], report["moved"], report["to_move"], report["failed"]) == (
        "COMPLETED",
        2,
        2,
        0,
    )
    assert "completed: 2 of 2 moved (receive_send)" in err
    assert queues.count(queues.dlq_url) == 0

    # Then both copies are processed, as one task, which runs once and is notified once
    queues.poll_into_intake(handlers)
    assert queues.count(queues.queue_url) == 0
    assert count_rows(engine, "task", "idempotency_key = :key", key="late-1") == 1
    notified = wait_for(
        lambda: (
            [n for n in aws.notifications() if n["algorithm"] == "vision" and n["task_id"]] or None
        )
    )
    # (the app was told of each refused copy once, before: rejected, with no task)
    rejected = [n for n in aws.notifications() if n["status"] == "rejected"]
    assert sorted(n["message_id"] for n in rejected) == sorted(sent)
    algorithm_service.wait_idle()
    assert len(notified) == 1
    assert notified[0]["status"] == "succeeded"
    assert len([r for r in algorithm_service.requests if r["algorithm"] == "vision"]) == 1

    # And a redrive of an empty DLQ moves nothing
    code, out, _ = baton(capsys, "dlq", "redrive", "--method", "receive-send")
    assert code == 0
    assert out.splitlines()[-1] == "completed: 0 of 0 moved (receive_send)"


def test_the_dlq_commands_name_the_setting_they_miss(
    make_runtime: RuntimeFactory, queues: IntakeQueues, capsys: pytest.CaptureFixture[str]
) -> None:
    make_runtime()
    code, out, err = baton(capsys, "dlq", "list")
    assert (code, out) == (2, "")
    assert "BATON_INTAKE_DLQ_URL not set" in err
    make_runtime(intake_dlq_url=queues.dlq_url)
    code, out, err = baton(capsys, "dlq", "redrive")
    assert (code, out) == (2, "")
    assert "BATON_INTAKE_QUEUE_URL not set" in err
    assert "IntakeQueueUrl" in err


def test_a_redrive_sqs_cannot_run_as_a_move_task_is_refused_unless_made_by_hand(
    make_runtime: RuntimeFactory, queues: IntakeQueues, capsys: pytest.CaptureFixture[str]
) -> None:
    """moto has no message move tasks (it answers 500): ``--method move-task`` and
    ``auto`` say SQS refused; only an answer that SQS cannot run one falls back (see
    tests/unit/test_dead_letters.py)."""
    make_runtime(intake_queue_url=queues.queue_url, intake_dlq_url=queues.dlq_url)
    code, out, err = baton(capsys, "dlq", "redrive", "--method", "move-task")
    assert (code, out) == (1, "")
    assert "SQS refused" in err
