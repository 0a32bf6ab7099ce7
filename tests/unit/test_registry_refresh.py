"""The registries in force: the app registry's settings (optional, one source at
most), and how both registries follow their SSM parameter in a warm function: a change
is taken once the copy in force is older than BATON_POLICY_REFRESH_SECONDS, an invalid
change is kept out (logged naming the source, counted), and a cold start with an
invalid registry fails naming it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from baton.errors import SettingsError
from baton.observability import metrics
from baton.registries import RegistrySource
from baton.settings import Config, load_settings, resolve_config

from tests.support.logs import captured_log_lines

TOKEN_SECRET = "unit-test-token-secret-0123456789abcdef"
OCR = {"endpoint": "https://ocr.example.com/run", "max_concurrency": 4}
ALGORITHMS = {"ocr": OCR}
APPS = {"portal": {"senders": ["AROAEXAMPLEPORTALID"], "principals": []}}
ALGORITHMS_PARAMETER = "/baton/test/algorithms"
APPS_PARAMETER = "/baton/test/apps"
# Looks like what must never reach a log: the registries are opaque settings.
MARKER = "sk_live_value_that_must_not_be_logged_0123456789"


def base_env(**changes: str | None) -> dict[str, str]:
    environ = {
        "BATON_DATABASE_URL": "sqlite://",
        "BATON_REDIS_URL": "redis://127.0.0.1:6379/0",
        "BATON_RESULT_BUCKET": "results-bucket",
        "BATON_NOTIFICATION_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:baton",
        "BATON_CALLBACK_BASE_URL": "https://api.example.com/prod",
        "BATON_TOKEN_SECRET": TOKEN_SECRET,
        "BATON_ALGORITHMS": json.dumps(ALGORITHMS),
    }
    for name, value in changes.items():
        key = f"BATON_{name.upper()}"
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    return environ


class Parameters:
    """A fake SSM: parameter name -> text, and a count of the reads."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.reads: list[str] = []
        self.failing: set[str] = set()

    def set(self, name: str, value: Any) -> None:
        self.values[name] = value if isinstance(value, str) else json.dumps(value)

    def __call__(self, name: str) -> str:
        self.reads.append(name)
        if name in self.failing:
            raise SettingsError(f"SSM parameter {name!r} could not be read: AccessDenied")
        return self.values[name]


class Clocks:
    """Wall and monotonic time that a test moves together (or apart)."""

    def __init__(self) -> None:
        self.seconds = 1000.0
        self.wall = datetime(2030, 1, 1, tzinfo=UTC)

    def monotonic(self) -> float:
        return self.seconds

    def now(self) -> datetime:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.seconds += seconds
        self.wall += timedelta(seconds=seconds)


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def parameters() -> Parameters:
    found = Parameters()
    found.set(ALGORITHMS_PARAMETER, ALGORITHMS)
    found.set(APPS_PARAMETER, APPS)
    return found


def _rejected_count() -> float:
    entry = metrics.metric_set.get("RegistryRejected")
    return float(sum(entry["Value"])) if entry else 0.0


@pytest.fixture
def rejected() -> Iterator[Callable[[], float]]:
    """How many RegistryRejected were counted since the test began."""
    metrics.clear_metrics()
    yield _rejected_count
    metrics.clear_metrics()


def resolve(
    environ: dict[str, str], parameters: Parameters | None = None, clocks: Clocks | None = None
) -> Config:
    clocks = clocks or Clocks()

    def no_secrets(name: str) -> str:
        raise AssertionError(f"no secret should be fetched, asked for {name}")

    return resolve_config(
        load_settings(environ),
        no_secrets,
        parameters or Parameters(),
        clock=clocks.now,
        monotonic=clocks.monotonic,
    )


def from_parameters(parameters: Parameters, clocks: Clocks, **changes: str | None) -> Config:
    environ = base_env(
        algorithms=None,
        algorithms_parameter=ALGORITHMS_PARAMETER,
        apps_parameter=APPS_PARAMETER,
        **changes,
    )
    return resolve(environ, parameters, clocks)


def settings_error(environ: dict[str, str], parameters: Parameters | None = None) -> str:
    with pytest.raises(SettingsError) as caught:
        resolve(environ, parameters)
    return str(caught.value)


# -- the app registry's settings ---------------------------------------------------------


def test_without_an_app_registry_baton_runs_open() -> None:
    config = resolve(base_env())
    assert config.apps is None
    assert config.registries.apps_taken() is None


def test_an_inline_app_registry_is_read_and_validated() -> None:
    config = resolve(base_env(apps=json.dumps(APPS)))
    assert config.apps is not None
    assert config.apps.names() == ["portal"]


def test_an_app_registry_from_a_parameter_is_fetched() -> None:
    parameters = Parameters()
    parameters.set(APPS_PARAMETER, APPS)
    config = resolve(base_env(apps_parameter=APPS_PARAMETER), parameters)
    assert parameters.reads == [APPS_PARAMETER]
    assert config.apps is not None
    assert "portal" in config.apps


