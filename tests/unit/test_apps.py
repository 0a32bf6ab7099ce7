"""The app registry: its shape (strict, unknown keys refused), the per-algorithm caps,
and how an SQS sender and a status API caller are matched against an app."""

from __future__ import annotations

import json
from typing import Any

import pytest
from baton.apps import (
    AppConfig,
    AppRegistry,
    parse_app_registry,
    principal_matches,
    sender_matches,
)
from baton.contracts import MAX_PRIORITY
from baton.errors import InvalidTaskMessage, SettingsError
from baton.intake import enforce_app_registry
from pydantic import ValidationError

PORTAL_ROLE = "arn:aws:iam::123456789012:role/review-portal"
REGISTRY: dict[str, Any] = {
    "review-portal": {
        "senders": ["AROAEXAMPLEPORTALID"],
        "principals": [PORTAL_ROLE],
        "weight": 4,
        "max_priority": 100,
    },
    "bulk-import": {
        "senders": ["AROAEXAMPLEBULKID"],
        "principals": [],
        "weight": 1,
        "max_in_flight": {"ocr": 2, "*": 10},
    },
}


def app(**changes: Any) -> AppConfig:
    return AppConfig.model_validate({"senders": [], "principals": []} | changes)


def registry_error(document: Any, source: str = "BATON_APPS") -> str:
    text = document if isinstance(document, str) else json.dumps(document)
    with pytest.raises(SettingsError) as caught:
        parse_app_registry(text, source)
    return str(caught.value)


# -- the shape -----------------------------------------------------------------------------


def test_the_documented_example_parses_with_its_defaults() -> None:
    registry = parse_app_registry(json.dumps(REGISTRY), "BATON_APPS")
    assert registry.names() == ["bulk-import", "review-portal"]
    portal = registry["review-portal"]
    assert (portal.weight, portal.max_priority, portal.max_in_flight) == (4.0, 100, {})
    bulk = registry["bulk-import"]
    assert bulk.max_priority == MAX_PRIORITY
    assert "bulk-import" in registry
    assert "unknown" not in registry
    assert registry.get("unknown") is None


def test_defaults_are_weight_one_no_caps_and_the_contract_s_priority_bound() -> None:
    config = app()
    assert config.weight == 1.0
    assert config.max_in_flight == {}
    assert config.max_priority == MAX_PRIORITY == 1_000_000


def test_an_empty_registry_registers_no_app() -> None:
    registry = parse_app_registry("{}", "BATON_APPS")
    assert registry.names() == []
    assert "contracts" not in registry


def test_entries_are_frozen() -> None:
    config = app()
    with pytest.raises(ValidationError):
        config.weight = 2  # type: ignore[misc]


@pytest.mark.parametrize("key", ["sender", "max_concurrency", "paused"])
def test_unknown_keys_make_the_registry_invalid(key: str) -> None:
    document = {"portal": {"senders": [], "principals": [], key: 1}}
    message = registry_error(document)
    assert message.startswith("BATON_APPS: invalid app registry: ")
    assert f"portal.{key}: Extra inputs are not permitted" in message


@pytest.mark.parametrize("weight", [0, -1, "4", True, None])
def test_weight_is_a_number_above_zero(weight: Any) -> None:
    message = registry_error({"portal": {"senders": [], "principals": [], "weight": weight}})
    assert "portal.weight" in message


def test_weight_may_be_a_fraction() -> None:
    assert app(weight=0.5).weight == 0.5


@pytest.mark.parametrize(
    "caps", [{"ocr": 0}, {"*": -1}, {"ocr": "2"}, {"bad name": 1}, {"ocr*": 1}, {"ocr": 1.5}]
)
def test_max_in_flight_takes_algorithm_names_or_star_and_caps_of_at_least_one(
    caps: dict[str, Any],
) -> None:
    message = registry_error({"portal": {"senders": [], "principals": [], "max_in_flight": caps}})
    assert "portal.max_in_flight" in message


@pytest.mark.parametrize("bound", [MAX_PRIORITY + 1, -MAX_PRIORITY - 1, "100", 1.0])
def test_max_priority_is_an_integer_within_the_contract_s_range(bound: Any) -> None:
    message = registry_error({"portal": {"senders": [], "principals": [], "max_priority": bound}})
    assert "portal.max_priority" in message


