"""Wiring: the collaborators every lifecycle operation receives, built once per cold
start. Nothing here runs at import time, so any module can be imported freely."""

from __future__ import annotations

import random
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import redis

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

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient

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


def fetch_secret(arn: str, session: Any = None) -> str:
    """A Secrets Manager secret's value, cached by Powertools for five minutes; read
    through ``session`` (a boto3 session) when given."""
    from aws_lambda_powertools.utilities import parameters

    if session is None:
        value = parameters.get_secret(arn, max_age=300)
    else:
        value = _provider(session, "secrets").get(arn, max_age=300)
    return value if isinstance(value, str) else bytes(value).decode()


def fetch_parameter(name: str, max_age: int = 300, session: Any = None) -> str:
    """An SSM parameter's value, cached by Powertools for ``max_age`` seconds (read
    through ``session`` when given); a read that fails (missing, denied, unreachable)
    is a ``SettingsError`` naming it."""
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    try:
        if session is None:
            return str(parameters.get_parameter(name, max_age=max_age))
        return str(_provider(session, "ssm").get(name, max_age=max_age))
    except GetParameterError as exc:
        raise SettingsError(f"SSM parameter {name!r} could not be read: {exc}") from None


_providers: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()
_providers_lock = threading.Lock()


def _provider(session: Any, kind: str) -> Any:
    """The Powertools provider of ``kind`` over ``session``, one per session (its cache
    with it). Powertools' own default providers would each make a boto3 session of their
    own, and each session reads botocore's endpoint data again: tens of milliseconds of
    every cold start that reads a secret or a parameter."""
    from aws_lambda_powertools.utilities.parameters import SecretsProvider, SSMProvider

    with _providers_lock:
        providers = _providers.setdefault(session, {})
        provider = providers.get(kind)
        if provider is None:
            make = SecretsProvider if kind == "secrets" else SSMProvider
            provider = providers[kind] = make(boto3_session=session)
        return provider


class LazyClient:
    """A boto3 client made on its first call, once: making one reads its service model
    (tens of milliseconds of a cold start), and a function may never call it (intake
    and the timers publish no notification unless a task ends or a message is bad)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make: Callable[[], Any] | None = make
        self._client: Any = None
        # Dispatch requests go out from a pool: the first calls may race to make it.
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    assert self._make is not None
                    self._client = self._make()
                    self._make = None
                client = self._client
        return getattr(client, name)


class LazySession:
    """The runtime's boto3 session, made when first needed, once: boto3 and botocore's
    client machinery take a few hundred milliseconds to import, and a function that
    reads no secret and calls no AWS API (settings given as values, a timer's tick with
    nothing to publish) never needs them."""

    def __init__(self, session: Any = None) -> None:
        self._session = session
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    import boto3

                    self._session = boto3.session.Session()
        return self._session


def _s3_client(sessions: LazySession) -> Any:
    # SigV4 explicitly: S3 refuses SigV2 presigned URLs on buckets made since 2020,
    # and some regions' clients would still default to it.
    return sessions.get().client("s3", config=_client_config(signature_version="s3v4"))


def _sns_client(sessions: LazySession) -> Any:
    return sessions.get().client("sns", config=_client_config())


def _client_config(**options: Any) -> Any:
    """Every parameter of Baton's S3 and SNS calls is one Baton built itself, typed by
    the clients' stubs: botocore checking each against the service model again, on
    every call and every presigned URL, is CPU spent on no input from outside."""
    from botocore.config import Config

    return Config(parameter_validation=False, **options)


RedisClient = redis.Redis | redis.RedisCluster


def connect_redis(url: str, *, cluster: bool) -> RedisClient:
    """A client for a single node or for a cluster (every script of Baton touches the
    keys of one algorithm, which share one hash slot, so both work the same)."""
    if cluster:
        return redis.RedisCluster.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    return redis.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
    )


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
    # One boto3 session for the settings' reads and the clients: a session is a fresh
    # copy of botocore's endpoint data, read and parsed anew.
    sessions = LazySession(boto_session)
    config = resolve_config(
        settings,
        lambda arn: fetch_secret(arn, session=sessions.get()),
        lambda name: fetch_parameter(name, max_age=refresh, session=sessions.get()),
        clock=clock,
    )
    if config.apps is None:
        logger.warning(
            "no app registry (BATON_APPS or BATON_APPS_PARAMETER): open mode, any app name "
            "is accepted from any sender, with weight 1 and no limits, and the status API "
            "answers every IAM-authenticated caller about every app's tasks"
        )
    repository, _ = create_repository(config.database_url)
    client = redis_client or connect_redis(config.redis_url, cluster=settings.redis_cluster)
    queue = TaskQueue(client, settings.key_prefix)
    return Runtime(
        config=config,
        repository=repository,
        queue=queue,
        policy=PolicyWriter(queue, settings.policy_refresh_seconds),
        results=ResultStore(
            cast("S3Client", LazyClient(lambda: _s3_client(sessions))),
            settings.result_bucket,
        ),
        notifier=Notifier(
            cast("SNSClient", LazyClient(lambda: _sns_client(sessions))),
            settings.notification_topic_arn,
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