def test_a_registry_that_is_set_but_empty_registers_no_app() -> None:
    config = resolve(base_env(apps="{}"))
    assert config.apps is not None
    assert config.apps.names() == []


def test_an_empty_variable_counts_as_unset() -> None:
    # The template declares BATON_APPS_PARAMETER "" when the stack has no app registry.
    assert resolve(base_env(apps="", apps_parameter="")).apps is None


def test_both_app_registry_sources_is_an_error_naming_both() -> None:
    message = settings_error(base_env(apps=json.dumps(APPS), apps_parameter=APPS_PARAMETER))
    assert "BATON_APPS" in message
    assert "BATON_APPS_PARAMETER" in message
    assert "at most one" in message


@pytest.mark.parametrize("text", ["{not json", "[]", json.dumps({"portal": {"senders": []}})])
def test_an_invalid_inline_app_registry_names_baton_apps(text: str) -> None:
    message = settings_error(base_env(apps=text))
    assert message.startswith("BATON_APPS: invalid app registry: ")


def test_an_invalid_app_registry_parameter_names_the_parameter_variable() -> None:
    parameters = Parameters()
    parameters.set(APPS_PARAMETER, {"portal": {"senders": [], "principals": [], "weight": 0}})
    message = settings_error(base_env(apps_parameter=APPS_PARAMETER), parameters)
    assert message.startswith("BATON_APPS_PARAMETER: invalid app registry: ")
    assert "portal.weight" in message


def test_an_app_registry_error_never_shows_the_value() -> None:
    text = json.dumps({"portal": {"senders": [MARKER + " x"], "principals": [], "x": MARKER}})
    message = settings_error(base_env(apps=text))
    assert MARKER not in message
    assert MARKER not in repr(load_settings(base_env(apps=text)))


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_the_refresh_period_is_at_least_a_second(value: str) -> None:
    with pytest.raises(SettingsError, match="BATON_POLICY_REFRESH_SECONDS"):
        load_settings(base_env(policy_refresh_seconds=value))


def test_the_refresh_period_defaults_to_a_minute() -> None:
    assert load_settings(base_env()).policy_refresh_seconds == 60


# -- refresh ---------------------------------------------------------------------------------


def test_a_change_is_taken_once_the_copy_is_older_than_the_period(
    parameters: Parameters, clocks: Clocks
) -> None:
    # Given both registries behind parameters, read at cold start
    config = from_parameters(parameters, clocks, policy_refresh_seconds="60")
    cold_start = clocks.now()
    assert config.registries.algorithms_taken().taken_at == cold_start
    assert parameters.reads == [ALGORITHMS_PARAMETER, APPS_PARAMETER]

    # When both change, within the period nothing is read again
    parameters.set(ALGORITHMS_PARAMETER, {"ocr": OCR, "nlp": OCR})
    parameters.set(APPS_PARAMETER, {**APPS, "bulk": {"senders": [], "principals": []}})
    clocks.advance(59)
    assert config.registry.names() == ["ocr"]
    assert config.apps is not None
    assert config.apps.names() == ["portal"]
    assert len(parameters.reads) == 2

    # Then once the period has passed, the next access takes the new content
    clocks.advance(1)
    assert config.registry.names() == ["nlp", "ocr"]
    assert config.apps is not None
    assert config.apps.names() == ["bulk", "portal"]
    algorithms = config.registries.algorithms_taken()
    apps = config.registries.apps_taken()
    assert apps is not None
    assert algorithms.taken_at == apps.taken_at == cold_start + timedelta(seconds=60)
    assert (algorithms.source, apps.source) == (
        "BATON_ALGORITHMS_PARAMETER",
        "BATON_APPS_PARAMETER",
    )
    # ...read once each, however often the registries are looked at
    for _ in range(5):
        assert config.registry.names() == ["nlp", "ocr"]
    assert len(parameters.reads) == 4


def test_an_unchanged_parameter_renews_taken_at(parameters: Parameters, clocks: Clocks) -> None:
    config = from_parameters(parameters, clocks)
    before = config.registries.algorithms
    clocks.advance(61)
    assert config.registries.algorithms is before
    assert config.registries.algorithms_taken().taken_at == clocks.now()


def test_an_invalid_change_is_kept_out_logged_and_counted(
    parameters: Parameters, clocks: Clocks, rejected: Callable[[], float]
) -> None:
    # Given registries in force
    config = from_parameters(parameters, clocks)
    in_force = config.registries.apps_taken()
    assert in_force is not None

    # When the app registry's parameter becomes invalid (with a value that looks secret)
    parameters.set(APPS_PARAMETER, {"portal": {"senders": [], "principals": [], "x": MARKER}})
    clocks.advance(60)
    with captured_log_lines() as logs:
        apps = config.apps

    # Then the old one stays in force, taken when it was
    assert apps is in_force.value
    assert config.registries.apps_taken() == in_force
    assert rejected() == 1
    (line,) = logs.with_message("registry not taken: the one in force stays")
    assert line["level"] == "ERROR"
    assert line["source"] == "BATON_APPS_PARAMETER"
    assert line["reason"].startswith("BATON_APPS_PARAMETER: invalid app registry: portal.x")
    assert MARKER not in logs.text
    # ...and the algorithm registry, which did not change, is unaffected
    assert config.registry.names() == ["ocr"]

    # When it stays invalid, it is tried (and counted) once per period, not per access
    clocks.advance(30)
    assert config.apps is in_force.value
    assert rejected() == 1
    clocks.advance(30)
    assert config.apps is in_force.value
    assert rejected() == 2

    # When it is fixed, the fix is taken
    parameters.set(APPS_PARAMETER, {**APPS, "bulk": {"senders": [], "principals": []}})
    clocks.advance(60)
    assert config.apps is not None
    assert config.apps.names() == ["bulk", "portal"]


