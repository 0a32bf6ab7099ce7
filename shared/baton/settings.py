"""Settings: environment variables with the ``BATON_`` prefix, validated once at cold start.

``Settings`` is what the environment says; ``Config`` is what the functions run on,
after secrets and the registries have been fetched (``resolve_config``).
A missing or invalid setting raises ``SettingsError`` naming the variable.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Self, TypeVar

from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL

from baton.apps import PRINCIPAL_ARN_PATTERN, AppRegistry, parse_app_registry
from baton.errors import SettingsError
from baton.registries import Monotonic, Registries, RegistrySource, WallClock, utc_now
from baton.registry import AlgorithmRegistry, parse_algorithm_registry
from baton.signing import SigningKeyring
from baton.tokens import TokenKeyring

MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4 presigned URLs live at most a week

R = TypeVar("R")


class Settings(BaseSettings):
    """Everything the environment configures. Field ``x`` is variable ``BATON_X``."""

    # An empty variable counts as unset: `sam local` and templates that resolve a
    # reference to nothing leave "" behind.
    model_config = SettingsConfigDict(
        env_prefix="BATON_", extra="ignore", frozen=True, env_ignore_empty=True
    )

    database_url: SecretStr | None = None
    database_secret_arn: str | None = None
    database_host: str | None = None
    database_port: int | None = Field(default=None, ge=1, le=65535)
    database_name: str | None = None

    redis_url: SecretStr
    redis_cluster: bool = Field(
        default=False, description="Use the cluster client (ElastiCache Serverless, cluster mode)"
    )
    result_bucket: str = Field(min_length=3, max_length=63)
    notification_topic_arn: str = Field(pattern=r"^arn:aws[a-z-]*:sns:")
    callback_base_url: AnyHttpUrl

    token_secret: SecretStr | None = None
    token_secret_arn: str | None = None
    signing_secret: SecretStr | None = Field(
        default=None,
        description="The key (or keyring) from which each algorithm's dispatch signing "
        "secret is derived. Neither this nor signing_secret_arn: derived from the token "
        "secret (baton.signing).",
    )
    signing_secret_arn: str | None = None

    algorithms: SecretStr | None = Field(
        default=None, description="The registry as JSON (kept opaque so it never reaches a log)."
    )
    algorithms_parameter: str | None = None
    apps: SecretStr | None = Field(
        default=None,
        description="The app registry as JSON (opaque, like the algorithm registry). "
        "Neither this nor apps_parameter: open mode, any app name is accepted.",
    )
    apps_parameter: str | None = None
    operator_principals: str | None = Field(
        default=None,
        description="Comma-separated IAM ARNs allowed on every app's tasks in the status "
        "API (a role also matches its assumed-role sessions).",
    )
    policy_refresh_seconds: int = Field(
        default=60,
        ge=1,
        le=86400,
        description="How old a registry read from SSM, and a function's copy of the live "
        "scheduling policy in Redis, may get before they are read and written again.",
    )

    cancel_retention_seconds: int = Field(
        default=86_400,
        ge=60,
        le=30 * 24 * 3600,
        description="How long a cancel by idempotency key waits for a task that has not "
        "arrived yet (SQS keeps no order); the task, arriving within it, ends cancelled",
    )
    policy_grace_seconds: int = Field(
        default=3600,
        ge=0,
        le=30 * 24 * 3600,
        description="How long tasks of an algorithm that left the registry wait for it to "
        "come back before they fail (algorithm_unregistered)",
    )
    # Only the operator commands on the intake queue (``baton dlq``) need these (the
    # stack outputs IntakeQueueUrl and DeadLetterQueueUrl); no function reads them.
    intake_queue_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    intake_dlq_url: str | None = Field(default=None, pattern=r"^https?://\S+$")

    key_prefix: str = Field(default="baton", pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    result_prefix: str = Field(default="results", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    dispatch_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    upload_url_ttl_seconds: int = Field(default=3600, ge=60, le=MAX_PRESIGN_SECONDS)
    upload_url_refresh_seconds: int = Field(default=600, ge=0, le=MAX_PRESIGN_SECONDS)
    result_url_ttl_seconds: int = Field(default=86400, ge=60, le=MAX_PRESIGN_SECONDS)
    token_grace_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    backoff_base_seconds: float = Field(default=5.0, ge=0, le=3600)
    backoff_max_seconds: float = Field(default=900.0, ge=0, le=86400)
    ready_queue_depth: int = Field(
        default=100, ge=1, le=100_000, description="Ready tasks per app and algorithm in Redis"
    )
    promote_batch_size: int = Field(default=200, ge=1, le=10_000)
    dispatch_batch_size: int = Field(default=50, ge=1, le=10_000)
    notification_grace_seconds: int = Field(default=30, ge=0)
    fast_path: bool = True
    max_message_bytes: int = Field(default=256 * 1024, ge=1024, le=1024 * 1024)
    max_input_depth: int = Field(default=32, ge=2, le=256)

    @field_validator("callback_base_url")
    @classmethod
    def _no_trailing_slash(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        if str(value).endswith("/") and value.path not in (None, "/"):
            raise ValueError("must not end with a slash")
        return value

    @field_validator("operator_principals")
    @classmethod
    def _principal_arns(cls, value: str | None) -> str | None:
        if value is None:
            return None
        for position, arn in enumerate(_comma_separated(value), start=1):
            if not re.fullmatch(PRINCIPAL_ARN_PATTERN, arn):
                # The position, not the value: an ARN names an account.
                raise ValueError(f"entry {position} is not an IAM or STS ARN")
        return value

    @property
    def operators(self) -> tuple[str, ...]:
        """``BATON_OPERATOR_PRINCIPALS`` as a list (empty: no operator)."""
        return _comma_separated(self.operator_principals or "")

    @model_validator(mode="after")
    def _one_source_each(self) -> Self:
        _exactly_one(self, "database_url", "database_secret_arn")
        _exactly_one(self, "token_secret", "token_secret_arn")
        _exactly_one(self, "algorithms", "algorithms_parameter")
        if self.apps is not None and self.apps_parameter is not None:
            raise ValueError("set at most one of BATON_APPS or BATON_APPS_PARAMETER")
        if self.signing_secret is not None and self.signing_secret_arn is not None:
            raise ValueError("set at most one of BATON_SIGNING_SECRET or BATON_SIGNING_SECRET_ARN")
        return self

    @property
    def callback_base(self) -> str:
        return str(self.callback_base_url).rstrip("/")


def _comma_separated(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _exactly_one(settings: Settings, first: str, second: str) -> None:
    given = [name for name in (first, second) if getattr(settings, name) is not None]
    if len(given) != 1:
        wanted = f"BATON_{first.upper()} or BATON_{second.upper()}"
        raise ValueError(f"set exactly one of {wanted}" if given else f"{wanted} is required")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``Settings`` from ``environ`` (default: the process environment)."""
    try:
        if environ is None:
            return Settings()
        return Settings.model_validate(
            {
                key.removeprefix("BATON_").lower(): value
                for key, value in environ.items()
                if key.startswith("BATON_") and value != ""
            }
        )
    except ValidationError as exc:
        raise SettingsError(describe_settings_error(exc)) from None


