"""No secret ever reaches a log line. A full run through the handlers - tasks that
succeed, fail, time out, retry and send heartbeats, bad callbacks and bad messages that
carry secret-looking values - with every line captured: the Powertools logger's JSON
on stdout (at DEBUG), the metrics Powertools prints, and every other logger of the
process at INFO, the functions' level in the template. None of them may contain the
token signing key, a callback token (or its MAC), a presigned URL signature, the
dispatch signing keys, an algorithm's signing secret or a dispatch request's signature,
the database password, or an input marked secret."""

from __future__ import annotations

import base64
import io
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import sqlalchemy as sa
from baton.observability import logger as baton_logger
from sqlalchemy.engine import make_url

from tests.support.algorithm_service import AlgorithmService
from tests.support.aws import AwsResources
from tests.support.clock import ShiftableClock
from tests.support.events import api_event, schedule_event, sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.runtime import TOKEN_SECRET, RuntimeFactory
from tests.support.services import MYSQL_SERVER_URL
from tests.support.template import load_template
from tests.support.waiting import wait_for

# Loggers of the test's own servers (moto's and the loopback HTTP servers): they log the
# requests they serve, presigned URLs included. They are not part of a deployed Baton.
TEST_INFRASTRUCTURE = ("werkzeug", "moto")


@dataclass
class Capture:
    powertools: io.StringIO = field(default_factory=io.StringIO)
    other: list[str] = field(default_factory=list)

    def lines(self, stdout: str, stderr: str) -> list[str]:
        return [
            line
            for line in (
                *self.powertools.getvalue().splitlines(),
                *self.other,
                *stdout.splitlines(),
                *stderr.splitlines(),
            )
            if line.strip()
        ]