@pytest.mark.parametrize("missing", ["senders", "principals"])
def test_senders_and_principals_are_required(missing: str) -> None:
    entry: dict[str, Any] = {"senders": [], "principals": []}
    del entry[missing]
    assert f"portal.{missing}: Field required" in registry_error({"portal": entry})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("senders", "AROAEXAMPLE"),
        ("senders", [""]),
        ("senders", ["two words"]),
        ("principals", ["review-portal"]),
        ("principals", ["arn:aws:s3:::bucket"]),
    ],
)
def test_senders_and_principals_are_lists_of_ids_and_iam_arns(field: str, value: Any) -> None:
    entry = {"senders": [], "principals": [], field: value}
    assert f"portal.{field}" in registry_error({"portal": entry})


@pytest.mark.parametrize("name", ["", "has space", "a" * 65, "semi;colon"])
def test_app_names_are_plain_names(name: str) -> None:
    assert "invalid app registry" in registry_error({name: {"senders": [], "principals": []}})


@pytest.mark.parametrize("document", ["[]", '"portal"', "null"])
def test_the_registry_is_an_object(document: str) -> None:
    assert "registry: " in registry_error(document)


def test_text_that_is_not_json_is_named_as_such() -> None:
    assert registry_error("{not json", "BATON_APPS_PARAMETER") == (
        "BATON_APPS_PARAMETER: invalid app registry: not valid JSON"
    )


def test_two_entries_for_one_app_are_refused() -> None:
    text = (
        '{"portal": {"senders": ["AROAONE"], "principals": []},'
        ' "portal": {"senders": ["AROATWO"], "principals": []}}'
    )
    assert registry_error(text) == "BATON_APPS: invalid app registry: portal: duplicate key"


def test_errors_name_each_problem_without_echoing_values() -> None:
    secretish = "AROA-looks-like-a-value-that-must-not-be-echoed"
    document = {
        "portal": {"senders": [secretish + " x"], "principals": [], "weight": 0},
        "bulk": {"senders": [], "principals": [], "extra": secretish},
    }
    message = registry_error(document)
    assert "portal.senders.0" in message
    assert "portal.weight" in message
    assert "bulk.extra" in message
    assert secretish not in message


def test_the_model_reads_the_registry_as_a_mapping() -> None:
    registry = AppRegistry.from_json(json.dumps(REGISTRY))
    assert registry["review-portal"].principals == [PORTAL_ROLE]


# -- caps per algorithm --------------------------------------------------------------------


def test_limit_for_takes_the_algorithm_s_own_cap_then_star_then_none() -> None:
    both = app(max_in_flight={"ocr": 2, "*": 10})
    assert both.limit_for("ocr") == 2
    assert both.limit_for("nlp") == 10
    only_named = app(max_in_flight={"ocr": 2})
    assert only_named.limit_for("ocr") == 2
    assert only_named.limit_for("nlp") is None
    assert app().limit_for("ocr") is None


# -- senders -------------------------------------------------------------------------------


def test_a_sender_id_matches_whole() -> None:
    assert sender_matches("AIDAEXAMPLEUSERID", ["AIDAEXAMPLEUSERID"])
    assert not sender_matches("AIDAEXAMPLEUSERID", ["AIDAEXAMPLEOTHER"])


def test_a_role_session_matches_by_its_role_id() -> None:
    assert sender_matches("AROAEXAMPLEROLEID123:contracts-service", ["AROAEXAMPLEROLEID123"])
    assert sender_matches("AROAEXAMPLEROLEID123:i-0abc1234", ["AROAEXAMPLEROLEID123"])


def test_a_listed_session_admits_that_session_only() -> None:
    senders = ["AROAEXAMPLEROLEID123:nightly"]
    assert sender_matches("AROAEXAMPLEROLEID123:nightly", senders)
    assert not sender_matches("AROAEXAMPLEROLEID123:other", senders)
    assert not sender_matches("AROAEXAMPLEROLEID123", senders)


def test_a_sender_id_is_never_matched_by_a_prefix_or_a_session_alone() -> None:
    assert not sender_matches("AROAEXAMPLEROLEID1234:session", ["AROAEXAMPLEROLEID123"])
    assert not sender_matches("AROAEXAMPLE", ["AROAEXAMPLEROLEID123"])
    assert not sender_matches("AROAOTHER:AROAEXAMPLEROLEID123", ["AROAEXAMPLEROLEID123"])


