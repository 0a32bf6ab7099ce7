"""The emulated REST API's AWS_IAM authorization on a small template of its own: routes
whose OpenAPI security scheme is awsSigv4 (or whose Api event asks for AWS_IAM) take
only requests signed with SigV4 by a local access key, checked with botocore's signer,
and hand the function the caller's identity as API Gateway does; anything else gets
API Gateway's 403, and the function never runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import botocore.auth
import pytest
import urllib3
from baton_local.emulator.aws import DUMMY_KEY_ID, DUMMY_SECRET
from baton_local.emulator.cloud import OUTPUTS_FILE, LocalCloud
from baton_local.emulator.sigv4 import DEFAULT_CALLER_ARN, IamCaller
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.local.conftest import StartCloud

HTTP = urllib3.PoolManager()
REGION = "eu-west-1"
PORTAL = IamCaller(
    "AKIAPORTALEXAMPLE123", "portal-secret-key-example", "arn:aws:iam::123456789012:role/portal"
)


@pytest.fixture
def api(start_cloud: StartCloud) -> LocalCloud:
    return start_cloud("iam_api.yaml", iam_callers=[PORTAL])


def signed(
    method: str,
    url: str,
    body: bytes = b"",
    *,
    key: str = DUMMY_KEY_ID,
    secret: str = DUMMY_SECRET,
    token: str | None = None,
    region: str = REGION,
    service: str = "execute-api",
) -> dict[str, str]:
    """The headers botocore's SigV4 signer adds to this request."""
    request = AWSRequest(method=method, url=url, data=body)
    SigV4Auth(Credentials(key, secret, token), service, region).add_auth(request)
    return dict(request.headers.items())


def call(
    method: str, url: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, Any, urllib3.BaseHTTPResponse]:
    response = HTTP.request(method, url, body=body or None, headers=headers or {})
    return response.status, json.loads(response.data), response


def test_a_signed_request_reaches_the_function_with_the_callers_identity(
    api: LocalCloud,
) -> None:
    url = f"{api.outputs['ApiUrl']}/items/it-1"

    status, answer, _ = call("GET", url, signed("GET", url, token="session-token"))

    assert status == 201
    identity = answer["event"]["requestContext"]["identity"]
    assert identity["userArn"] == DEFAULT_CALLER_ARN
    assert identity["accessKey"] == DUMMY_KEY_ID
    assert identity["accountId"] == "123456789012"
    assert identity["caller"] == identity["user"]
    assert identity["caller"].startswith("AIDA")
    assert identity["sourceIp"] == "127.0.0.1"


def test_each_local_access_key_is_its_own_principal(api: LocalCloud) -> None:
    url = f"{api.outputs['ApiUrl']}/items/it-1?view=full&tag=a%2Fb"

    headers = signed("GET", url, key=PORTAL.access_key_id, secret=PORTAL.secret_access_key)
    status, answer, _ = call("GET", url, headers)

    assert status == 201
    assert answer["event"]["requestContext"]["identity"]["userArn"] == PORTAL.arn
    assert answer["event"]["queryStringParameters"] == {"view": "full", "tag": "a/b"}
    info = json.loads((api.state_dir / OUTPUTS_FILE).read_text())
    assert info["aws"]["caller_arn"] == DEFAULT_CALLER_ARN
    assert info["iam_callers"] == {
        DUMMY_KEY_ID: DEFAULT_CALLER_ARN,
        PORTAL.access_key_id: PORTAL.arn,
    }


def test_the_local_credentials_may_stand_for_a_role_session(start_cloud: StartCloud) -> None:
    session = "arn:aws:sts::123456789012:assumed-role/review-portal/worker-7"
    cloud = start_cloud("iam_api.yaml", caller_arn=session)
    url = f"{cloud.outputs['ApiUrl']}/health"

    status, answer, _ = call("GET", url, signed("GET", url))  # an Api event with AWS_IAM

    assert status == 201
    identity = answer["event"]["requestContext"]["identity"]
    assert identity["userArn"] == session
    assert identity["caller"].startswith("AROA")
    assert identity["caller"].endswith(":worker-7")


def test_a_key_with_odd_characters_is_signed_in_the_query(api: LocalCloud) -> None:
    key = "contract/17?v=2&x=%41 +"
    url = f"{api.outputs['ApiUrl']}/items/it-1?idempotency_key={quote(key, safe='')}"

    status, answer, _ = call("GET", url, signed("GET", url))
    assert status == 201
    assert answer["event"]["queryStringParameters"] == {"idempotency_key": key}
    # A client that encodes the query otherwise (lower-case hex) signs its canonical form
    sent = url.replace("%2F", "%2f")
    status, _, _ = call("GET", sent, signed("GET", url))
    assert status == 201


def test_unsigned_requests_get_api_gateways_403(api: LocalCloud) -> None:
    base = api.outputs["ApiUrl"]
    before = api.invocations["ItemsFunction"] + api.invocations["HealthFunction"]

    for url in (f"{base}/items/it-1", f"{base}/health"):
        status, answer, response = call("GET", url)
        assert status == 403, url
        assert answer == {
            "error": {
                "code": "MISSING_AUTHENTICATION_TOKEN",
                "message": "Missing Authentication Token",
            }
        }
        assert response.headers["x-amzn-ErrorType"] == "MISSING_AUTHENTICATION_TOKEN"
    assert api.invocations["ItemsFunction"] + api.invocations["HealthFunction"] == before
    # The open route of the same resource needs no signature, and has no identity
    status, answer, _ = call("POST", f"{base}/items/it-1", body=b"{}")
    assert status == 201
    assert answer["event"]["requestContext"]["identity"]["userArn"] is None


def _expired(url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    with monkeypatch.context() as patch:
        patch.setattr(
            botocore.auth, "get_current_datetime", lambda: datetime.now(UTC) - timedelta(minutes=6)
        )
        return signed("GET", url)


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("wrong secret", "INVALID_SIGNATURE"),
        ("unknown key", "INVALID_SIGNATURE"),
        ("other region", "INVALID_SIGNATURE"),
        ("other service", "INVALID_SIGNATURE"),
        ("other path", "INVALID_SIGNATURE"),
        ("other query", "INVALID_SIGNATURE"),
        ("expired", "INVALID_SIGNATURE"),
        ("garbled", "INCOMPLETE_SIGNATURE"),
    ],
)
def test_a_badly_signed_request_gets_api_gateways_403(
    api: LocalCloud, monkeypatch: pytest.MonkeyPatch, case: str, code: str
) -> None:
    url = f"{api.outputs['ApiUrl']}/items/it-1?view=full"
    sent = url
    if case == "wrong secret":
        headers = signed("GET", url, secret="not-the-secret")
    elif case == "unknown key":
        headers = signed("GET", url, key="AKIANOBODY")
    elif case == "other region":
        headers = signed("GET", url, region="us-east-1")
    elif case == "other service":
        headers = signed("GET", url, service="s3")
    elif case == "other path":
        headers, sent = signed("GET", url), url.replace("it-1", "it-2")
    elif case == "other query":
        headers, sent = signed("GET", url), url + "&more=1"
    elif case == "expired":
        headers = _expired(url, monkeypatch)
    else:
        headers = {**signed("GET", url), "Authorization": "AWS4-HMAC-SHA256 Signature=abc"}

    status, answer, response = call("GET", sent, headers)

    assert status == 403, case
    assert answer["error"]["code"] == code
    assert answer["error"]["message"]
    assert response.headers["x-amzn-ErrorType"] == code
    assert api.invocations["ItemsFunction"] == 0
