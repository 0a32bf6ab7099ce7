"""SQS event sources of the emulator, on a small template of its own (not Baton's): the
event shape, the function's environment, partial batch failures and the DLQ redrive."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.local.conftest import FUNCTIONS, TEMPLATES, StartCloud, records, sqs_bodies
from tests.support.waiting import wait_for

LATE_FUNCTION = """
  LateQueue:
    Type: AWS::SQS::Queue

  LateFunction:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          OWN: late
      Events:
        Late:
          Type: SQS
          Properties:
            Queue: !GetAtt LateQueue.Arn
"""


def _with_late_function(tmp_path: Path) -> Path:
    """The SQS test template with one more function (and its queue) added: nothing else."""
    text = (TEMPLATES / "sqs.yaml").read_text().replace("../functions/", f"{FUNCTIONS}/")
    text = text.replace("\nOutputs:", LATE_FUNCTION + "\nOutputs:")
    text += "  LateQueueUrl:\n    Value: !Ref LateQueue\n"
    path = tmp_path / "template.yaml"
    path.write_text(text)
    return path


def test_a_function_added_to_the_template_runs_for_its_queue_with_its_environment(
    start_cloud: StartCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the test template with a function added, an env-vars file and a variable of
    # the calling process that must not leak into the functions
    env_file = tmp_path / "env.json"
    env_file.write_text(
        json.dumps(
            {
                "Parameters": {"OVERRIDDEN_BY_FILE": "file", "ADDED_BY_FILE": "added"},
                "ConsumerFunction": {"ONLY_FOR_CONSUMER": "consumer"},
            }
        )
    )
    monkeypatch.setenv("LEAKED_FROM_PARENT", "1")
    cloud = start_cloud(
        _with_late_function(tmp_path), env_file=env_file, parameter_overrides={"Flavour": "fancy"}
    )
    sqs = cloud.boto_session().client("sqs")
    work_url = cloud.outputs["WorkQueueUrl"]
    work_arn = sqs.get_queue_attributes(QueueUrl=work_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]

    # When a message arrives on each queue
    sqs.send_message(
        QueueUrl=work_url,
        MessageBody="hello consumer",
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "greeting"}},
    )
    sqs.send_message(QueueUrl=cloud.outputs["LateQueueUrl"], MessageBody="hello late")

    # Then each function is invoked with a Lambda SQS event
    consumer = wait_for(lambda: records(cloud, "ConsumerFunction"))[0]
    late = wait_for(lambda: records(cloud, "LateFunction"))[0]
    (item,) = consumer["event"]["Records"]
    assert set(item) == {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "md5OfMessageAttributes",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    assert item["body"] == "hello consumer"
    assert item["md5OfBody"] == hashlib.md5(b"hello consumer").hexdigest()
    assert item["eventSource"] == "aws:sqs"
    assert item["eventSourceARN"] == work_arn
    assert item["awsRegion"] == "eu-west-1"
    assert item["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} <= set(
        item["attributes"]
    )
    assert item["messageAttributes"] == {
        "kind": {
            "stringValue": "greeting",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        }
    }
    assert late["event"]["Records"][0]["body"] == "hello late"

    # And each sees Globals + its own variables + the env-vars file, resolved, and nothing else
    env = consumer["env"]
    assert env["FROM_GLOBALS"] == "globals"
    assert env["OVERRIDDEN_BY_FUNCTION"] == "function"
    assert env["OVERRIDDEN_BY_FILE"] == "file"
    assert env["ADDED_BY_FILE"] == "added"
    assert env["ONLY_FOR_CONSUMER"] == "consumer"
    assert env["OWN"] == "local-eu-west-1-fancy"
    assert env["FANCY"] == "yes"
    assert env["WORK_QUEUE_ARN"] == work_arn
    assert env["DEAD_LETTERS"] == cloud.outputs["DeadLetterQueueUrl"]
    assert env["AWS_ENDPOINT_URL"] == cloud.aws_endpoint_url
    assert env["AWS_REGION"] == "eu-west-1"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "384"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/test/consumer"
    assert "LEAKED_FROM_PARENT" not in env
    assert late["env"]["OWN"] == "late"
    assert late["env"]["FROM_GLOBALS"] == "globals"
    assert late["env"]["ADDED_BY_FILE"] == "added"
    assert "ONLY_FOR_CONSUMER" not in late["env"]
    assert "FANCY" not in late["env"]

    # And a Lambda context, in the function's own directory
    context = consumer["context"]
    assert context["function_name"] == env["AWS_LAMBDA_FUNCTION_NAME"]
    assert context["function_name"].startswith("local-ConsumerFunction-")
    assert context["invoked_function_arn"].endswith(f":function:{context['function_name']}")
    assert context["memory_limit_in_mb"] == "384"
    assert 0 < context["remaining_ms"] <= 20_000
    assert consumer["cwd"] == str(FUNCTIONS / "recorder")
    assert late["pid"] != consumer["pid"]
    assert cloud.outputs["VpcId"].startswith("vpc-")


def test_only_the_records_reported_as_failed_come_back(start_cloud: StartCloud) -> None:
    # Given one consumer worker (one batch at a time)
    cloud = start_cloud("sqs.yaml", concurrency={"ConsumerFunction": 1})
    sqs = cloud.boto_session().client("sqs")
    url = cloud.outputs["WorkQueueUrl"]

    # When a batch of three arrives and the function reports the middle one as failed
    sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "1", "MessageBody": json.dumps({"n": 1})},
            {"Id": "2", "MessageBody": json.dumps({"n": 2, "fail": True})},
            {"Id": "3", "MessageBody": json.dumps({"n": 3})},
        ],
    )

    # Then the failed record is delivered again (after the scaled visibility timeout) ...
    failing = json.dumps({"n": 2, "fail": True})
    wait_for(lambda: sqs_bodies(cloud, "ConsumerFunction").count(failing) >= 2, timeout=10)
    first = records(cloud, "ConsumerFunction")[0]["event"]["Records"]
    assert [json.loads(r["body"])["n"] for r in first] == [1, 2, 3]
    again = [
        r
        for record in records(cloud, "ConsumerFunction")[1:]
        for r in record["event"]["Records"]
        if r["body"] == failing
    ]
    assert again[0]["attributes"]["ApproximateReceiveCount"] == "2"

    # ... and the others were deleted: never delivered again, no longer in the queue
    bodies = sqs_bodies(cloud, "ConsumerFunction")
    assert bodies.count(json.dumps({"n": 1})) == 1
    assert bodies.count(json.dumps({"n": 3})) == 1
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    left = int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )
    assert left <= 1


def test_a_failed_invocation_deletes_none_of_its_batch(start_cloud: StartCloud) -> None:
    cloud = start_cloud("sqs.yaml", concurrency={"ConsumerFunction": 1})
    sqs = cloud.boto_session().client("sqs")

    # When the function raises on a batch of two
    sqs.send_message_batch(
        QueueUrl=cloud.outputs["WorkQueueUrl"],
        Entries=[
            {"Id": "ok", "MessageBody": json.dumps({"n": "fine"})},
            {"Id": "bad", "MessageBody": json.dumps({"n": "bad", "raise": True})},
        ],
    )

    # Then both records come back, the good one too, and the error is recorded
    fine = json.dumps({"n": "fine"})
    wait_for(lambda: sqs_bodies(cloud, "ConsumerFunction").count(fine) >= 2, timeout=10)
    assert ("ConsumerFunction", "RuntimeError: asked to raise") in cloud.errors


def test_a_message_goes_to_the_dead_letter_queue_after_max_receive_count(
    start_cloud: StartCloud,
) -> None:
    cloud = start_cloud("sqs.yaml")
    sqs = cloud.boto_session().client("sqs")
    poison = json.dumps({"fail": True, "id": "poison"})

    # When a message fails every time
    sqs.send_message(QueueUrl=cloud.outputs["WorkQueueUrl"], MessageBody=poison)

    # Then after maxReceiveCount (3) deliveries it waits in the dead-letter queue
    def in_dead_letters() -> list[str]:
        answer = sqs.receive_message(
            QueueUrl=cloud.outputs["DeadLetterQueueUrl"], WaitTimeSeconds=1
        )
        return [m["Body"] for m in answer.get("Messages", [])]

    assert wait_for(in_dead_letters, timeout=12) == [poison]
    deliveries = [
        r["attributes"]["ApproximateReceiveCount"]
        for record in records(cloud, "ConsumerFunction")
        for r in record["event"]["Records"]
    ]
    assert deliveries == ["1", "2", "3"]
