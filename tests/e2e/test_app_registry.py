"""Invariant 9 at intake, through the real handler and SQS event shapes: with an app
registry, a message is accepted for an app only from one of its senders and within its
priority bound; everything else fails alone, with a logged reason naming the rule.
Without one, Baton runs open (and says so once, at cold start)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from tests.support.aws import AwsResources
from tests.support.events import sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.logs import captured_log_lines
from tests.support.runtime import RuntimeFactory

# The intake sample's SenderId is a session of this role: AROAEXAMPLEROLEID123:contracts-service
CONTRACTS_ROLE_ID = "AROAEXAMPLEROLEID123"
APPS: dict[str, Any] = {
    "contracts": {
        "senders": [CONTRACTS_ROLE_ID],
        "principals": ["arn:aws:iam::123456789012:role/contracts-service"],
        "weight": 2,
        "max_priority": 10,
    },
    "billing": {"senders": ["AROAEXAMPLEBILLINGID"], "principals": []},
}
OPEN_MODE = "no app registry (BATON_APPS or BATON_APPS_PARAMETER): open mode"


def test_only_an_app_s_own_senders_within_its_priority_bound_are_accepted(
    make_runtime: RuntimeFactory, handlers: Handlers
) -> None:
    # Given an app registry
    with captured_log_lines() as logs:
        runtime = make_runtime(fast_path="false", apps=json.dumps(APPS))
    assert not [line for line in logs.records if line["message"].startswith(OPEN_MODE)]

    # When one batch holds a good message and three that break one rule each
    good = sqs_record(task_body(idempotency_key="good", priority=10))
    foreign = sqs_record(
        task_body(idempotency_key="foreign"), sender_id="AROAEXAMPLEBILLINGID:billing-job"
    )
    unregistered = sqs_record(task_body(app="unknown-app", idempotency_key="unregistered"))
    too_high = sqs_record(task_body(idempotency_key="too-high", priority=11))
    with captured_log_lines() as logs:
        answer = handlers.invoke("intake", sqs_event(good, foreign, unregistered, too_high))

    # Then exactly the three bad ones are batch item failures...
    failed = {item["itemIdentifier"] for item in answer["batchItemFailures"]}
    assert failed == {record["messageId"] for record in (foreign, unregistered, too_high)}
    # ...each with a logged reason that names the rule it broke
    reasons = {
        line["message_id"]: (line["reason"], line["sender_id"])
        for line in logs.with_message("task message rejected")
    }
    assert reasons == {
        foreign["messageId"]: (
            "app: sender is not one of the app's senders",
            "AROAEXAMPLEBILLINGID:billing-job",
        ),
        unregistered["messageId"]: (
            "app: 'unknown-app' is not registered",
            f"{CONTRACTS_ROLE_ID}:contracts-service",
        ),
        too_high["messageId"]: (
            "priority: above the app's max_priority of 10",
            f"{CONTRACTS_ROLE_ID}:contracts-service",
        ),
    }
    # ...and the good one is a task, the bad ones are not
    task = runtime.repository.find_task("contracts", "good")
    assert task is not None
    assert task.priority == 10
    for key in ("foreign", "too-high"):
        assert runtime.repository.find_task("contracts", key) is None
    assert runtime.repository.find_task("unknown-app", "unregistered") is None


def test_an_app_s_sender_cannot_send_as_another_registered_app(
    make_runtime: RuntimeFactory, handlers: Handlers
) -> None:
    runtime = make_runtime(fast_path="false", apps=json.dumps(APPS))
    as_billing = sqs_record(task_body(app="billing", idempotency_key="mine"))  # contracts' role
    by_billing = sqs_record(
        task_body(app="billing", idempotency_key="theirs"), sender_id="AROAEXAMPLEBILLINGID"
    )
    answer = handlers.invoke("intake", sqs_event(as_billing, by_billing))
    assert answer == {"batchItemFailures": [{"itemIdentifier": as_billing["messageId"]}]}
    assert runtime.repository.find_task("billing", "theirs") is not None


def test_a_registry_that_is_set_but_empty_accepts_no_app(
    make_runtime: RuntimeFactory, handlers: Handlers
) -> None:
    runtime = make_runtime(fast_path="false", apps="{}")
    record = sqs_record(task_body(idempotency_key="nobody"))
    answer = handlers.invoke("intake", sqs_event(record))
    assert answer == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    assert runtime.repository.find_task("contracts", "nobody") is None


def test_a_record_without_a_sender_id_is_refused_when_apps_are_registered(
    make_runtime: RuntimeFactory, handlers: Handlers
) -> None:
    make_runtime(fast_path="false", apps=json.dumps(APPS))
    record = sqs_record(task_body(idempotency_key="anonymous"))
    del record["attributes"]["SenderId"]
    answer = handlers.invoke("intake", sqs_event(record))
    assert answer == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}


def test_open_mode_accepts_any_app_from_anyone_and_says_so_once(
    make_runtime: RuntimeFactory, handlers: Handlers
) -> None:
    # Given no app registry: the cold start warns once
    with captured_log_lines() as logs:
        runtime = make_runtime(fast_path="false")
        # When any app sends, from any sender, at any priority, in two invocations
        for n in range(2):
            answer = handlers.invoke(
                "intake",
                sqs_event(
                    sqs_record(
                        task_body(app=f"any-app-{n}", idempotency_key="k", priority=1_000_000),
                        sender_id=f"AIDAANYONE{n}",
                    ),
                    sqs_record(task_body(app="unregistered", idempotency_key=f"k{n}")),
                ),
            )
            assert answer == {"batchItemFailures": []}

    # Then everything is accepted, and the warning was given once, at the cold start
    assert runtime.config.apps is None
    for app, key in (("any-app-0", "k"), ("any-app-1", "k"), ("unregistered", "k1")):
        assert runtime.repository.find_task(app, key) is not None
    warnings = [line for line in logs.records if line["message"].startswith(OPEN_MODE)]
    assert len(warnings) == 1
    assert warnings[0]["level"] == "WARNING"


def test_a_warm_intake_follows_the_app_registry_parameter_and_keeps_out_a_bad_change(
    make_runtime: RuntimeFactory, handlers: Handlers, aws: AwsResources
) -> None:
    # Given the app registry in an SSM parameter (moto), re-read every second
    ssm = aws.session.client("ssm")
    name = f"/baton/test-{uuid.uuid4().hex[:8]}/apps"
    only_contracts = {"contracts": APPS["contracts"]}
    ssm.put_parameter(Name=name, Value=json.dumps(only_contracts), Type="String")
    runtime = make_runtime(fast_path="false", apps_parameter=name, policy_refresh_seconds="1")

    def billing_sends(key: str) -> bool:
        body = task_body(app="billing", idempotency_key=key)
        record = sqs_record(body, sender_id="AROAEXAMPLEBILLINGID:nightly")
        answer: dict[str, Any] = handlers.invoke("intake", sqs_event(record))
        return answer == {"batchItemFailures": []}

    assert not billing_sends("before")

    # When the operator registers billing, the warm function takes it within the period
    ssm.put_parameter(Name=name, Value=json.dumps(APPS), Type="String", Overwrite=True)
    time.sleep(1.1)
    assert billing_sends("after")
    assert runtime.repository.find_task("billing", "after") is not None

    # When the parameter becomes invalid, the registry in force stays, and it is said
    ssm.put_parameter(Name=name, Value='{"billing": {}}', Type="String", Overwrite=True)
    time.sleep(1.1)
    with captured_log_lines() as logs:
        assert billing_sends("still")
    (line,) = logs.with_message("registry not taken: the one in force stays")
    assert line["source"] == "BATON_APPS_PARAMETER"
    assert line["reason"].startswith("BATON_APPS_PARAMETER: invalid app registry: billing.")
