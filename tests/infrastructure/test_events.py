"""events/: the samples that `sam local invoke -e` takes and the tests build on, in the
shapes AWS delivers them."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from tests.support.template import ROOT


def _event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / "events" / f"{name}.json").read_text())
    return loaded


def test_intake_sample_is_an_sqs_batch_with_one_bad_message() -> None:
    records = _event("intake")["Records"]
    bodies = [json.loads(record["body"]) for record in records]
    for record in records:
        assert record["eventSource"] == "aws:sqs"
        assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
        assert {"messageId", "receiptHandle", "attributes", "eventSourceARN", "awsRegion"} <= set(
            record
        )
    complete = [body for body in bodies if {"app", "algorithm", "input"} <= set(body)]
    assert sorted(body["algorithm"] for body in complete) == ["nlp", "ocr"]
    assert len(bodies) - len(complete) == 1


@pytest.mark.parametrize("name", ["promote", "dispatch", "sweep", "reconcile"])
def test_timer_samples_are_scheduled_events(name: str) -> None:
    event = _event(name)
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"


@pytest.mark.parametrize(("name", "action"), [("callback", "callback"), ("heartbeat", "heartbeat")])
def test_api_samples_are_rest_proxy_events(name: str, action: str) -> None:
    event = _event(name)
    assert event["resource"] == f"/tasks/{{task_id}}/{action}"
    assert event["httpMethod"] == "POST"
    assert event["path"] == f"/tasks/{event['pathParameters']['task_id']}/{action}"
    assert event["headers"]["Authorization"].startswith("Bearer ")
    assert event["requestContext"]["resourcePath"] == event["resource"]
    assert event["isBase64Encoded"] is False
    assert json.loads(event["body"])["attempt"] == 1


def test_migrate_sample_is_a_custom_resource_create() -> None:
    event = _event("migrate")
    assert event["RequestType"] == "Create"
    assert event["LogicalResourceId"] == "DatabaseSchema"
    assert {"ResponseURL", "StackId", "RequestId", "ResourceProperties"} <= set(event)


def test_local_environment_sets_one_source_per_setting() -> None:
    variables = _event("env")["Parameters"]
    assert variables["BATON_DATABASE_URL"].startswith("mysql+pymysql://")
    assert variables["BATON_REDIS_URL"].startswith("redis://")
    assert len(variables["BATON_TOKEN_SECRET"]) >= 32
    assert json.loads(variables["BATON_ALGORITHMS"])
    # The template's remote sources are blanked (empty means unset), so the settings
    # see exactly one source each.
    for remote in (
        "BATON_DATABASE_SECRET_ARN",
        "BATON_TOKEN_SECRET_ARN",
        "BATON_ALGORITHMS_PARAMETER",
    ):
        assert variables.get(remote, "") == "", remote
    from baton.settings import load_settings

    settings = load_settings(variables)
    assert settings.database_secret_arn is None
    assert settings.token_secret_arn is None
    assert settings.algorithms_parameter is None


def test_status_sample_is_a_rest_proxy_event_signed_with_sigv4() -> None:
    event = _event("status")
    assert event["resource"] == "/tasks/{task_id}"
    assert event["httpMethod"] == "GET"
    assert event["path"] == f"/tasks/{event['pathParameters']['task_id']}"
    assert event["headers"]["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
    assert "/execute-api/aws4_request" in event["headers"]["Authorization"]
    assert event["requestContext"]["resourcePath"] == event["resource"]
    # What API Gateway fills in for AWS_IAM: here an assumed-role session
    identity = event["requestContext"]["identity"]
    assert identity["userArn"].startswith("arn:aws:sts::123456789012:assumed-role/")
    assert identity["caller"] == identity["user"]
    assert identity["caller"].startswith("AROA")
    assert identity["accessKey"]
    assert identity["accountId"] == "123456789012"
    assert event["body"] is None


@pytest.mark.parametrize(
    ("name", "twin"), [("callback-http", "callback"), ("status-http", "status")]
)
def test_http_api_samples_are_payload_2_0_twins_of_the_rest_ones(name: str, twin: str) -> None:
    event, rest = _event(name), _event(twin)
    assert event["version"] == "2.0"
    context = event["requestContext"]
    assert event["routeKey"] == context["routeKey"] == f"{rest['httpMethod']} {rest['resource']}"
    # The stage stays in the raw path; Powertools strips it as for REST.
    assert event["rawPath"] == context["http"]["path"] == rest["requestContext"]["path"]
    assert context["http"]["method"] == rest["httpMethod"]
    assert context["stage"] == rest["requestContext"]["stage"]
    assert event["pathParameters"] == rest["pathParameters"]
    assert event.get("body") == rest["body"]
    assert event["headers"]["authorization"] == rest["headers"]["Authorization"]
    assert "multiValueHeaders" not in event
    identity = rest["requestContext"]["identity"]
    if identity["userArn"] is None:
        assert "authorizer" not in context
    else:
        iam = context["authorizer"]["iam"]
        assert iam["userArn"] == identity["userArn"]
        assert iam["accountId"] == identity["accountId"]
