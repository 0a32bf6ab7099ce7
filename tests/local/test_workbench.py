"""``baton local`` as a new user meets it, as a process of its own: fixed ports and
names, so a restart keeps its URLs and ARNs; ``.baton-local/outputs.json`` and ``env``
say how to reach it; the operator commands take ``--local`` with nothing else set; the
sample algorithms make the README's first message succeed; and the README's session
runs as written through the stock AWS CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import venv
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import urllib3
from baton_sdk.signing import cancel_webhook_id, dispatch_webhook_id, sign_headers

from tests.support.services import free_port
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
BATON = Path(sys.executable).with_name("baton")
README_MESSAGE = {
    "app": "contracts",
    "algorithm": "ocr",
    "input": {"document": "s3://docs/contract-17.pdf"},
    "idempotency_key": "contract-17-ocr",
    "priority": 5,
    "timeout_seconds": 600,
    "max_attempts": 3,
    "not_before": "2026-12-01T08:00:00+01:00",
    "metadata": {"case": "17"},
}


@dataclass
class Workbench:
    """``baton local`` started in ``home`` (its state in ``home/.baton-local``)."""

    home: Path
    ports: list[int] = field(default_factory=lambda: [free_port() for _ in range(3)])
    process: subprocess.Popen[bytes] | None = None

    @property
    def state_dir(self) -> Path:
        return self.home / ".baton-local"

    def start(self) -> dict[str, Any]:
        aws, api, redis = self.ports
        log = (self.home / "baton-local.log").open("ab")
        self.process = subprocess.Popen(
            [
                str(BATON),
                "local",
                "--template",
                str(ROOT / "template.yaml"),
                "--tick",
                "1",
                "--aws-port",
                str(aws),
                "--api-port",
                str(api),
                "--redis-port",
                str(redis),
            ],
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return wait_for(self._info, timeout=120, interval=0.2)

    def _info(self) -> dict[str, Any] | None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"baton local exited:\n{self.log()}")
        try:
            info = json.loads((self.state_dir / "outputs.json").read_text())
        except (OSError, ValueError):
            return None
        # the sample subscriber is the last thing it adds
        if info.get("pid") != self.process.pid or "samples" not in info:
            return None
        return dict(info)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        path = self.home / "baton-local.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def baton(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """An operator command as a process, with nothing in its environment by default."""
        return subprocess.run(
            [str(BATON), *args],
            cwd=self.home,
            env=env or {},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture(scope="module")
def workbench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workbench]:
    bench = Workbench(tmp_path_factory.mktemp("workbench"))
    bench.start()
    yield bench
    bench.stop()


def _session(info: dict[str, Any]) -> boto3.session.Session:
    aws = info["aws"]
    return boto3.session.Session(
        aws_access_key_id=aws["access_key_id"],
        aws_secret_access_key=aws["secret_access_key"],
        region_name=aws["region"],
    )


def _client(info: dict[str, Any], service: str) -> Any:
    return _session(info).client(service, endpoint_url=info["aws"]["endpoint_url"])  # type: ignore[call-overload]


def _info(bench: Workbench) -> dict[str, Any]:
    return dict(json.loads((bench.state_dir / "outputs.json").read_text()))


def _notification(info: dict[str, Any], task_id: str | None = None) -> dict[str, Any]:
    sqs = _client(info, "sqs")
    url = info["samples"]["notification_queue_url"]

    def arrived() -> dict[str, Any] | None:
        for message in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []):
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            body = json.loads(message["Body"])
            if task_id is None or body["task_id"] == task_id:
                return dict(body)
        return None

    return wait_for(arrived, timeout=60)


def test_outputs_json_says_what_the_aws_clients_see(workbench: Workbench) -> None:
    info = _info(workbench)
    outputs, endpoints = info["outputs"], info["endpoints"]
    aws_port, api_port, redis_port = workbench.ports

    assert endpoints["aws"] == info["aws"]["endpoint_url"] == f"http://127.0.0.1:{aws_port}"
    assert endpoints["apis"] == {"BatonApi": f"http://127.0.0.1:{api_port}/dev"}
    assert outputs["CallbackBaseUrl"] == endpoints["apis"]["BatonApi"]
    assert endpoints["redis"] == f"redis://127.0.0.1:{redis_port}/0"
    assert endpoints["database"].startswith("sqlite:///")
    sqs, sns, s3 = _client(info, "sqs"), _client(info, "sns"), _client(info, "s3")
    secrets = _client(info, "secretsmanager")
    queue_name = outputs["IntakeQueueUrl"].rsplit("/", 1)[-1]
    assert sqs.get_queue_url(QueueName=queue_name)["QueueUrl"] == outputs["IntakeQueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=outputs["IntakeQueueUrl"], AttributeNames=["QueueArn"])
    assert arn["Attributes"]["QueueArn"] == outputs["IntakeQueueArn"]
    topics = [t["TopicArn"] for t in sns.list_topics()["Topics"]]
    assert outputs["NotificationTopicArn"] in topics
    s3.head_bucket(Bucket=outputs["ResultBucketName"])
    assert (
        secrets.describe_secret(SecretId=outputs["TokenSecretArn"])["ARN"]
        == outputs["TokenSecretArn"]
    )
    # the callback API answers on its URL (401: no token)
    answer = urllib3.request(
        "POST", f"{outputs['CallbackBaseUrl']}/tasks/x/callback", json={}, timeout=60
    )
    assert answer.status == 401

    # and the env file holds the same, as KEY=VALUE lines
    env = dict(
        line.split("=", 1)
        for line in (workbench.state_dir / "env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert env["AWS_ENDPOINT_URL"] == endpoints["aws"]
    assert env["BATON_REDIS_URL"] == endpoints["redis"]
    assert env["BATON_DATABASE_URL"] == endpoints["database"]
    assert env["BATON_NOTIFICATION_TOPIC_ARN"] == outputs["NotificationTopicArn"]
    assert env["IntakeQueueUrl"] == outputs["IntakeQueueUrl"]
    assert env["NotificationQueueUrl"] == info["samples"]["notification_queue_url"]


def test_the_readme_message_succeeds_and_task_show_local_needs_no_environment(
    workbench: Workbench,
) -> None:
    info = _info(workbench)
    sqs = _client(info, "sqs")
    message = {**README_MESSAGE, "idempotency_key": f"readme-{time.time_ns()}"}

    sqs.send_message(QueueUrl=info["outputs"]["IntakeQueueUrl"], MessageBody=json.dumps(message))

    notification = _notification(info)
    assert (notification["status"], notification["algorithm"]) == ("succeeded", "ocr")
    result = _client(info, "s3").get_object(
        Bucket=notification["result"]["bucket"], Key=notification["result"]["key"]
    )
    assert json.loads(result["Body"].read())["words"] > 100

    shown = workbench.baton("task", "show", "--local", notification["task_id"])
    assert shown.returncode == 0, shown.stderr
    task = json.loads(shown.stdout)  # stdout holds the answer alone
    assert (task["task_id"], task["status"]) == (notification["task_id"], "succeeded")
    assert [e["status"] for e in task["executions"]] == ["succeeded"]

    # not found and refused: 1
    assert workbench.baton("task", "show", "--local", "no-such-task").returncode == 1
    missing = workbench.baton("task", "cancel", "--local", "no-such-task")
    assert (missing.returncode, missing.stderr.splitlines()[-1]) == (
        1,
        "baton: task no-such-task does not exist",
    )
    finished = workbench.baton("task", "cancel", "--local", notification["task_id"])
    assert finished.returncode == 1
    assert "already succeeded" in finished.stderr


def test_without_local_an_empty_environment_is_one_line_naming_all_that_is_missing(
    workbench: Workbench,
) -> None:
    answer = workbench.baton("task", "show", "some-task", env={"AWS_CONFIG_FILE": os.devnull})

    assert answer.returncode == 2
    (line,) = answer.stderr.splitlines()
    assert line.startswith("baton: settings missing: BATON_REDIS_URL, ")
    for name in (
        "BATON_RESULT_BUCKET",
        "BATON_NOTIFICATION_TOPIC_ARN",
        "BATON_CALLBACK_BASE_URL",
        "BATON_DATABASE_URL or BATON_DATABASE_SECRET_ARN",
        "BATON_TOKEN_SECRET or BATON_TOKEN_SECRET_ARN",
        "BATON_ALGORITHMS or BATON_ALGORITHMS_PARAMETER",
        "AWS_REGION",
        "--local",
    ):
        assert name in line
    assert answer.stdout == ""


def test_every_operator_command_takes_local(workbench: Workbench) -> None:
    assert workbench.baton("reconcile", "--local").returncode == 0
    upgraded = workbench.baton("db", "upgrade", "--local")
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.startswith("database at revision ")


def test_the_samples_verify_requests_with_what_algorithm_secret_local_prints(
    workbench: Workbench,
) -> None:
    # Given the secrets the operator command prints for two sample algorithms
    info = _info(workbench)
    printed = {}
    for name in ("ocr", "nlp"):
        answer = workbench.baton("algorithm", "secret", "--local", name)
        assert answer.returncode == 0, answer.stderr
        printed[name] = answer.stdout.splitlines()[0]
    assert printed["ocr"].startswith("whsec_")
    assert printed["ocr"] != printed["nlp"]
    expires = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    request = {
        "task_id": "workbench-1",
        "attempt": 1,
        "algorithm": "ocr",
        "input": {"document": "no-such-document.bin"},
        "deadline": expires,
        "result": {
            "bucket": "b",
            "key": "k",
            "upload_url": "http://127.0.0.1:9/",
            "expires_at": expires,
        },
        "callback": {"url": "http://127.0.0.1:9/tasks/workbench-1/callback", "token": "t"},
    }
    body = json.dumps(request).encode()

    def post(url: str, secret: str, webhook_id: str, payload: bytes = body) -> int:
        headers = {"Content-Type": "application/json", **sign_headers(secret, webhook_id, payload)}
        return urllib3.request("POST", url, body=payload, headers=headers, timeout=30).status

    endpoint = info["samples"]["algorithms"]["ocr"]
    cancel_url = info["samples"]["cancel_urls"]["ocr"]
    webhook_id = dispatch_webhook_id("workbench-1", 1)
    # When ocr's service gets a request signed with nlp's secret, then with its own
    # Then the first is refused as forged; the second passes the signature and is
    # refused for its (unknown) document only
    assert post(endpoint, printed["nlp"], webhook_id) == 401
    assert post(endpoint, printed["ocr"], webhook_id) == 422
    # And its cancel URL verifies the same way: 404 for an attempt it never worked on
    cancel = json.dumps(
        {"task_id": "workbench-1", "attempt": 1, "algorithm": "ocr", "reason": "cancelled"}
    ).encode()
    cancel_id = cancel_webhook_id("workbench-1", 1)
    assert post(cancel_url, printed["nlp"], cancel_id, cancel) == 401
    assert post(cancel_url, printed["ocr"], cancel_id, cancel) == 404


@pytest.mark.network
def test_the_readme_session_runs_through_the_stock_aws_cli(
    workbench: Workbench, tmp_path: Path
) -> None:
    # The AWS CLI as a user installs it: a virtualenv of its own, from the package index
    cli = tmp_path / "awscli"
    venv.create(cli, with_pip=True)
    subprocess.run(
        [str(cli / "bin" / "python"), "-m", "pip", "install", "--quiet", "awscli"],
        check=True,
        capture_output=True,
        timeout=600,
    )
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Running it locally") :]
    session = next(
        block for block in re.findall(r"```sh\n(.*?)```", section, re.S) if "send-message" in block
    )

    answer = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", session],
        cwd=workbench.home,
        env={
            "PATH": f"{cli / 'bin'}:{BATON.parent}:/usr/bin:/bin",
            "HOME": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert answer.returncode == 0, answer.stdout + answer.stderr
    notification = json.loads((workbench.home / "notification.json").read_text())
    assert (notification["status"], notification["algorithm"]) == ("succeeded", "ocr")
    assert f'"task_id": "{notification["task_id"]}"' in answer.stdout  # baton task show
    assert '"status": "succeeded"' in answer.stdout
    assert '"words"' in answer.stdout  # the result, read from S3


def test_a_restarted_stack_keeps_its_urls_and_arns(workbench: Workbench) -> None:
    before = _info(workbench)

    workbench.stop()
    assert not (workbench.state_dir / "outputs.json").exists()  # it was about a running stack
    after = workbench.start()

    for name in (
        "IntakeQueueUrl",
        "IntakeQueueArn",
        "NotificationTopicArn",
        "CallbackBaseUrl",
        "ResultBucketName",
        "TokenSecretArn",
        "DatabaseSecretArn",
    ):
        assert after["outputs"][name] == before["outputs"][name], name
    assert after["endpoints"] == before["endpoints"]
    assert after["functions"] == before["functions"]
    assert after["pid"] != before["pid"]
