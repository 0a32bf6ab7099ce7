"""Dispatch requests are signed the Standard Webhooks way: what Baton sends, through the
real handlers to the raw loopback service, verifies with the ``standardwebhooks``
package itself and the secret ``baton algorithm secret`` prints, and with nothing else:
not once a byte of the body, the timestamp or the id changed, not with another
algorithm's secret. During a rotation the old and the new secret both verify."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from baton import cli
from baton.signing import SigningKeyring
from baton_sdk import Dispatch, InvalidSignature
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support.algorithm_service import AlgorithmService, Delivery
from tests.support.events import sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.runtime import RuntimeFactory
from tests.support.waiting import wait_for

OLD_KEY = "old-signing-key-" + "o" * 32
NEW_KEY = "new-signing-key-" + "n" * 32
ROTATING = json.dumps({"current": "k2", "keys": {"k1": OLD_KEY, "k2": NEW_KEY}})


def secret_lines(capsys: pytest.CaptureFixture[str], algorithm: str) -> list[str]:
    assert cli.main(["algorithm", "secret", algorithm]) == 0
    captured = capsys.readouterr()
    assert "whsec_" not in captured.err
    return captured.out.splitlines()


def dispatched(handlers: Handlers, service: AlgorithmService, algorithm: str, key: str) -> Delivery:
    body = task_body(algorithm=algorithm, idempotency_key=key, input={"document": f"{key}.pdf"})
    assert handlers.invoke("intake", sqs_event(sqs_record(body))) == {"batchItemFailures": []}
    return wait_for(
        lambda: next(
            (
                d
                for d in service.deliveries
                if json.loads(d.body)["input"]["document"] == f"{key}.pdf"
            ),
            None,
        )
    )


def tampered_body(body: bytes) -> bytes:
    # One byte of the document name, still ASCII, so the body stays UTF-8 JSON.
    at = body.index(b".pdf")
    return body[:at] + b"X" + body[at + 1 :]


def test_a_dispatch_request_verifies_with_standardwebhooks_and_the_printed_secret(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a deployment with the default signing key (derived from the token secret)
    make_runtime()
    (secret,) = secret_lines(capsys, "ocr")
    assert secret.startswith("whsec_")

    # When a task is dispatched
    delivery = dispatched(handlers, algorithm_service, "ocr", "signed-1")
    request = json.loads(delivery.body)
    headers = {name.lower(): value for name, value in delivery.headers.items()}

    # Then its headers are the design's, and standardwebhooks verifies the exact bytes
    assert headers["webhook-id"] == f"{request['task_id']}:{request['attempt']}"
    assert headers["idempotency-key"] == headers["webhook-id"]
    assert headers["content-type"] == "application/json"
    assert headers["webhook-timestamp"].isdigit()
    assert Webhook(secret).verify(delivery.body, delivery.headers) == request
    # the SDK reads it too, and so does a hand-written check of the formula
    assert (
        Dispatch.from_request(delivery.body, delivery.headers, secret).task_id == request["task_id"]
    )
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + delivery.body
    mac = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{mac}"

    # And nothing altered verifies: one byte of the body, the timestamp, the id
    for body, changed in (
        (tampered_body(delivery.body), {}),
        (delivery.body, {"webhook-timestamp": str(int(headers["webhook-timestamp"]) - 1)}),
        (delivery.body, {"webhook-id": f"{request['task_id']}:{request['attempt'] + 1}"}),
    ):
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(body, headers | changed)
        with pytest.raises(InvalidSignature):
            Dispatch.from_request(body, headers | changed, secret)
    algorithm_service.wait_idle()  # its callback, before the gateway goes


def test_one_algorithms_secret_verifies_nothing_sent_to_another(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_runtime()
    secrets = {name: secret_lines(capsys, name)[0] for name in ("ocr", "nlp")}
    assert secrets["ocr"] != secrets["nlp"]
    deliveries = {
        name: dispatched(handlers, algorithm_service, name, f"x-{name}") for name in secrets
    }
    for name, delivery in deliveries.items():
        Webhook(secrets[name]).verify(delivery.body, delivery.headers)
        other = "nlp" if name == "ocr" else "ocr"
        with pytest.raises(WebhookVerificationError):
            Webhook(secrets[other]).verify(delivery.body, delivery.headers)
    algorithm_service.wait_idle()


def test_during_a_rotation_the_old_and_the_new_secret_both_verify(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a signing keyring with the old key and the new (current) one
    runtime = make_runtime(signing_secret=ROTATING)
    lines = secret_lines(capsys, "ocr")
    old, new = (
        SigningKeyring.from_secret(json.dumps({"current": kid, "keys": {kid: key}}))
        .secrets_of("ocr")[0]
        .secret
        for kid, key in (("k1", OLD_KEY), ("k2", NEW_KEY))
    )
    # the current secret first, alone; then each key's with its key id
    assert lines == [new, f"k2 {new} (current)", f"k1 {old}"]
    assert runtime.config.signing_keys.key_ids() == ["k2", "k1"]

    # When a task is dispatched, both keys sign it
    delivery = dispatched(handlers, algorithm_service, "ocr", "rotating")
    signatures = delivery.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2

    # Then a service still on the old secret accepts, as does one on the new
    for secret in (old, new):
        Webhook(secret).verify(delivery.body, delivery.headers)
        Dispatch.from_request(delivery.body, delivery.headers, secret)
    Dispatch.from_request(delivery.body, delivery.headers, [old, new])
    # and a secret that is in no keyring does not
    retired = SigningKeyring.from_secret("retired-key-" + "r" * 32).secrets_of("ocr")[0].secret
    with pytest.raises(WebhookVerificationError):
        Webhook(retired).verify(delivery.body, delivery.headers)
    algorithm_service.wait_idle()


def test_the_secret_command_speaks_json_and_warns_of_an_unregistered_algorithm(
    make_runtime: RuntimeFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime = make_runtime(signing_secret=ROTATING)
    assert cli.main(["algorithm", "secret", "ocr", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    expected = runtime.config.signing_keys.secrets_of("ocr")
    assert document == {
        "algorithm": "ocr",
        "current": expected[0].secret,
        "keys": [
            {"key_id": one.key_id, "secret": one.secret, "current": one.current} for one in expected
        ],
    }
    # Printed all the same (a service gets its secret before it is registered), but said
    assert cli.main(["algorithm", "secret", "not-yet"]) == 0
    captured = capsys.readouterr()
    assert (
        captured.out.splitlines()[0] == runtime.config.signing_keys.secrets_of("not-yet")[0].secret
    )
    assert "'not-yet' is not registered" in captured.err
