"""Fixtures over the real services: MariaDB and Redis on this machine, moto on
loopback for AWS. Each run has its own database and each test its own Redis key
prefix, so runs and tests never see each other's data."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
import sqlalchemy as sa
from baton.runtime import Runtime, build_runtime, set_runtime
from baton.schema import upgrade_database
from baton.settings import load_settings

from tests.support.algorithm_service import AlgorithmService
from tests.support.aws import AwsResources
from tests.support.clock import ShiftableClock
from tests.support.gateway import CallbackGateway
from tests.support.handlers import Handlers
from tests.support.runtime import TOKEN_SECRET, RuntimeFactory, registry_for
from tests.support.services import MYSQL_SERVER_URL, REDIS_URL, RUN_ID, free_port

os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Baton")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "baton")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

TIERS = {
    "unit": None,
    "integration": "integration",
    "e2e": "e2e",
    "infrastructure": "infrastructure",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        marker = TIERS.get(tier)
        if marker:
            item.add_marker(getattr(pytest.mark, marker))


# -- servers ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A database of this run's own, at the latest migration."""
    name = f"baton_test_{RUN_ID}"
    server = sa.create_engine(MYSQL_SERVER_URL, isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    url = f"{MYSQL_SERVER_URL}/{name}?charset=utf8mb4"
    upgrade_database(url)
    yield url
    with server.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
    server.dispose()


@pytest.fixture
def clean_database(database_url: str) -> str:
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        for table in ("notification_outbox", "task_execution", "task", "algorithm_hold"):
            connection.exec_driver_sql(f"DELETE FROM {table}")
    engine.dispose()
    return database_url


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    yield client
    client.close()


@pytest.fixture
def key_prefix(redis_client: redis.Redis) -> Iterator[str]:
    prefix = f"baton-test-{RUN_ID}-{uuid.uuid4().hex[:8]}"
    yield prefix
    for key in redis_client.scan_iter(match=f"{prefix}:*", count=1000):
        redis_client.delete(key)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server on loopback, so presigned URLs work over real HTTP."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    previous = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    yield endpoint
    if previous is None:
        os.environ.pop("AWS_ENDPOINT_URL", None)
    else:
        os.environ["AWS_ENDPOINT_URL"] = previous
    server.stop()


@pytest.fixture
def aws(moto_endpoint: str) -> AwsResources:
    """A result bucket, the notification topic, and a business app ('contracts')
    subscribed with a filter policy and raw delivery, as the README shows."""
    session = boto3.session.Session(region_name="eu-west-1")
    suffix = uuid.uuid4().hex[:10]
    bucket = f"baton-results-{suffix}"
    session.client("s3").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    sns = session.client("sns")
    topic_arn = sns.create_topic(Name=f"baton-notifications-{suffix}")["TopicArn"]
    sqs = session.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"contracts-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={
            "RawMessageDelivery": "true",
            "FilterPolicy": json.dumps({"app": ["contracts"]}),
        },
    )
    return AwsResources(bucket, topic_arn, queue_url, session)


# -- the system under test ---------------------------------------------------------------


@pytest.fixture
def clock() -> ShiftableClock:
    return ShiftableClock()


@pytest.fixture
def algorithm_service() -> Iterator[AlgorithmService]:
    service = AlgorithmService().start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def handlers() -> Handlers:
    return Handlers()


@pytest.fixture
def gateway(handlers: Handlers) -> Iterator[CallbackGateway]:
    gateway = CallbackGateway(handlers).start()
    yield gateway
    gateway.stop()


@pytest.fixture
def make_runtime(
    clean_database: str,
    redis_client: redis.Redis,
    key_prefix: str,
    aws: AwsResources,
    algorithm_service: AlgorithmService,
    gateway: CallbackGateway,
    clock: ShiftableClock,
) -> Iterator[RuntimeFactory]:
    """Build the runtime the handlers use; keyword arguments override settings
    (``algorithms=`` takes a registry dict)."""

    def factory(**overrides: Any) -> Runtime:
        environ = {
            "BATON_DATABASE_URL": clean_database,
            "BATON_REDIS_URL": REDIS_URL,
            "BATON_RESULT_BUCKET": aws.bucket,
            "BATON_NOTIFICATION_TOPIC_ARN": aws.topic_arn,
            "BATON_CALLBACK_BASE_URL": gateway.base_url,
            "BATON_TOKEN_SECRET": TOKEN_SECRET,
            "BATON_ALGORITHMS": json.dumps(
                overrides.pop("algorithms", None) or registry_for(algorithm_service)
            ),
            "BATON_KEY_PREFIX": key_prefix,
            "BATON_BACKOFF_BASE_SECONDS": "1",
            "BATON_BACKOFF_MAX_SECONDS": "4",
            "BATON_NOTIFICATION_GRACE_SECONDS": "0",
        }
        environ.update({f"BATON_{key.upper()}": str(value) for key, value in overrides.items()})
        if "algorithms_parameter" in overrides:  # the registry comes from SSM instead
            del environ["BATON_ALGORITHMS"]
        runtime = build_runtime(
            load_settings(environ), redis_client=redis_client, clock=clock, boto_session=aws.session
        )
        set_runtime(runtime)
        return runtime

    yield factory
    set_runtime(None)
