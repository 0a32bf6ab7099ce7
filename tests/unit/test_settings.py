"""Settings: a missing or invalid setting fails the cold start with a SettingsError
naming the variable, and never with the secret value in the message."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from baton.errors import SettingsError
from baton.registry import AlgorithmRegistry
from baton.settings import Config, Settings, load_settings, resolve_config
from baton.tokens import TokenKeyring
from sqlalchemy.engine import make_url

TOKEN_SECRET = "unit-test-token-secret-0123456789abcdef"
OCR = {"endpoint": "https://ocr.example.com/run", "max_concurrency": 4}
REGISTRY = {"ocr": OCR, "nlp": {**OCR, "endpoint": "http://nlp.internal:8080/jobs"}}
DB_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:baton-db-AbCdEf"
TOKEN_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:baton-token-AbCdEf"
PARAMETER = "/baton/algorithms"
SECRET_PASSWORD = "Sup3r-Secret/p@ss:w0rd#42!"


def base_env(**changes: str | None) -> dict[str, str]:
    """A complete, valid environment; ``NAME=None`` removes ``BATON_NAME``."""
    environ = {
        "BATON_DATABASE_URL": "sqlite://",
        "BATON_REDIS_URL": "redis://127.0.0.1:6379/0",
        "BATON_RESULT_BUCKET": "results-bucket",
        "BATON_NOTIFICATION_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:baton",
        "BATON_CALLBACK_BASE_URL": "https://api.example.com/prod",
        "BATON_TOKEN_SECRET": TOKEN_SECRET,
        "BATON_ALGORITHMS": json.dumps(REGISTRY),
    }
    for name, value in changes.items():
        key = f"BATON_{name.upper()}"
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    return environ


class Fetcher:
    """A fake Secrets Manager / SSM lookup that records what it was asked for."""

    def __init__(self, values: dict[str, str] | None = None) -> None:
        self.values = values or {}
        self.asked: list[str] = []

    def __call__(self, name: str) -> str:
        self.asked.append(name)
        return self.values[name]


def resolve(
    environ: dict[str, str], secrets: Fetcher | None = None, params: Fetcher | None = None
) -> Config:
    return resolve_config(load_settings(environ), secrets or Fetcher(), params or Fetcher())


def settings_error(call: Callable[[], Any]) -> str:
    with pytest.raises(SettingsError) as caught:
        call()
    return str(caught.value)


# -- the happy path ------------------------------------------------------------------------


def test_complete_environment_loads_with_defaults() -> None:
    settings = load_settings(base_env())
    assert isinstance(settings, Settings)
    assert settings.result_bucket == "results-bucket"
    assert settings.callback_base == "https://api.example.com/prod"
    assert settings.key_prefix == "baton"
    assert settings.max_message_bytes == 256 * 1024


def test_variables_without_the_prefix_are_ignored() -> None:
    environ = base_env() | {"RESULT_BUCKET": "other", "PATH": "/usr/bin"}
    assert load_settings(environ).result_bucket == "results-bucket"


def test_resolve_config_with_inline_values_fetches_nothing() -> None:
    secrets, params = Fetcher(), Fetcher()
    config = resolve(base_env(), secrets, params)
    assert config.database_url == "sqlite://"
    assert config.redis_url == "redis://127.0.0.1:6379/0"
    assert config.registry.names() == ["nlp", "ocr"]
    assert config.registry["ocr"].timeout_limit_seconds == 900
    assert config.token_keys.keys[config.token_keys.current] == TOKEN_SECRET.encode()
    assert secrets.asked == params.asked == []


def test_settings_repr_does_not_show_secrets() -> None:
    environ = base_env(database_url=f"mysql+pymysql://baton:{SECRET_PASSWORD}@db:3306/baton")
    settings = load_settings(environ)
    assert SECRET_PASSWORD not in repr(settings)
    assert TOKEN_SECRET not in repr(settings)


# -- missing and invalid variables ---------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["REDIS_URL", "RESULT_BUCKET", "NOTIFICATION_TOPIC_ARN", "CALLBACK_BASE_URL"]
)
def test_missing_required_variable_is_named(name: str) -> None:
    message = settings_error(lambda: load_settings(base_env(**{name: None})))
    assert f"BATON_{name}" in message


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("DATABASE_URL", "DATABASE_SECRET_ARN"),
        ("TOKEN_SECRET", "TOKEN_SECRET_ARN"),
        ("ALGORITHMS", "ALGORITHMS_PARAMETER"),
    ],
)
def test_neither_of_a_pair_is_an_error_naming_both(first: str, second: str) -> None:
    message = settings_error(lambda: load_settings(base_env(**{first: None, second: None})))
    assert f"BATON_{first}" in message
    assert f"BATON_{second}" in message
    assert "required" in message


@pytest.mark.parametrize(
    ("first", "second", "value"),
    [
        ("DATABASE_URL", "DATABASE_SECRET_ARN", DB_SECRET_ARN),
        ("TOKEN_SECRET", "TOKEN_SECRET_ARN", TOKEN_SECRET_ARN),
        ("ALGORITHMS", "ALGORITHMS_PARAMETER", PARAMETER),
    ],
)
def test_both_of_a_pair_is_an_error_naming_both(first: str, second: str, value: str) -> None:
    message = settings_error(lambda: load_settings(base_env(**{second: value})))
    assert f"BATON_{first}" in message
    assert f"BATON_{second}" in message
    assert "exactly one" in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NOTIFICATION_TOPIC_ARN", "baton-topic"),
        ("NOTIFICATION_TOPIC_ARN", "arn:aws:sqs:eu-west-1:123456789012:baton"),
        ("CALLBACK_BASE_URL", "not a url"),
        ("CALLBACK_BASE_URL", "https://api.example.com/prod/"),
        ("CALLBACK_BASE_URL", "ftp://api.example.com/prod"),
        ("RESULT_BUCKET", "ab"),
        ("DATABASE_PORT", "three thousand"),
        ("DATABASE_PORT", "70000"),
        ("KEY_PREFIX", "has space"),
        ("DISPATCH_TIMEOUT_SECONDS", "0"),
        ("MAX_MESSAGE_BYTES", "10"),
        ("MAX_INPUT_DEPTH", "1"),
        ("UPLOAD_URL_TTL_SECONDS", str(8 * 24 * 3600)),
    ],
)
def test_invalid_value_is_named(name: str, value: str) -> None:
    message = settings_error(lambda: load_settings(base_env(**{name: value})))
    assert f"BATON_{name}" in message


def test_every_problem_is_reported_at_once() -> None:
    message = settings_error(
        lambda: load_settings(base_env(redis_url=None, result_bucket=None, key_prefix="a b"))
    )
    for name in ("BATON_REDIS_URL", "BATON_RESULT_BUCKET", "BATON_KEY_PREFIX"):
        assert name in message


def test_callback_base_url_at_the_root_is_accepted() -> None:
    settings = load_settings(base_env(callback_base_url="https://api.example.com/"))
    assert settings.callback_base == "https://api.example.com"


def test_error_message_never_contains_a_secret_value() -> None:
    # Given secrets in the environment and an unrelated invalid setting
    environ = base_env(
        database_url=f"mysql+pymysql://baton:{SECRET_PASSWORD}@db:3306/baton",
        redis_url=f"rediss://:{SECRET_PASSWORD}@cache:6379/0",
        token_secret_arn=TOKEN_SECRET_ARN,  # makes the token pair invalid too
        result_bucket="x",
    )
    message = settings_error(lambda: load_settings(environ))
    assert "BATON_RESULT_BUCKET" in message
    assert SECRET_PASSWORD not in message
    assert TOKEN_SECRET not in message


# -- the algorithm registry ------------------------------------------------------------------


@pytest.mark.parametrize(
    "registry",
    [
        pytest.param("{not json", id="not-json"),
        pytest.param("[]", id="list"),
        pytest.param("null", id="null"),
        pytest.param("{}", id="no-algorithms"),
        pytest.param(json.dumps({"ocr": {**OCR, "max_concurrency": 0}}), id="concurrency-0"),
        pytest.param(json.dumps({"ocr": {**OCR, "max_concurrency": -1}}), id="concurrency-neg"),
        pytest.param(json.dumps({"ocr": {"endpoint": OCR["endpoint"]}}), id="no-concurrency"),
        pytest.param(json.dumps({"ocr": {**OCR, "endpoint": "not a url"}}), id="endpoint-text"),
        pytest.param(json.dumps({"ocr": {**OCR, "endpoint": "ftp://x.example"}}), id="ftp"),
        pytest.param(json.dumps({"ocr": {"max_concurrency": 2}}), id="no-endpoint"),
        pytest.param(json.dumps({"ocr": {**OCR, "colour": "red"}}), id="unknown-field"),
        pytest.param(
            json.dumps({"ocr": {**OCR, "timeout_seconds": 600, "max_timeout_seconds": 300}}),
            id="max-timeout-below-timeout",
        ),
        pytest.param(json.dumps({"ocr": {**OCR, "timeout_seconds": 0}}), id="timeout-0"),
        pytest.param(json.dumps({"ocr": {**OCR, "max_attempts": 0}}), id="attempts-0"),
        pytest.param(json.dumps({"ocr": {**OCR, "max_attempts": 101}}), id="attempts-101"),
        pytest.param(json.dumps({"my ocr": OCR}), id="name-with-space"),
        pytest.param(json.dumps({"o" * 65: OCR}), id="name-65-chars"),
        pytest.param(json.dumps({"ocr": "https://ocr.example.com"}), id="entry-not-object"),
    ],
)
def test_invalid_registry_is_named(registry: str) -> None:
    environ = base_env(algorithms=registry)
    message = settings_error(lambda: resolve(environ))
    assert message.startswith("BATON_ALGORITHMS:")
    assert "algorithm registry" in message


def test_empty_inline_registry_counts_as_missing() -> None:
    # An empty variable is unset (sam local leaves "" for what it cannot resolve)
    message = settings_error(lambda: resolve(base_env(algorithms="")))
    assert "BATON_ALGORITHMS or BATON_ALGORITHMS_PARAMETER is required" in message


def test_blank_inline_registry_is_blamed_on_the_inline_variable() -> None:
    message = settings_error(lambda: resolve(base_env(algorithms=" ")))
    assert message.startswith("BATON_ALGORITHMS:")


def test_registry_from_a_parameter_is_fetched_and_validated() -> None:
    params = Fetcher({PARAMETER: json.dumps({"ocr": OCR})})
    config = resolve(base_env(algorithms=None, algorithms_parameter=PARAMETER), params=params)
    assert params.asked == [PARAMETER]
    assert config.registry.names() == ["ocr"]


def test_invalid_registry_from_a_parameter_names_the_parameter_variable() -> None:
    params = Fetcher({PARAMETER: json.dumps({"ocr": {**OCR, "max_concurrency": 0}})})
    environ = base_env(algorithms=None, algorithms_parameter=PARAMETER)
    message = settings_error(lambda: resolve(environ, params=params))
    assert message.startswith("BATON_ALGORITHMS_PARAMETER:")


def test_registry_error_does_not_echo_endpoint_credentials() -> None:
    entry = {**OCR, "endpoint": f"https://svc:{SECRET_PASSWORD}@ocr.example.com", "x": 1}
    message = settings_error(lambda: resolve(base_env(algorithms=json.dumps({"ocr": entry}))))
    assert SECRET_PASSWORD not in message


def test_registry_defaults_and_timeout_limit() -> None:
    registry = AlgorithmRegistry.from_json(
        json.dumps({"ocr": OCR, "llm": {**OCR, "timeout_seconds": 60, "max_timeout_seconds": 600}})
    )
    assert registry["ocr"].timeout_seconds == 900
    assert registry["ocr"].max_attempts == 3
    assert registry["ocr"].timeout_limit_seconds == 900
    assert registry["llm"].timeout_limit_seconds == 600
    assert "ocr" in registry
    assert "OCR" not in registry


# -- the database secret ---------------------------------------------------------------------


def db_env(**changes: str | None) -> dict[str, str]:
    return base_env(database_url=None, database_secret_arn=DB_SECRET_ARN, **changes)


def test_full_rds_secret_builds_a_mysql_url() -> None:
    secret = {
        "username": "baton",
        "password": "pw",
        "host": "db.cluster.eu-west-1.rds.amazonaws.com",
        "port": 3307,
        "dbname": "jobs",
        "engine": "mysql",
    }
    secrets = Fetcher({DB_SECRET_ARN: json.dumps(secret)})
    config = resolve(db_env(), secrets)
    assert secrets.asked == [DB_SECRET_ARN]
    url = make_url(config.database_url)
    assert url.drivername == "mysql+pymysql"
    assert (url.username, url.password) == ("baton", "pw")
    assert (url.host, url.port, url.database) == (secret["host"], 3307, "jobs")


@pytest.mark.parametrize(
    "password",
    [
        SECRET_PASSWORD,
        "p@ss/w:rd",
        "a+b%20c",
        "?#&=;,[]",
        "ünïcødé-€",
        "with space",
    ],
)
def test_master_secret_with_settings_builds_a_url_with_the_password_quoted(password: str) -> None:
    # Given an RDS-managed master secret: username and password only
    secrets = Fetcher({DB_SECRET_ARN: json.dumps({"username": "admin", "password": password})})
    # And host, port and name from the settings
    environ = db_env(database_host="db.example.com", database_port="3310", database_name="baton")
    # When the config is resolved
    config = resolve(environ, secrets)
    # Then the URL points at that database, with the password surviving the round trip
    assert config.database_url.startswith("mysql+pymysql://admin:")
    url = make_url(config.database_url)
    assert (url.host, url.port, url.database) == ("db.example.com", 3310, "baton")
    assert url.username == "admin"
    assert url.password == password


def test_master_secret_defaults_port_and_database_name() -> None:
    secrets = Fetcher({DB_SECRET_ARN: json.dumps({"username": "admin", "password": "pw"})})
    url = make_url(resolve(db_env(database_host="db.example.com"), secrets).database_url)
    assert (url.port, url.database) == (3306, "baton")


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param({"username": "admin", "password": SECRET_PASSWORD}, id="no-host"),
        pytest.param({"password": SECRET_PASSWORD, "host": "db"}, id="no-username"),
        pytest.param({"username": "admin", "host": "db"}, id="no-password"),
    ],
)
def test_incomplete_database_secret_is_named_without_its_value(secret: dict[str, str]) -> None:
    secrets = Fetcher({DB_SECRET_ARN: json.dumps(secret)})
    message = settings_error(lambda: resolve(db_env(), secrets))
    assert "BATON_DATABASE_SECRET_ARN" in message
    assert SECRET_PASSWORD not in message


def test_database_secret_that_is_not_json_is_named_without_its_value() -> None:
    secrets = Fetcher({DB_SECRET_ARN: f"password={SECRET_PASSWORD}"})
    message = settings_error(lambda: resolve(db_env(), secrets))
    assert "BATON_DATABASE_SECRET_ARN" in message
    assert SECRET_PASSWORD not in message


# -- the token keyring ---------------------------------------------------------------------


def test_token_secret_from_an_arn_is_fetched() -> None:
    secrets = Fetcher({TOKEN_SECRET_ARN: TOKEN_SECRET})
    config = resolve(base_env(token_secret=None, token_secret_arn=TOKEN_SECRET_ARN), secrets)
    assert secrets.asked == [TOKEN_SECRET_ARN]
    assert list(config.token_keys.keys.values()) == [TOKEN_SECRET.encode()]


def test_plain_string_secret_is_one_key_that_is_current() -> None:
    keyring = TokenKeyring.from_secret(f"  {TOKEN_SECRET}\n")
    assert list(keyring.keys) == [keyring.current]
    assert keyring.keys[keyring.current] == TOKEN_SECRET.encode()
    # the key id is derived, stable, and does not reveal the key
    assert TokenKeyring.from_secret(TOKEN_SECRET).current == keyring.current
    assert keyring.current not in TOKEN_SECRET


def test_keyring_json_holds_every_key_and_the_current_one() -> None:
    keyring = TokenKeyring.from_secret(
        json.dumps({"current": "k2", "keys": {"k1": "a" * 32, "k2": "b" * 40}})
    )
    assert keyring.current == "k2"
    assert keyring.keys == {"k1": b"a" * 32, "k2": b"b" * 40}


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("s" * 31, id="plain-31-chars"),
        pytest.param("   " + "s" * 31 + "   ", id="plain-31-after-strip"),
        pytest.param(json.dumps({"current": "k9", "keys": {"k1": "a" * 40}}), id="current-unknown"),
        pytest.param(json.dumps({"current": "k1", "keys": {}}), id="no-keys"),
        pytest.param(
            json.dumps({"current": "k1", "keys": {"k1": "a" * 40, "k0": "short-old-key"}}),
            id="old-key-short",
        ),
        pytest.param(json.dumps({"current": "k1", "keys": {"k1": "s" * 31}}), id="current-short"),
        pytest.param(json.dumps({"keys": {"k1": "a" * 40}}), id="no-current"),
        pytest.param(json.dumps({"current": "k1"}), id="no-keys-field"),
        pytest.param(json.dumps({"current": "k1", "keys": ["a" * 40]}), id="keys-list"),
        pytest.param('{"current": "k1", "keys": {"k1": "' + "a" * 40, id="truncated-json"),
        pytest.param("{}", id="empty-object"),
    ],
)
def test_bad_token_secret_is_a_settings_error(secret: str) -> None:
    with pytest.raises(SettingsError, match="token secret"):
        TokenKeyring.from_secret(secret)


@pytest.mark.parametrize(
    "secret",
    [
        "tooshort-SECRETVALUE",
        json.dumps({"current": "k1", "keys": {"k1": "tooshort-SECRETVALUE"}}),
        json.dumps({"current": "k2", "keys": {"k1": "tooshort-SECRETVALUE" * 3}}),
        '{"current": "k1", "keys": {"k1": "tooshort-SECRETVALUE',
    ],
)
def test_token_secret_error_never_contains_the_secret(secret: str) -> None:
    message = settings_error(lambda: TokenKeyring.from_secret(secret))
    assert "SECRETVALUE" not in message
    assert "tooshort" not in message


def test_short_token_secret_fails_resolve_config() -> None:
    message = settings_error(lambda: resolve(base_env(token_secret="short-SECRETVALUE")))
    assert "SECRETVALUE" not in message


def test_key_id_with_a_dot_is_refused_or_works() -> None:
    from datetime import UTC, datetime, timedelta

    from baton.tokens import issue_token, verify_token

    secret = json.dumps({"current": "2024.06", "keys": {"2024.06": "k" * 40}})
    try:
        keyring = TokenKeyring.from_secret(secret)
    except SettingsError:
        return  # refused at cold start: fine
    now = datetime(2030, 1, 1, tzinfo=UTC)
    token = issue_token(keyring, "task", 1, now + timedelta(hours=1))
    verify_token(keyring, token, "task", 1, now)


def test_the_intake_queue_urls_are_optional_and_checked_when_given() -> None:
    settings = load_settings(base_env())
    assert (settings.intake_queue_url, settings.intake_dlq_url) == (None, None)
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/baton-intake-dlq"
    assert load_settings(base_env(intake_dlq_url=url)).intake_dlq_url == url
    with pytest.raises(SettingsError, match="BATON_INTAKE_DLQ_URL"):
        load_settings(base_env(intake_dlq_url="baton-intake-dlq"))
