"""Baton's local profile: the backing services the generic emulator cannot run are
substituted, and the functions are told where they are. It reaches the emulator as a
plug-in (``baton_profile(...)`` passed to ``LocalCloud``), which is what keeps the
emulator a reader of any SAM template.

- ``AWS::ElastiCache::*`` -> an embedded Redis stand-in: fakeredis with Lua (lupa)
  served over TCP on loopback, so Baton's scripts run as they do on Redis; or a real
  server with ``redis_url``.
- ``AWS::RDS::DBInstance`` / ``DBCluster`` -> a SQLite file in the state directory
  (WAL); or a real server with ``database_url`` (a MySQL database is created if
  missing). The schema comes from the template's own schema custom resource.

A function whose environment carries Baton's settings (``BATON_REDIS_URL`` or any
``BATON_DATABASE_*``) then gets ``BATON_REDIS_URL`` / ``BATON_DATABASE_URL`` pointing
at them (and ``BATON_REDIS_CLUSTER=false``: the stand-in is a single node), and loses
``BATON_DATABASE_SECRET_ARN/HOST/PORT/NAME``. An ``--env-vars`` file still wins."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from fakeredis import TcpFakeServer
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from baton_local.emulator.aws import LocalAws, ensure_free_port, stable_secret_suffix
from baton_local.emulator.profiles import ProfileContext, ProfileFactory
from baton_local.emulator.stack import Created, Provider, Stack
from baton_local.emulator.template import ACCOUNT_ID

DATABASE_VARIABLES = (
    "BATON_DATABASE_URL",
    "BATON_DATABASE_SECRET_ARN",
    "BATON_DATABASE_HOST",
    "BATON_DATABASE_PORT",
    "BATON_DATABASE_NAME",
)
SQLITE_FILE = "baton.sqlite3"
PRELOAD = (
    "boto3",
    "botocore.session",
    "botocore.client",
    "sqlalchemy",
    "sqlalchemy.orm",
    "pydantic",
    "pydantic_settings",
    "redis",
    "urllib3",
    "pymysql",
)


class EmbeddedRedis:
    """fakeredis (with Lua) over TCP on a loopback port (0: a free one)."""

    def __init__(self, port: int = 0) -> None:
        if port:
            ensure_free_port(port, "Redis (embedded)")
        self._server = TcpFakeServer(("127.0.0.1", port), server_type="redis")
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="embedded-redis",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"redis://{host!s}:{port}/0"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _url_parts(url: str) -> tuple[str, int]:
    parsed = make_url(url)
    return parsed.host or "127.0.0.1", int(parsed.port or 0)


def baton_profile(
    redis_url: str | None = None, database_url: str | None = None, redis_port: int = 0
) -> ProfileFactory:
    """Baton's profile for ``LocalCloud``; ``redis_url`` / ``database_url`` replace the
    embedded Redis stand-in and SQLite; ``redis_port`` is the stand-in's (0: a free one)."""

    def make(context: ProfileContext) -> BatonLocalProfile:
        return BatonLocalProfile(
            context.aws,
            context.state_dir,
            redis_url,
            database_url,
            context.fresh,
            redis_port=redis_port,
        )

    return make


class BatonLocalProfile:
    def __init__(
        self,
        aws: LocalAws,
        state_dir: Path,
        redis_url: str | None = None,
        database_url: str | None = None,
        fresh: bool = True,
        *,
        redis_port: int = 0,
    ) -> None:
        self.aws = aws
        self.redis_port = redis_port
        self.state_dir = state_dir
        self.fresh = fresh
        self._redis_url = redis_url
        self._database_url = database_url
        self._redis_given = redis_url is not None
        self._database_given = database_url is not None
        self._database_ready = False
        self._embedded_redis: EmbeddedRedis | None = None
        self.redis_substituted = False
        self.database_substituted = False
        self._lock = threading.Lock()

    # -- the services -------------------------------------------------------------------------

    @property
    def redis_url(self) -> str:
        with self._lock:
            if self._redis_url is None:
                self._embedded_redis = EmbeddedRedis(self.redis_port)
                self._redis_url = self._embedded_redis.url
            return self._redis_url

    @property
    def database_url(self) -> str:
        with self._lock:
            if not self._database_ready:
                if self._database_url is None:
                    self._database_url = self._sqlite()
                else:
                    _create_mysql_database(self._database_url)
                self._database_ready = True
            assert self._database_url is not None
            return self._database_url

    def _sqlite(self) -> str:
        path = (self.state_dir / SQLITE_FILE).resolve()
        if self.fresh:
            for suffix in ("", "-wal", "-shm"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)
        connection = sqlite3.connect(path)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
        finally:
            connection.close()
        return f"sqlite:///{path}"

    def describe(self) -> list[str]:
        lines = []
        if self._redis_url is not None:
            kind = "embedded (fakeredis, Lua)" if self._embedded_redis else "given"
            lines.append(f"Redis     {self._redis_url}  [{kind}]")
        if self._database_url is not None:
            lines.append(f"Database  {self._database_url}")
        return lines

    def preload(self) -> list[str]:
        """Baton's heaviest imports (about half a cold start); Powertools is not among
        them, as it reads its settings from the environment when it is imported."""
        return list(PRELOAD)

    def endpoints(self) -> dict[str, str]:
        """Where an operator reaches the stand-ins (or the given servers)."""
        found = {}
        if self._redis_url is not None:
            found["redis"] = self._redis_url
        if self._database_url is not None:
            found["database"] = self._database_url
        return found

    def stop(self) -> None:
        if self._embedded_redis is not None:
            self._embedded_redis.stop()
            self._embedded_redis = None

    # -- the emulator's hooks -------------------------------------------------------------------

    def providers(self) -> dict[str, Provider]:
        return {
            "AWS::ElastiCache::*": _CacheProvider(self),
            "AWS::RDS::DBInstance": _DatabaseProvider(self),
            "AWS::RDS::DBCluster": _DatabaseProvider(self),
            "AWS::RDS::DBSubnetGroup": _Accompanying(),
            "AWS::RDS::DBParameterGroup": _Accompanying(),
            "AWS::RDS::DBClusterParameterGroup": _Accompanying(),
        }

    def environment(self, logical_id: str, variables: dict[str, str]) -> dict[str, str]:
        """Point a Baton function at the substituted (or given) Redis and database."""
        result = dict(variables)
        if "BATON_REDIS_URL" in result and (self.redis_substituted or self._redis_given):
            result["BATON_REDIS_URL"] = self.redis_url
            if "BATON_REDIS_CLUSTER" in result:  # the stand-in (or a given URL) is one node
                result["BATON_REDIS_CLUSTER"] = "false"
        if any(name in result for name in DATABASE_VARIABLES) and (
            self.database_substituted or self._database_given
        ):
            for name in DATABASE_VARIABLES:
                result.pop(name, None)
            result["BATON_DATABASE_URL"] = self.database_url
        return result