class _Everything(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(level=logging.INFO)
        self._sink = sink
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(TEST_INFRASTRUCTURE):
            return
        self._sink.append(self.format(record))


@pytest.fixture
def capture() -> Iterator[Capture]:
    """Baton's Powertools logger at DEBUG into a buffer (the very stream handler that
    writes to stdout in Lambda), and every other logger at INFO."""
    captured = Capture()
    baton = logging.getLogger(baton_logger.service)
    stream_handlers = [h for h in baton.handlers if isinstance(h, logging.StreamHandler)]
    streams = [handler.setStream(captured.powertools) for handler in stream_handlers]
    level = baton.level
    baton.setLevel(logging.DEBUG)
    root = logging.getLogger()
    root_level = root.level
    everything = _Everything(captured.other)
    root.addHandler(everything)
    root.setLevel(logging.INFO)
    try:
        yield captured
    finally:
        root.removeHandler(everything)
        root.setLevel(root_level)
        baton.setLevel(level)
        for handler, stream in zip(stream_handlers, streams, strict=True):
            handler.setStream(stream)


@pytest.fixture
def password_database_url(clean_database: str) -> Iterator[str | None]:
    """The run's database through a user with a password, when this server lets the
    test create one (otherwise None: the other secrets are still checked)."""
    user = f"baton_{uuid.uuid4().hex[:8]}"
    password = f"Db-Pw-{uuid.uuid4().hex}"
    database = make_url(clean_database).database
    server = sa.create_engine(MYSQL_SERVER_URL, isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as connection:
            for host in ("%", "localhost", "127.0.0.1"):
                connection.execute(
                    sa.text(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY :password"),
                    {"password": password},
                )
                connection.execute(sa.text(f"GRANT ALL ON `{database}`.* TO '{user}'@'{host}'"))
        url = make_url(clean_database).set(username=user, password=password)
        rendered = url.render_as_string(hide_password=False)
        probe = sa.create_engine(rendered)
        with probe.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        probe.dispose()
    except sa.exc.SQLAlchemyError:
        rendered = None
    yield rendered
    try:
        with server.connect() as connection:
            for host in ("%", "localhost", "127.0.0.1"):
                connection.execute(sa.text(f"DROP USER IF EXISTS '{user}'@'{host}'"))
    finally:
        server.dispose()


FRAGMENT = 16


def fragments(secret: str) -> set[str]:
    """Every run of 16 characters of a secret (the whole of a shorter one)."""
    if len(secret) <= FRAGMENT:
        return {secret}
    return {secret[start : start + FRAGMENT] for start in range(len(secret) - FRAGMENT + 1)}


def signatures(url: str) -> list[str]:
    """The signature of a presigned URL, as it stands in the URL and decoded."""
    query = parse_qs(urlsplit(url).query)
    found = []
    for name in ("Signature", "X-Amz-Signature"):
        for value in query.get(name, []):
            found += [value, quote(value, safe="")]
    assert found, f"no signature in {url[:80]}"
    return found


def test_no_secret_reaches_any_log_line(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    aws: AwsResources,
    clock: ShiftableClock,
    capture: Capture,
    capsys: pytest.CaptureFixture[str],
    password_database_url: str | None,
) -> None:
    overrides: dict[str, Any] = {
        "upload_url_ttl_seconds": "600",
        "upload_url_refresh_seconds": "600",
    }
    if password_database_url is not None:
        overrides["database_url"] = password_database_url
    runtime = make_runtime(**overrides)
    marked_secret = {
        "api_key": f"sk_live_{uuid.uuid4().hex}",
        "password": f"Input-Pw-{uuid.uuid4().hex}",
    }
    meta_secret = f"meta-secret-{uuid.uuid4().hex}"

    # Tasks that succeed, fail, time out, and fail a dispatch once before they run
    handlers.invoke(
        "intake",
        sqs_event(
            sqs_record(task_body(idempotency_key="ok", input={"credentials": marked_secret})),
            sqs_record(
                task_body(
                    idempotency_key="fails",
                    input={"test": {"outcome": "failed"}, **marked_secret},
                    metadata={"note": meta_secret},
                )
            ),
            sqs_record(
                task_body(
                    idempotency_key="silent",
                    algorithm="nlp",
                    max_attempts=1,
                    timeout_seconds=5,
                    input={"test": {"outcome": "silent"}, "secret": marked_secret["api_key"]},
                )
            ),
            sqs_record(
                task_body(
                    idempotency_key="flaky",
                    algorithm="nlp",
                    input={"test": {"dispatch_status": [503, 202]}, **marked_secret},
                )
            ),
        ),
    )
    # Bad messages that carry secret-looking values where a reason might echo them
    bad_messages = [
        task_body(idempotency_key="bad-1", priority=marked_secret["api_key"]),
        task_body(idempotency_key="bad-2", input={"k": marked_secret["password"]}, extra=1),
        task_body(idempotency_key="bad-3", api_key=marked_secret["api_key"]),
        task_body(idempotency_key=marked_secret["api_key"] + " with a space"),
        task_body(idempotency_key="bad-5", not_before=marked_secret["password"]),
        '{"app": "contracts", "password": "' + marked_secret["password"] + '", broken',
        task_body(idempotency_key="bad-7", metadata=[meta_secret]),
    ]
    answer = handlers.invoke("intake", sqs_event(*(sqs_record(body) for body in bad_messages)))
    assert len(answer["batchItemFailures"]) == len(bad_messages)

    silent = wait_for(
        lambda: next((r for r in algorithm_service.requests if "secret" in r["input"]), None)
    )
    # A heartbeat that gets a fresh upload URL, and bad callbacks of every kind
    beat = algorithm_service.call_back(silent, {"attempt": 1, "progress": 10}, path="heartbeat")
    assert beat.http_status == 200
    fresh_upload_url = beat.answer["result"]["upload_url"]
    token = silent["callback"]["token"]
    for headers, body in (
        (
            {"Authorization": f"Bearer {token}"},
            {"attempt": 1, "status": "bad", "p": marked_secret["password"]},
        ),
        ({"Authorization": f"Bearer {token}"}, {"attempt": 2, "status": "failed"}),
        ({"Authorization": f"Bearer {token[:-3]}xyz"}, {"attempt": 1, "status": "failed"}),
        (
            {"Authorization": f"Bearer {marked_secret['api_key']}"},
            {"attempt": 1, "status": "failed"},
        ),
        ({"Authorization": f"Basic {TOKEN_SECRET}"}, {"attempt": 1, "status": "failed"}),
        ({"Authorization": f"Bearer {token}"}, {"attempt": 1, "status": "succeeded"}),  # no result
    ):
        refused = handlers.invoke(
            "callback", api_event(f"/tasks/{silent['task_id']}/callback", json.dumps(body), headers)
        )
        assert 400 <= refused["statusCode"] < 500

    # The timeout, the retry after the backoff, the schedules
    clock.advance(6)
    handlers.invoke("sweep", schedule_event("sweep"))
    clock.advance(10)
    for name in ("promote", "dispatch", "reconcile"):
        handlers.invoke(name, schedule_event(name))

    def outcomes() -> list[dict[str, Any]]:
        return [n for n in aws.notifications() if n["status"] != "rejected"]

    wait_for(lambda: len(outcomes()) >= 4, timeout=30)
    algorithm_service.wait_idle()
    handlers.invoke("sweep", schedule_event("sweep"))
    assert sorted(n["status"] for n in outcomes()) == [
        "failed",
        "succeeded",
        "succeeded",
        "timed_out",
    ]
    # the app was told of its bad messages (all but the one that is not JSON), and what
    # it was told echoes none of their values
    rejected = [n for n in aws.notifications() if n["status"] == "rejected"]
    assert len(rejected) == len(bad_messages) - 1
    assert not any(secret in json.dumps(rejected) for secret in marked_secret.values())

    out = capsys.readouterr()
    lines = capture.lines(out.out, out.err)
    text = "\n".join(lines)
    # The capture saw the run: every kind of event is there
    for event in (
        "task accepted",
        "task message rejected",
        "dispatch accepted",
        "dispatch failed; will retry while attempts remain",
        "callback applied",
        "callback refused",
        "attempt timed out",
        "task finished",
    ):
        assert event in text, f"no '{event}' line captured"

    secrets: dict[str, str] = {"token secret": TOKEN_SECRET, "meta secret": meta_secret}
    secrets |= {f"input {name}": value for name, value in marked_secret.items()}
    for request in algorithm_service.requests:
        token = request["callback"]["token"]
        secrets[f"token of {request['task_id']}:{request['attempt']}"] = token
        secrets[f"token MAC of {request['task_id']}:{request['attempt']}"] = token.rsplit(".", 1)[1]
        for signature in signatures(request["result"]["upload_url"]):
            secrets[f"upload URL signature {signature[:6]}"] = signature
    for delivery in algorithm_service.deliveries:
        for signature in delivery.headers["webhook-signature"].split(" "):
            secrets[f"dispatch signature {signature[3:9]}"] = signature.removeprefix("v1,")
    signing = runtime.config.signing_keys
    for kid, key in signing.keys.items():
        secrets[f"signing key {kid} (base64)"] = base64.b64encode(key).decode()
        secrets[f"signing key {kid} (hex)"] = key.hex()
    for algorithm in ("ocr", "nlp"):
        for one in signing.secrets_of(algorithm):
            secrets[f"secret of {algorithm} {one.key_id}"] = one.secret.removeprefix("whsec_")
    for signature in signatures(fresh_upload_url):
        secrets[f"fresh upload URL signature {signature[:6]}"] = signature
    for notification in outcomes():
        if notification["result"]:
            for signature in signatures(notification["result"]["url"]):
                secrets[f"result URL signature {signature[:6]}"] = signature
    if password_database_url is not None:
        password = make_url(password_database_url).password
        assert password
        secrets["database password"] = str(password)
        assert runtime.config.database_url == password_database_url

    # Not the whole secret, and not a piece of it either
    leaks = {
        name: next(line for line in lines if piece in line)[:300]
        for name, value in secrets.items()
        for piece in fragments(value)
        if piece in text
    }
    assert leaks == {}
    for marker in ("Signature=", "X-Amz-Signature", "X-Amz-Credential", "bt1.", "whsec_", "v1,"):
        assert marker not in text, next(line for line in lines if marker in line)[:300]


# -- the deployed configuration logs no request data ------------------------------------------


def test_the_template_never_logs_requests_or_events() -> None:
    template = load_template()
    api = template["Resources"]["BatonApi"]["Properties"]
    # API Gateway's execution logs with data trace would log headers: Authorization
    for setting in api.get("MethodSettings", []):
        assert not setting.get("DataTraceEnabled", False)
        assert setting.get("LoggingLevel", "OFF") in ("OFF", "ERROR")
    access_format = api["AccessLogSetting"]["Format"]
    for forbidden in ("Authorization", "$input", "$context.authorizer", "header"):
        assert forbidden not in access_format
    # Powertools would log every event, Authorization headers and bodies included
    variables: dict[str, Any] = {}
    variables |= template["Globals"]["Function"]["Environment"]["Variables"]
    for resource in template["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function":
            env = resource.get("Properties", {}).get("Environment", {})
            variables |= env.get("Variables", {})
    assert str(variables.get("POWERTOOLS_LOGGER_LOG_EVENT", "false")).lower() == "false"
    assert "POWERTOOLS_DEBUG" not in variables
