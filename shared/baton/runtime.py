"""Wiring: the collaborators every lifecycle operation receives, built once per cold
start. Nothing here runs at import time, so any module can be imported freely."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import redis
from botocore.config import Config as BotoConfig

from baton.database import create_repository
from baton.dispatch_client import DispatchClient, HttpDispatchClient
from baton.errors import SettingsError
from baton.notifications import Notifier
from baton.observability import logger
from baton.policy import PolicyWriter
from baton.queue import TaskQueue
from baton.repository import Repository
from baton.settings import Config, Settings, load_settings, resolve_config
from baton.storage import ResultStore

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    config: Config
    repository: Repository
    queue: TaskQueue
    results: ResultStore
    notifier: Notifier
    dispatcher: DispatchClient
    policy: PolicyWriter
    clock: Clock = utc_now
    random: random.Random = field(default_factory=random.Random)

    @property
    def settings(self) -> Settings:
        return self.config.settings


def fetch_secret(arn: str) -> str:
    from aws_lambda_powertools.utilities import parameters

    value = parameters.get_secret(arn, max_age=300)
    return value if isinstance(value, str) else bytes(value).decode()


def fetch_parameter(name: str, max_age: int = 300) -> str:
    """An SSM parameter's value, cached by Powertools for ``max_age`` seconds; a read
    that fails (missing, denied, unreachable) is a ``SettingsError`` naming it."""
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    try:
        return str(parameters.get_parameter(name, max_age=max_age))
    except GetParameterError as exc:
        raise SettingsError(f"SSM parameter {name!r} could not be read: {exc}") from None


RedisClient = redis.Redis | redis.RedisCluster


def connect_redis(url: str, *, cluster: bool) -> RedisClient:
    """A client for a single node or for a cluster (every script of Baton touches the
    keys of one algorithm, which share one hash slot, so both work the same)."""
    if cluster:
        return redis.RedisCluster.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    return redis.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
    )


AWS_CLIENT_CONFIG = BotoConfig(parameter_validation=False)
"""Every parameter of Baton's S3 and SNS calls is one Baton built itself, typed by the
clients' stubs: botocore checking each against the service model again, on every call
and every presigned URL, is CPU spent on no input from outside."""


def build_runtime(
    settings: Settings,
    *,
    redis_client: RedisClient | None = None,
    dispatcher: DispatchClient | None = None,
    clock: Clock = utc_now,
    boto_session: Any = None,
) -> Runtime:
    # Powertools caches a parameter as long as the registry it holds may get old, so a
    # re-read that is due is never answered from an older cache entry.
    refresh = settings.policy_refresh_seconds
    config = resolve_config(
        settings, fetch_secret, lambda name: fetch_parameter(name, max_age=refresh), clock=clock
    )
    if config.apps is None:
        logger.warning(
            "no app registry (BATON_APPS or BATON_APPS_PARAMETER): open mode, any app name "
            "is accepted from any sender, with weight 1 and no limits, and the status API "
            "answers every IAM-authenticated caller about every app's tasks"
        )
    repository, _ = create_repository(config.database_url)
    session = boto_session or boto3.session.Session()
    client = redis_client or connect_redis(config.redis_url, cluster=settings.redis_cluster)
    queue = TaskQueue(client, settings.key_prefix)
    return Runtime(
        config=config,
        repository=repository,
        queue=queue,
        policy=PolicyWriter(queue, settings.policy_refresh_seconds),
        # SigV4 explicitly: S3 refuses SigV2 presigned URLs on buckets made since 2020,
        # and some regions' clients would still default to it.
        results=ResultStore(
            session.client(
                "s3", config=AWS_CLIENT_CONFIG.merge(BotoConfig(signature_version="s3v4"))
            ),
            settings.result_bucket,
        ),
        notifier=Notifier(
            session.client("sns", config=AWS_CLIENT_CONFIG), settings.notification_topic_arn
        ),
        dispatcher=dispatcher
        or HttpDispatchClient(settings.dispatch_timeout_seconds, config.signing_keys),
        clock=clock,
    )


_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """The runtime of this process, built on first use from the environment."""
    global _runtime  # noqa: PLW0603 - one runtime per cold start is the point
    if _runtime is None:
        _runtime = build_runtime(load_settings())
    return _runtime


def has_runtime() -> bool:
    """Whether this process has its runtime already (built, or installed)."""
    return _runtime is not None


def set_runtime(runtime: Runtime | None) -> None:
    """Install (or, with None, forget) the process runtime: tests and the local emulator."""
    global _runtime  # noqa: PLW0603
    _runtime = runtime