@pytest.mark.parametrize("sender_id", [None, ""])
def test_no_sender_matches_nothing(sender_id: str | None) -> None:
    assert not sender_matches(sender_id, ["AROAEXAMPLEROLEID123", ""])


def test_no_senders_admit_nobody() -> None:
    assert not sender_matches("AROAEXAMPLEROLEID123:x", [])


# -- status API principals -----------------------------------------------------------------

SESSION = "arn:aws:sts::123456789012:assumed-role/review-portal/portal-session-1"


def test_an_arn_matches_whole() -> None:
    user = "arn:aws:iam::123456789012:user/alice"
    assert principal_matches(user, [user])
    assert not principal_matches("arn:aws:iam::123456789012:user/bob", [user])


def test_an_assumed_role_session_stands_for_its_role() -> None:
    assert principal_matches(SESSION, [PORTAL_ROLE])


def test_the_role_may_have_a_path() -> None:
    assert principal_matches(SESSION, ["arn:aws:iam::123456789012:role/apps/team-a/review-portal"])


def test_a_session_of_another_account_is_refused() -> None:
    other = "arn:aws:sts::210987654321:assumed-role/review-portal/portal-session-1"
    assert not principal_matches(other, [PORTAL_ROLE])


@pytest.mark.parametrize(
    "principal",
    [
        "arn:aws:iam::123456789012:role/review-portal-admin",
        "arn:aws:iam::123456789012:role/review",
        "arn:aws:iam::123456789012:role/review-portal/extra",
        "arn:aws:iam::123456789012:user/review-portal",
        "arn:aws-cn:iam::123456789012:role/review-portal",
    ],
)
def test_a_session_does_not_stand_for_another_role_kind_or_partition(principal: str) -> None:
    assert not principal_matches(SESSION, [principal])


def test_a_role_does_not_stand_for_a_session() -> None:
    # The role's own ARN is never a caller; a listed session ARN is matched whole only.
    assert not principal_matches(PORTAL_ROLE, [SESSION])
    assert principal_matches(SESSION, [SESSION])
    assert not principal_matches(SESSION.replace("portal-session-1", "other"), [SESSION])


@pytest.mark.parametrize(
    "caller",
    [
        None,
        "",
        "arn:aws:sts::123456789012:assumed-role/review-portal",
        "arn:aws:sts::123456789012:assumed-role/review-portal/a/b",
        "arn:aws:sts::123456789012:federated-user/review-portal",
        "arn:aws:iam::123456789012:assumed-role/review-portal/s",
        "not an arn",
    ],
)
def test_anything_else_matches_no_role(caller: str | None) -> None:
    assert not principal_matches(caller, [PORTAL_ROLE, "not-an-arn"])


# -- what intake makes of it ---------------------------------------------------------------

PORTAL_SESSION = "AROAEXAMPLEPORTALID:portal-web"


def intake_reason(app_name: str, sender_id: str | None, priority: int | None = None) -> str:
    registry = parse_app_registry(json.dumps(REGISTRY), "BATON_APPS")
    with pytest.raises(InvalidTaskMessage) as caught:
        enforce_app_registry(registry, app_name, sender_id, priority)
    return str(caught.value)


def test_intake_takes_an_app_s_own_sender_within_its_priority_bound() -> None:
    registry = parse_app_registry(json.dumps(REGISTRY), "BATON_APPS")
    enforce_app_registry(registry, "review-portal", PORTAL_SESSION, 100)
    enforce_app_registry(registry, "review-portal", "AROAEXAMPLEPORTALID", -5)
    # a message without a priority of its own (a cancel) is bound by the sender alone
    enforce_app_registry(registry, "review-portal", PORTAL_SESSION)


def test_intake_names_the_rule_a_message_breaks() -> None:
    assert intake_reason("contracts", PORTAL_SESSION) == "app: 'contracts' is not registered"
    assert intake_reason("review-portal", "AROAEXAMPLEBULKID:job") == (
        "app: sender is not one of the app's senders"
    )
    assert intake_reason("review-portal", None) == "app: sender is not one of the app's senders"
    assert intake_reason("review-portal", PORTAL_SESSION, 101) == (
        "priority: above the app's max_priority of 100"
    )


def test_open_mode_checks_nothing() -> None:
    enforce_app_registry(None, "anything", None, MAX_PRIORITY)
