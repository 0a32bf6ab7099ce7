"""Baton's own template.yaml on the emulator: it starts with the embedded defaults (moto,
the Redis stand-in, SQLite), resolves its outputs to loopback, runs a task through the
whole lifecycle, and switches to the real Redis and MariaDB with flags."""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
import urllib3

from tests.local.conftest import StartCloud
from tests.support.algorithm_service import AlgorithmService
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
MYSQL_SERVER_URL = os.environ.get("BATON_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
REDIS_URL = os.environ.get("BATON_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE_SETTINGS = (
    "BATON_DATABASE_SECRET_ARN",
    "BATON_DATABASE_HOST",
    "BATON_DATABASE_PORT",
    "BATON_DATABASE_NAME",
)


def test_the_real_template_starts_on_embedded_defaults(
    start_cloud: StartCloud, tmp_path: Path
) -> None:
    # (no prewarm: only the functions this test calls start, the timers stay quiet)
    cloud = start_cloud(TEMPLATE, tick_seconds=60.0, state_dir=tmp_path / "state", prewarm=False)
    assert cloud.startup_seconds < 10

    # Outputs resolve to the local endpoints
    outputs = cloud.outputs
    assert outputs["CallbackBaseUrl"].startswith("http://127.0.0.1:")
    assert outputs["CallbackBaseUrl"].endswith("/dev")
    assert outputs["CallbackBaseUrl"] == cloud.urls["BatonApi"]
    assert outputs["IntakeQueueUrl"].startswith(cloud.aws_endpoint_url + "/")
    assert outputs["DeadLetterQueueUrl"].startswith(cloud.aws_endpoint_url + "/")
    assert outputs["NotificationTopicArn"].startswith("arn:aws:sns:eu-west-1:123456789012:")
    assert outputs["AlgorithmsParameterName"] == "/baton/local/algorithms"
    session = cloud.boto_session()
    session.client("s3").head_bucket(Bucket=outputs["ResultBucketName"])
    redrive = json.loads(
        session.client("sqs").get_queue_attributes(
            QueueUrl=outputs["IntakeQueueUrl"], AttributeNames=["RedrivePolicy"]
        )["Attributes"]["RedrivePolicy"]
    )
    assert redrive["maxReceiveCount"] == 5
    token = session.client("secretsmanager").get_secret_value(SecretId=outputs["TokenSecretArn"])
    assert len(token["SecretString"]) == 64  # GenerateSecretString: PasswordLength 64
    assert token["SecretString"].isalnum()  # ExcludePunctuation
    registry = session.client("ssm").get_parameter(Name=outputs["AlgorithmsParameterName"])
    assert set(json.loads(registry["Parameter"]["Value"])) == {"ocr", "nlp"}

    # The schema custom resource migrated the SQLite file
    database = tmp_path / "state" / "baton.sqlite3"
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        journal = connection.execute("PRAGMA journal_mode").fetchone()[0]
    assert {"task", "task_execution", "notification_outbox", "alembic_version"} <= tables
    assert journal == "wal"
    assert cloud.invocations["MigrateFunction"] == 1

    # The functions are pointed at the substitutes by Baton's local profile
    env = cloud.lambdas.spec("IntakeFunction").environment
    assert env["BATON_REDIS_URL"].startswith("redis://127.0.0.1:")
    assert env["BATON_REDIS_CLUSTER"] == "false"
    assert env["BATON_DATABASE_URL"] == f"sqlite:///{database}"
    assert not set(DATABASE_SETTINGS) & set(env)
    assert env["BATON_CALLBACK_BASE_URL"] == outputs["CallbackBaseUrl"]
    assert env["BATON_TOKEN_SECRET_ARN"] == outputs["TokenSecretArn"]

    # The API reaches the callback function through the stage variable
    answer = urllib3.PoolManager().request(
        "POST",
        f"{outputs['CallbackBaseUrl']}/tasks/{uuid.uuid4()}/callback",
        body=b'{"attempt": 1, "status": "succeeded"}',
        headers={"Content-Type": "application/json"},
    )
    assert answer.status == 401
    assert "error" in json.loads(answer.data)
    assert cloud.invocations["CallbackFunction"] == 1
    assert any("TaskLifecyclePolicy (AWS::IAM::ManagedPolicy): skipped" in n for n in cloud.notes)


@pytest.mark.slow
def test_a_task_runs_through_the_whole_lifecycle(start_cloud: StartCloud) -> None:
    service = AlgorithmService().start()
    try:
        registry = {
            "ocr": {
                "endpoint": service.endpoint("ocr"),
                "max_concurrency": 2,
                "timeout_seconds": 30,
                "max_attempts": 3,
            }
        }
        # Real-time minutes: the timers stay quiet, the fast path alone moves the task.
        cloud = start_cloud(
            TEMPLATE,
            tick_seconds=60.0,
            parameter_overrides={"AlgorithmsJson": json.dumps(registry)},
        )
        session = cloud.boto_session()
        sqs, sns = session.client("sqs"), session.client("sns")
        inbox = sqs.create_queue(QueueName=f"contracts-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(
            TopicArn=cloud.outputs["NotificationTopicArn"],
            Protocol="sqs",
            Endpoint=inbox_arn,
            Attributes={"RawMessageDelivery": "true"},
        )

        sqs.send_message(
            QueueUrl=cloud.outputs["IntakeQueueUrl"],
            MessageBody=json.dumps(
                {"app": "contracts", "algorithm": "ocr", "input": {"document": "doc-1"}}
            ),
        )

        def notification() -> dict[str, Any] | None:
            messages = sqs.receive_message(QueueUrl=inbox, WaitTimeSeconds=1).get("Messages", [])
            return json.loads(messages[0]["Body"]) if messages else None

        received = wait_for(notification, timeout=14)
        assert received["status"] == "succeeded"
        result = session.client("s3").get_object(
            Bucket=received["result"]["bucket"], Key=received["result"]["key"]
        )
        assert json.loads(result["Body"].read())["task_id"] == received["task_id"]
        # (the notification goes out before the callback's HTTP answer gets back)
        wait_for(lambda: service.callbacks, timeout=5)
        assert [c.http_status for c in service.callbacks] == [200]
        assert cloud.errors == []
    finally:
        service.stop()


@pytest.mark.slow
def test_flags_switch_to_the_real_redis_and_database(
    start_cloud: StartCloud, tmp_path: Path
) -> None:
    name = f"baton_local_{uuid.uuid4().hex[:10]}"
    database_url = f"{MYSQL_SERVER_URL}/{name}?charset=utf8mb4"
    prefix = f"baton-test-{name}"
    env_file = tmp_path / "env.json"
    env_file.write_text(json.dumps({"Parameters": {"BATON_KEY_PREFIX": prefix}}))
    server = sa.create_engine(MYSQL_SERVER_URL, isolation_level="AUTOCOMMIT")
    redis_client = redis.Redis.from_url(REDIS_URL)
    try:
        cloud = start_cloud(
            TEMPLATE,
            redis_url=REDIS_URL,
            database_url=database_url,
            env_file=env_file,
            tick_seconds=60.0,
            prewarm=False,
        )

        env = cloud.lambdas.spec("ReconcileFunction").environment
        assert env["BATON_REDIS_URL"] == REDIS_URL
        assert env["BATON_DATABASE_URL"] == database_url
        assert not set(DATABASE_SETTINGS) & set(env)
        with server.connect() as connection:
            tables = {
                row[0]
                for row in connection.exec_driver_sql(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                    (name,),
                )
            }
        assert {"task", "task_execution", "alembic_version"} <= tables
        assert not (Path(cloud.state_dir) / "baton.sqlite3").exists()
        reconciled = cloud.invoke("ReconcileFunction", {})
        assert reconciled.ok, reconciled.error_text
        assert list(redis_client.scan_iter(match=f"{prefix}:*"))  # its epoch markers
    finally:
        for key in redis_client.scan_iter(match=f"{prefix}:*"):
            redis_client.delete(key)
        redis_client.close()
        with server.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        server.dispose()
