"""The task status API of Baton's own template on ``baton local``, over real HTTP: a
request signed by botocore's SigV4 signer and the SDK's ``BatonClient`` (unchanged, given
the stack's ``StatusApiUrl`` and the local credentials) get the task; another app's
principal gets a 404, a principal of no app a 403, an unsigned request API Gateway's
403."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest
import urllib3
from baton import cli
from baton_local.emulator.aws import DUMMY_KEY_ID, DUMMY_SECRET
from baton_local.emulator.cloud import OUTPUTS_FILE, LocalCloud
from baton_local.emulator.sigv4 import DEFAULT_CALLER_ARN, IamCaller
from baton_sdk import BatonClient, Forbidden, TaskNotFound
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.local.conftest import StartCloud
from tests.support.algorithm_service import AlgorithmService
from tests.support.waiting import wait_for

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
HTTP = urllib3.PoolManager()
REGION = "eu-west-1"
MOTO_SENDER = "AIDAIT2UOQQY3AUEKVGXU"  # the SenderId moto records for every message
PORTAL = IamCaller(
    "AKIAPORTALEXAMPLE123",
    "portal-secret-example",
    "arn:aws:sts::123456789012:assumed-role/contracts-portal/portal-1",
)
BILLING = IamCaller(
    "AKIABILLINGEXAMPLE12", "billing-secret-example", "arn:aws:iam::123456789012:role/billing"
)
STRANGER = IamCaller(
    "AKIASTRANGEREXAMPLE1", "stranger-secret-example", "arn:aws:iam::123456789012:user/stranger"
)
KEY = "contract/17?v=2&x=%41"


@pytest.fixture
def stack(start_cloud: StartCloud) -> Iterator[tuple[LocalCloud, str]]:
    """The stack with an app registry (the portal's role, the billing role) and the local
    credentials as its operator; one task of the contracts app, finished."""
    service = AlgorithmService().start()
    try:
        registry = {"ocr": {"endpoint": service.endpoint("ocr"), "max_concurrency": 2}}
        apps = {
            "contracts": {
                "senders": [MOTO_SENDER],
                "principals": ["arn:aws:iam::123456789012:role/portals/contracts-portal"],
            },
            "billing": {"senders": [MOTO_SENDER], "principals": [BILLING.arn]},
        }
        cloud = start_cloud(
            TEMPLATE,
            tick_seconds=60.0,
            prewarm=False,
            iam_callers=[PORTAL, BILLING, STRANGER],
            parameter_overrides={
                "AlgorithmsJson": json.dumps(registry),
                "AppsJson": json.dumps(apps),
                "OperatorPrincipals": DEFAULT_CALLER_ARN,
            },
        )
        cloud.boto_session().client("sqs").send_message(
            QueueUrl=cloud.outputs["IntakeQueueUrl"],
            MessageBody=json.dumps(
                {"app": "contracts", "algorithm": "ocr", "input": {"d": 1}, "idempotency_key": KEY}
            ),
        )
        (request,) = wait_for(lambda: service.requests, timeout=14)
        wait_for(lambda: service.callbacks, timeout=10)
        yield cloud, str(request["task_id"])
    finally:
        service.stop()


def sdk_client(cloud: LocalCloud, caller: IamCaller) -> BatonClient:
    info = json.loads((cloud.state_dir / OUTPUTS_FILE).read_text())
    session = boto3.session.Session(
        aws_access_key_id=caller.access_key_id,
        aws_secret_access_key=caller.secret_access_key,
        region_name=info["region"],
    )
    return BatonClient(
        info["outputs"]["IntakeQueueUrl"], api_url=info["outputs"]["StatusApiUrl"], session=session
    )


def signed_get(url: str, key: str, secret: str) -> tuple[int, Any]:
    request = AWSRequest(method="GET", url=url)
    SigV4Auth(Credentials(key, secret), "execute-api", REGION).add_auth(request)
    response = HTTP.request("GET", url, headers=dict(request.headers.items()))
    return response.status, json.loads(response.data)


def test_the_status_api_answers_signed_requests_on_baton_local(
    stack: tuple[LocalCloud, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cloud, task_id = stack
    base = cloud.outputs["StatusApiUrl"]
    assert base == cloud.outputs["CallbackBaseUrl"]

    # botocore's signer, the local credentials: the operator
    status, answer = signed_get(f"{base}/tasks/{task_id}", DUMMY_KEY_ID, DUMMY_SECRET)
    assert status == 200, answer
    assert (answer["task_id"], answer["status"], answer["idempotency_key"]) == (
        task_id,
        "succeeded",
        KEY,
    )
    assert answer["result"]["url"].startswith("http://127.0.0.1:")
    by_key = f"{base}/apps/contracts/tasks?idempotency_key={quote(KEY, safe='')}"
    status, answer = signed_get(by_key, DUMMY_KEY_ID, DUMMY_SECRET)
    assert (status, answer["task_id"]) == (200, task_id)

    # The SDK, as a session of the portal's role (registered with a path)
    portal = sdk_client(cloud, PORTAL)
    view = portal.status(task_id)
    assert (view.task_id, view.status, view.attempts) == (task_id, "succeeded", 1)
    assert view.result is not None
    assert portal.status_by_key("contracts", KEY).task_id == task_id
    assert json.loads(portal.read_result(view))["task_id"] == task_id

    # Another app's principal: as if there were no such task
    billing = sdk_client(cloud, BILLING)
    with pytest.raises(TaskNotFound):
        billing.status(task_id)
    with pytest.raises(TaskNotFound):
        billing.status_by_key("contracts", KEY)
    # A principal of no app: refused by Baton; unsigned: refused by API Gateway
    with pytest.raises(Forbidden) as refused:
        sdk_client(cloud, STRANGER).status(task_id)
    assert refused.value.code == "forbidden"
    response = HTTP.request("GET", f"{base}/tasks/{task_id}")
    assert response.status == 403
    assert json.loads(response.data)["error"]["code"] == "MISSING_AUTHENTICATION_TOKEN"
    # The callback routes keep their bearer tokens: no signature asked for there
    response = HTTP.request("POST", f"{base}/tasks/{task_id}/callback", body=b"{}")
    assert response.status == 401
    assert cloud.errors == []

    # The SDK cancels through the same API: a final task is no error, a key not yet
    # seen is kept for its task
    final = portal.cancel_via_api(task_id)
    assert (final.outcome, final.status) == ("already_final", "succeeded")
    kept = portal.cancel_via_api(app="contracts", idempotency_key="not-sent-yet")
    assert kept.outcome == "kept"
    with pytest.raises(TaskNotFound):
        billing.cancel_via_api(task_id)

    # The operator commands, from "outside the VPC": the signed API, no settings at all
    for name in [n for n in os.environ if n.startswith("BATON_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    capsys.readouterr()
    assert cli.main(["task", "show", task_id, "--api-url", base]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "succeeded"
    assert cli.main(["task", "why", task_id, "--api-url", base]) == 0
    assert capsys.readouterr().out == f"task {task_id} is succeeded: it is not waiting\n"
    assert cli.main(["task", "cancel", task_id, "--api-url", base]) == 1
    assert "already succeeded" in capsys.readouterr().err
    assert cli.main(["task", "show", "no-such-task", "--api-url", base]) == 1