def describe_settings_error(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        name = f"BATON_{where.upper()}" if where else "settings"
        problems.append(f"{name}: {error['msg']}")
    return "invalid settings: " + "; ".join(problems)


@dataclass(frozen=True)
class Config:
    """Settings with secrets and the registries resolved: what the lifecycle runs on."""

    settings: Settings
    database_url: str
    redis_url: str
    token_keys: TokenKeyring
    registries: Registries
    signing_keys: SigningKeyring
    """Sign the dispatch requests (derived from the token keys unless set apart)."""

    @property
    def registry(self) -> AlgorithmRegistry:
        """The algorithm registry in force (re-read from SSM when due)."""
        return self.registries.algorithms

    @property
    def apps(self) -> AppRegistry | None:
        """The app registry in force; None: open mode."""
        return self.registries.apps


SecretFetcher = Callable[[str], str]


def resolve_config(
    settings: Settings,
    fetch_secret: SecretFetcher,
    fetch_parameter: SecretFetcher,
    *,
    clock: WallClock = utc_now,
    monotonic: Monotonic = time.monotonic,
) -> Config:
    """Fetch what the settings only point at (Secrets Manager, SSM) and validate it.

    ``fetch_parameter`` is kept for reading the SSM registries again when they are
    due; ``clock`` (wall time, for ``Taken.taken_at``) and ``monotonic`` (for the
    refresh period) are there for tests to move.
    """
    database_url = resolve_database_url(settings, fetch_secret)
    token_secret = (
        settings.token_secret.get_secret_value()
        if settings.token_secret is not None
        else fetch_secret(str(settings.token_secret_arn))
    )
    algorithms = _registry_source(
        "BATON_ALGORITHMS",
        parse_algorithm_registry,
        value=settings.algorithms,
        parameter=settings.algorithms_parameter,
        fetch_parameter=fetch_parameter,
        refresh_seconds=settings.policy_refresh_seconds,
        clock=clock,
        monotonic=monotonic,
    )
    assert algorithms is not None  # exactly one of the two is set (Settings checks)
    apps = _registry_source(
        "BATON_APPS",
        parse_app_registry,
        value=settings.apps,
        parameter=settings.apps_parameter,
        fetch_parameter=fetch_parameter,
        refresh_seconds=settings.policy_refresh_seconds,
        clock=clock,
        monotonic=monotonic,
    )
    token_keys = TokenKeyring.from_secret(token_secret)
    return Config(
        settings=settings,
        database_url=database_url,
        redis_url=settings.redis_url.get_secret_value(),
        token_keys=token_keys,
        registries=Registries(algorithms, apps),
        signing_keys=resolve_signing_keys(settings, token_keys, fetch_secret),
    )


def resolve_signing_keys(
    settings: Settings, token_keys: TokenKeyring, fetch_secret: SecretFetcher
) -> SigningKeyring:
    """``BATON_SIGNING_SECRET``, the secret behind ``BATON_SIGNING_SECRET_ARN``, or else
    the keys derived from the token keyring (``baton.signing``)."""
    if settings.signing_secret is not None:
        return SigningKeyring.from_secret(settings.signing_secret.get_secret_value())
    if settings.signing_secret_arn is not None:
        return SigningKeyring.from_secret(fetch_secret(settings.signing_secret_arn))
    return SigningKeyring.derived_from(token_keys)


def _registry_source(
    variable: str,
    parse: Callable[[str, str], R],
    *,
    value: SecretStr | None,
    parameter: str | None,
    fetch_parameter: SecretFetcher,
    refresh_seconds: int,
    clock: WallClock,
    monotonic: Monotonic,
) -> RegistrySource[R] | None:
    """The registry given inline as ``variable``, or behind ``<variable>_PARAMETER``."""
    if value is not None:
        return RegistrySource.fixed(variable, parse, value.get_secret_value(), clock)
    if parameter is None:
        return None
    return RegistrySource.fetched(
        f"{variable}_PARAMETER",
        parse,
        lambda: fetch_parameter(parameter),
        refresh_seconds=refresh_seconds,
        clock=clock,
        monotonic=monotonic,
    )


def resolve_database_url(settings: Settings, fetch_secret: SecretFetcher) -> str:
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    assert settings.database_secret_arn is not None
    return database_url_from_secret(fetch_secret(settings.database_secret_arn), settings)


def database_url_from_secret(secret_text: str, settings: Settings) -> str:
    """Build a SQLAlchemy URL from an RDS secret, filling gaps from the settings.

    RDS-managed master secrets hold only ``username`` and ``password``; host, port
    and database name then come from ``BATON_DATABASE_HOST/PORT/NAME``.
    """
    try:
        secret: dict[str, Any] = json.loads(secret_text)
    except ValueError:
        raise SettingsError("BATON_DATABASE_SECRET_ARN: the secret is not JSON") from None
    host = settings.database_host or secret.get("host")
    port = settings.database_port or secret.get("port") or 3306
    name = settings.database_name or secret.get("dbname") or "baton"
    if not host or "username" not in secret or "password" not in secret:
        raise SettingsError(
            "BATON_DATABASE_SECRET_ARN: the secret needs username and password, "
            "and host unless BATON_DATABASE_HOST is set"
        )
    url = URL.create(
        "mysql+pymysql",
        username=str(secret["username"]),
        password=str(secret["password"]),
        host=str(host),
        port=int(port),
        database=str(name),
        query={"charset": "utf8mb4"},
    )
    return url.render_as_string(hide_password=False)