def test_an_invalid_algorithm_registry_change_is_kept_out(
    parameters: Parameters, clocks: Clocks, rejected: Callable[[], float]
) -> None:
    config = from_parameters(parameters, clocks)
    parameters.set(ALGORITHMS_PARAMETER, "{}")  # no algorithm: invalid
    clocks.advance(60)
    with captured_log_lines() as logs:
        assert config.registry.names() == ["ocr"]
    (line,) = logs.with_message("registry not taken: the one in force stays")
    assert line["source"] == "BATON_ALGORITHMS_PARAMETER"
    assert rejected() == 1


def test_a_parameter_that_cannot_be_read_keeps_the_copy_in_force(
    parameters: Parameters, clocks: Clocks, rejected: Callable[[], float]
) -> None:
    config = from_parameters(parameters, clocks)
    parameters.failing.add(ALGORITHMS_PARAMETER)
    clocks.advance(60)
    with captured_log_lines() as logs:
        assert config.registry.names() == ["ocr"]
    (line,) = logs.with_message("registry not taken: the one in force stays")
    assert line["reason"].startswith("BATON_ALGORITHMS_PARAMETER: SSM parameter")
    assert rejected() == 1


def test_registries_from_the_environment_are_never_read_again(clocks: Clocks) -> None:
    parameters = Parameters()
    config = resolve(base_env(apps=json.dumps(APPS)), parameters, clocks)
    cold_start = clocks.now()
    clocks.advance(3600)
    assert config.registry.names() == ["ocr"]
    assert config.apps is not None
    assert config.registries.algorithms_taken().taken_at == cold_start
    apps = config.registries.apps_taken()
    assert apps is not None
    assert apps.taken_at == cold_start
    assert apps.source == "BATON_APPS"
    assert parameters.reads == []
    assert not config.registries.algorithm_source.refreshes


def test_taken_at_never_goes_back_when_the_wall_clock_does(
    parameters: Parameters, clocks: Clocks
) -> None:
    config = from_parameters(parameters, clocks)
    cold_start = clocks.now()
    clocks.seconds += 60
    clocks.wall -= timedelta(hours=1)  # a step back of the wall clock (NTP)
    parameters.set(ALGORITHMS_PARAMETER, {"ocr": OCR, "nlp": OCR})
    assert config.registry.names() == ["nlp", "ocr"]
    assert config.registries.algorithms_taken().taken_at == cold_start


@pytest.mark.parametrize(
    ("parameter", "variable", "text"),
    [
        (ALGORITHMS_PARAMETER, "BATON_ALGORITHMS_PARAMETER", "{}"),
        (APPS_PARAMETER, "BATON_APPS_PARAMETER", '{"portal": {}}'),
        (APPS_PARAMETER, "BATON_APPS_PARAMETER", "not json"),
    ],
)
def test_a_cold_start_with_an_invalid_registry_fails_naming_it(
    parameters: Parameters, clocks: Clocks, parameter: str, variable: str, text: str
) -> None:
    parameters.set(parameter, text)
    with pytest.raises(SettingsError) as caught:
        from_parameters(parameters, clocks)
    assert str(caught.value).startswith(f"{variable}: invalid ")


def test_a_cold_start_with_an_unreadable_parameter_fails_naming_it(
    parameters: Parameters, clocks: Clocks
) -> None:
    parameters.failing.add(APPS_PARAMETER)
    with pytest.raises(SettingsError) as caught:
        from_parameters(parameters, clocks)
    assert str(caught.value).startswith("BATON_APPS_PARAMETER: SSM parameter")


def test_a_source_can_be_driven_directly(clocks: Clocks) -> None:
    # The holder works for any registry: a parser and a fetch are all it needs.
    texts = iter(["1", "2", "x", "3"])

    def parse(text: str, source: str) -> int:
        if not text.isdigit():
            raise SettingsError(f"{source}: not a number")
        return int(text)

    source = RegistrySource.fetched(
        "BATON_NUMBER",
        parse,
        lambda: next(texts),
        refresh_seconds=10,
        clock=clocks.now,
        monotonic=clocks.monotonic,
    )
    seen = []
    for _ in range(4):
        seen.append(source.current().value)
        clocks.advance(10)
    assert seen == [1, 2, 2, 3]
