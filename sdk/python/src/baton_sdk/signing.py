"""Standard Webhooks signatures of the requests Baton sends to algorithm services.

A dispatch request carries ``webhook-id: <task_id>:<attempt>``, a cancel request
``webhook-id: <task_id>:<attempt>:cancel``; both carry ``webhook-timestamp`` (Unix
seconds) and ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``
made with the algorithm's secret, one ``v1,...`` per secret, separated by spaces,
while a secret rotates. The ``standardwebhooks`` package verifies them as they stand.

Each algorithm has its own secret, derived from one master key::

    secret = "whsec_" + base64(HMAC-SHA256(master_key, "baton-signing:v1:" + algorithm))

so Baton stores one key, a service learns only its own secret (``baton algorithm
secret <name>``), and one service's secret says nothing about another's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from standardwebhooks import Webhook

from baton_sdk.errors import InvalidSignature

SECRET_PREFIX = "whsec_"  # noqa: S105 -- the Standard Webhooks prefix, not a secret
DERIVATION_LABEL = "baton-signing:v1:"
DEFAULT_TOLERANCE_SECONDS = 300
"""Standard Webhooks' own: a request signed more than 5 minutes away is refused."""


def derive_secret(master_key: str | bytes, algorithm: str) -> str:
    """The ``whsec_...`` signing secret of one algorithm (see the module docstring)."""
    key = master_key.encode() if isinstance(master_key, str) else master_key
    if not key:
        raise ValueError("the master key is empty")
    digest = hmac.new(key, (DERIVATION_LABEL + algorithm).encode(), hashlib.sha256).digest()
    return SECRET_PREFIX + base64.b64encode(digest).decode()


def dispatch_webhook_id(task_id: str, attempt: int) -> str:
    return f"{task_id}:{attempt}"


def cancel_webhook_id(task_id: str, attempt: int) -> str:
    # Distinct from the dispatch's: a consumer that drops repeated ids still gets it.
    return f"{task_id}:{attempt}:cancel"


def _secrets(secret: str | Sequence[str]) -> list[str]:
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise ValueError("no signing secret given")
    return secrets


def signature_header(
    secret: str | Sequence[str], webhook_id: str, timestamp: int, body: bytes
) -> str:
    """``v1,<sig>`` with each secret, space-separated (several while a secret rotates)."""
    signed_at = datetime.fromtimestamp(timestamp, UTC)
    text = body.decode()
    return " ".join(
        Webhook(one).sign(msg_id=webhook_id, timestamp=signed_at, data=text)
        for one in _secrets(secret)
    )


def sign_headers(
    secret: str | Sequence[str],
    webhook_id: str,
    body: bytes,
    *,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body``, signed now unless ``timestamp``."""
    at = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(at),
        "webhook-signature": signature_header(secret, webhook_id, at, body),
    }


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secret: str | Sequence[str],
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> str:
    """Check a signed request; returns its ``webhook-id``, or raises ``InvalidSignature``.

    Any of ``secret`` (while one rotates, pass the old and the new) may have signed it.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    webhook_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (webhook_id and stamp and signatures):
        raise InvalidSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise InvalidSignature("webhook-timestamp is not Unix seconds") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise InvalidSignature(
            f"webhook-timestamp is {current - timestamp:+.0f} s away, outside the tolerance "
            f"of {tolerance:g} s (a replay, or a clock far off)"
        )
    try:
        expected = {
            sig.partition(",")[2]
            for sig in signature_header(secret, webhook_id, timestamp, body).split(" ")
        }
    except UnicodeDecodeError:
        raise InvalidSignature("the body is not UTF-8, so Baton did not sign it") from None
    for given in signatures.split(" "):
        version, _, value = given.partition(",")
        if version == "v1" and any(
            hmac.compare_digest(value.encode(), one.encode()) for one in expected
        ):
            return webhook_id
    raise InvalidSignature("no signature matches: wrong secret, or the request was altered")