class _Accompanying:
    """Subnet and parameter groups of a substituted database: nothing to do."""

    def validate(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> None:
        """Always accepted."""

    def create(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> Created:
        stack.note(f"{logical_id} ({resource['Type']}): not needed by the local database")
        return Created(f"{logical_id.lower()}-local")


class _CacheProvider:
    def __init__(self, profile: BatonLocalProfile) -> None:
        self.profile = profile

    def validate(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> None:
        """Any cache is substituted."""

    def create(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> Created:
        if resource["Type"].endswith("SubnetGroup") or resource["Type"].endswith("ParameterGroup"):
            return Created(f"{logical_id.lower()}-local")
        url = self.profile.redis_url
        self.profile.redis_substituted = True
        host, port = _url_parts(url)
        stack.note(f"{logical_id} ({resource['Type']}): substituted by {url}")
        endpoint = {"Address": host, "Port": str(port)}
        arn = f"arn:aws:elasticache:{stack.template.region}:{ACCOUNT_ID}:serverlesscache:"
        attributes: dict[str, Any] = {"Arn": arn + logical_id.lower()}
        for prefix in (
            "Endpoint",
            "ReaderEndpoint",
            "RedisEndpoint",
            "ConfigurationEndpoint",
            "PrimaryEndPoint",
            "ReaderEndPoint",
            "ConfigurationEndPoint",
        ):
            for key, value in endpoint.items():
                attributes[f"{prefix}.{key}"] = value
        return Created(logical_id.lower(), attributes)


class _DatabaseProvider:
    def __init__(self, profile: BatonLocalProfile) -> None:
        self.profile = profile

    def validate(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> None:
        """Any MySQL-compatible database is substituted."""

    def create(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> Created:
        url = self.profile.database_url
        self.profile.database_substituted = True
        stack.note(f"{logical_id} ({resource['Type']}): substituted by {url}")
        if url.startswith("sqlite"):
            host, port = "localhost", 0
        else:
            host, port = _url_parts(url)
        secret = json.dumps({"engine": "baton-local", "database_url": url})
        client = self.profile.aws.secretsmanager
        name = stack.physical_name(f"{logical_id}MasterUser", 128)
        secret_arn = client.create_secret(
            Name=name,
            SecretString=secret,
            Tags=stable_secret_suffix(stack, f"{logical_id}MasterUser"),
        )["ARN"]
        region = stack.template.region
        return Created(
            logical_id.lower(),
            {
                "Endpoint.Address": host,
                "Endpoint.Port": str(port),
                "ReadEndpoint.Address": host,
                "MasterUserSecret.SecretArn": secret_arn,
                "DBInstanceArn": f"arn:aws:rds:{region}:{ACCOUNT_ID}:db:{logical_id.lower()}",
                "DBClusterArn": f"arn:aws:rds:{region}:{ACCOUNT_ID}:cluster:{logical_id.lower()}",
            },
            delete=lambda: client.delete_secret(
                SecretId=secret_arn, ForceDeleteWithoutRecovery=True
            ),
        )


def _create_mysql_database(url: str) -> None:
    """A given MySQL URL may name a database that does not exist yet: create it."""
    parsed = make_url(url)
    if parsed.get_backend_name() not in ("mysql", "mariadb") or not parsed.database:
        return
    server = parsed._replace(database=None)  # URL.set() keeps a field given None
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            name = parsed.database.replace("`", "``")
            connection.exec_driver_sql(
                f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4"
            )
    finally:
        engine.dispose()
