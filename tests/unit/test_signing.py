"""The keys that sign dispatch requests: the documented derivations, the settings that
choose them, rotation, and that nothing prints a key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from baton.errors import SettingsError
from baton.settings import load_settings, resolve_config, resolve_signing_keys
from baton.signing import DERIVED_KEY_LABEL, SigningKeyring
from baton.tokens import TokenKeyring
from baton_sdk.signing import derive_secret
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

TOKEN_SECRET = "token-secret-of-at-least-32-characters!!"
SIGNING_SECRET = "signing-secret-of-at-least-32-characters"
ENVIRON = {
    "BATON_DATABASE_URL": "mysql+pymysql://u:p@localhost/baton",
    "BATON_REDIS_URL": "redis://localhost:6379/0",
    "BATON_RESULT_BUCKET": "results-bucket",
    "BATON_NOTIFICATION_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:baton",
    "BATON_CALLBACK_BASE_URL": "https://api.example.com/prod",
    "BATON_TOKEN_SECRET": TOKEN_SECRET,
    "BATON_ALGORITHMS": json.dumps(
        {"ocr": {"endpoint": "https://ocr.example.com/run", "max_concurrency": 2}}
    ),
}
BODY = b'{"task_id":"t-1","attempt":1,"algorithm":"ocr"}'


def whsec(key: bytes, algorithm: str) -> str:
    """The derivation of the README, written out by hand."""
    mac = hmac.new(key, f"baton-signing:v1:{algorithm}".encode(), hashlib.sha256).digest()
    return "whsec_" + base64.b64encode(mac).decode()


def no_fetch(name: str) -> str:
    raise AssertionError(f"nothing to fetch, yet {name} was")


def test_by_default_the_signing_key_is_derived_from_the_token_key_and_differs() -> None:
    tokens = TokenKeyring.from_secret(TOKEN_SECRET)
    keys = SigningKeyring.derived_from(tokens)
    expected = hmac.new(TOKEN_SECRET.encode(), DERIVED_KEY_LABEL, hashlib.sha256).digest()
    assert DERIVED_KEY_LABEL == b"baton-signing-key:v1"
    assert keys.current == tokens.current
    assert dict(keys.keys) == {tokens.current: expected}
    assert expected != TOKEN_SECRET.encode()
    (secret,) = keys.secrets_of("ocr")
    assert secret.secret == whsec(expected, "ocr") == derive_secret(expected, "ocr")
    # The secret that only signs tokens signs no request
    assert secret.secret != whsec(TOKEN_SECRET.encode(), "ocr")


def test_settings_choose_the_signing_key() -> None:
    derived = resolve_config(load_settings(ENVIRON), no_fetch, no_fetch).signing_keys
    assert derived == SigningKeyring.derived_from(TokenKeyring.from_secret(TOKEN_SECRET))

    given = resolve_config(
        load_settings(ENVIRON | {"BATON_SIGNING_SECRET": SIGNING_SECRET}), no_fetch, no_fetch
    ).signing_keys
    (secret,) = given.secrets_of("ocr")
    assert secret.secret == whsec(SIGNING_SECRET.encode(), "ocr")

    fetched: list[str] = []

    def fetch(arn: str) -> str:
        fetched.append(arn)
        return SIGNING_SECRET

    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:baton-signing-AbCdEf"
    from_arn = resolve_signing_keys(
        load_settings(ENVIRON | {"BATON_SIGNING_SECRET_ARN": arn}),
        TokenKeyring.from_secret(TOKEN_SECRET),
        fetch,
    )
    assert fetched == [arn]
    assert from_arn == given


def test_at_most_one_signing_secret_setting() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            ENVIRON | {"BATON_SIGNING_SECRET": SIGNING_SECRET, "BATON_SIGNING_SECRET_ARN": "arn:x"}
        )
    assert "at most one of BATON_SIGNING_SECRET or BATON_SIGNING_SECRET_ARN" in str(caught.value)


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("too-short", "signing secret: every key must be at least 32 characters"),
        ('{"current": "k9", "keys": {"k1": "' + "x" * 32 + '"}}', "signing secret: the current"),
        ('{"keys": []}', "signing secret: a keyring must be"),
    ],
)
def test_a_bad_signing_secret_fails_naming_it(secret: str, problem: str) -> None:
    with pytest.raises(SettingsError) as caught:
        resolve_config(
            load_settings(ENVIRON | {"BATON_SIGNING_SECRET": secret}), no_fetch, no_fetch
        )
    assert str(caught.value).startswith(problem)
    assert "x" * 32 not in str(caught.value)


def test_during_a_rotation_every_key_signs_and_each_secret_verifies() -> None:
    old, new = "old-key-" + "o" * 32, "new-key-" + "n" * 32
    keys = SigningKeyring.from_secret(json.dumps({"current": "k2", "keys": {"k1": old, "k2": new}}))
    secrets = keys.secrets_of("ocr")
    assert [(s.key_id, s.current) for s in secrets] == [("k2", True), ("k1", False)]
    headers = keys.dispatch_headers("ocr", "t-1", 1, BODY, timestamp=int(time.time()))
    assert headers["webhook-id"] == "t-1:1"
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(sig.startswith("v1,") for sig in signatures)
    for secret in (whsec(old.encode(), "ocr"), whsec(new.encode(), "ocr")):
        Webhook(secret).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(whsec(b"a-third-key-" + b"t" * 32, "ocr")).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(whsec(new.encode(), "nlp")).verify(BODY, headers)


def test_a_token_keyring_rotation_rotates_the_derived_signing_keys_alike() -> None:
    tokens = TokenKeyring.from_secret(
        json.dumps({"current": "new", "keys": {"old": "o" * 40, "new": "n" * 40}})
    )
    keys = SigningKeyring.derived_from(tokens)
    assert keys.key_ids() == ["new", "old"]
    assert len({s.secret for s in keys.secrets_of("ocr")}) == 2


def test_no_repr_shows_a_key_or_a_secret() -> None:
    keys = SigningKeyring.from_secret(SIGNING_SECRET)
    (secret,) = keys.secrets_of("ocr")
    for text in (repr(keys), str(keys), repr(secret), str(secret), repr(keys.secrets_of("ocr"))):
        assert SIGNING_SECRET not in text
        assert secret.secret not in text
        assert "whsec_" not in text
