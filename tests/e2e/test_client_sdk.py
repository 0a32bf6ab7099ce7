"""The client SDK against the real stack (the handlers in-process, real Redis and
MariaDB, moto's SQS, SNS and S3): a business app submits with ``BatonClient``, an
algorithm service built on the SDK alone verifies, heartbeats, uploads and calls back,
and the app reads its notifications and results, a duplicate publish dropped."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator

import pytest
from baton import cli
from baton.outbox import build_notification
from baton_sdk import BatonClient, Notification, TaskMessage
from baton_sdk.contracts import derive_idempotency_key

from tests.support.aws import AwsResources
from tests.support.handlers import Handlers
from tests.support.intake_queue import IntakeQueue
from tests.support.runtime import RuntimeFactory
from tests.support.sdk_algorithm_service import SdkAlgorithmService
from tests.support.waiting import wait_for

TASKS = 20
CAP = 4


@pytest.fixture
def sdk_service() -> Iterator[SdkAlgorithmService]:
    service = SdkAlgorithmService().start()
    yield service
    service.stop()


@pytest.fixture
def intake(handlers: Handlers, aws: AwsResources) -> Iterator[IntakeQueue]:
    queue = IntakeQueue(handlers, aws.session)
    yield queue
    queue.stop()


def printed_secret(capsys: pytest.CaptureFixture[str], algorithm: str) -> str:
    """What the operator hands the service: ``baton algorithm secret <name>``."""
    assert cli.main(["algorithm", "secret", algorithm]) == 0
    return capsys.readouterr().out.splitlines()[0]


def test_twenty_tasks_from_an_sdk_app_through_an_sdk_service(
    make_runtime: RuntimeFactory,
    sdk_service: SdkAlgorithmService,
    intake: IntakeQueue,
    aws: AwsResources,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given Baton with one algorithm whose service is built on the SDK and holds the
    # secret the operator printed for it
    runtime = make_runtime(
        algorithms={
            "ocr": {"endpoint": sdk_service.endpoint("ocr"), "max_concurrency": CAP},
        }
    )
    sdk_service.secrets["ocr"] = [printed_secret(capsys, "ocr")]
    intake.start()

    # When a business app submits 20 tasks in batches
    app = BatonClient(intake.url, session=aws.session)
    messages = [
        TaskMessage(
            app="contracts",
            algorithm="ocr",
            input={"document": f"s3://docs/{n}.pdf", "test": {"heartbeats": 2}},
            metadata={"n": n},
        )
        for n in range(TASKS)
    ]
    batch = app.submit_many(messages)

    # Then every message went out, under the key Baton derives for it
    assert batch.ok, batch.failed
    assert batch.keys == [derive_idempotency_key(m) for m in messages]

    # And the service verified, heartbeated, uploaded with a checksum and called back
    wait_for(lambda: len(sdk_service.outcomes) >= TASKS, timeout=60)
    sdk_service.wait_idle()
    assert sdk_service.refused == []
    assert intake.failures == []
    assert sdk_service.max_in_flight["ocr"] <= CAP
    outcomes = {outcome.request.task_id: outcome for outcome in sdk_service.outcomes}
    assert len(outcomes) == TASKS
    for outcome in outcomes.values():
        assert outcome.error is None
        assert outcome.answer is not None
        assert (outcome.answer.status, outcome.answer.applied) == ("succeeded", True)
        assert len(outcome.heartbeats) == 2
        assert all(beat.deadline >= outcome.request.deadline for beat in outcome.heartbeats)
        assert outcome.upload is not None
        assert outcome.upload.checksum_sent
        digest = base64.b64encode(hashlib.sha256(outcome.data).digest()).decode()
        assert outcome.upload.checksum_sha256 == digest
    for key in batch.keys:
        task = runtime.repository.find_task("contracts", key)
        assert task is not None
        assert task.id in outcomes

    # When one notification is published a second time (a publisher that died between
    # SNS and the outbox does just that)
    again = runtime.repository.get_task(next(iter(outcomes)))
    assert again is not None
    runtime.notifier.publish(build_notification(runtime, again))
    queued = aws.session.client("sqs").get_queue_attributes(
        QueueUrl=aws.subscriber_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]["ApproximateNumberOfMessages"]
    assert int(queued) == TASKS + 1

    # Then the app gets exactly 20, the duplicate dropped, and reads every result
    notes = list(app.notifications(aws.subscriber_queue_url, wait_seconds=1, stop_when_empty=True))
    finished = [note for note in notes if isinstance(note, Notification)]
    assert len(notes) == len(finished) == TASKS
    assert len({note.notification_id for note in finished}) == TASKS
    assert {note.task_id for note in finished} == set(outcomes)
    assert sorted(note.metadata["n"] for note in finished) == list(range(TASKS))
    for note in finished:
        assert note.status == "succeeded"
        assert app.read_result(note) == outcomes[note.task_id].data
    # and nothing is left on its queue (handled messages, and the duplicate, deleted)
    assert (
        list(app.notifications(aws.subscriber_queue_url, wait_seconds=0, stop_when_empty=True))
        == []
    )
    # the bytes S3 holds carry the checksum the service computed
    s3 = aws.session.client("s3")
    sample = outcomes[finished[0].task_id]
    assert sample.upload is not None
    head = s3.head_object(
        Bucket=sample.upload.bucket, Key=sample.upload.key, ChecksumMode="ENABLED"
    )
    assert head.get("ChecksumSHA256") == sample.upload.checksum_sha256
    assert json.loads(sample.data)["task_id"] == sample.request.task_id
