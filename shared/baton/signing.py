"""The signing keys of the requests Baton sends to algorithm services.

Every dispatch request carries the Standard Webhooks headers (``webhook-id``,
``webhook-timestamp``, ``webhook-signature``), signed over the exact bytes sent with
the algorithm's own secret. The secret of algorithm ``a`` under signing key ``k`` is
the SDK's derivation (``baton_sdk.signing.derive_secret``)::

    whsec_ + base64(HMAC-SHA256(k, "baton-signing:v1:" + a))

so a service learns its own secret only (``baton algorithm secret <name>``), and one
algorithm's secret verifies nothing sent to another.

The signing key is ``BATON_SIGNING_SECRET`` (or the Secrets Manager secret
``BATON_SIGNING_SECRET_ARN``): a plain string of at least 32 characters, or a keyring
``{"current": id, "keys": {id: key}}`` read like the token keyring. Without either it
is derived from each key of the token keyring, under the same key id::

    k = HMAC-SHA256(token key, "baton-signing-key:v1")

so a deployment has one secret to keep and rotate, while the key that signs callback
tokens never signs a request itself (and no algorithm secret says anything about it).

Rotation: every key of the keyring signs, one ``v1,<signature>`` per key separated by
spaces (the Standard Webhooks form for several secrets), current key first. A service
verifying with the old secret or with the new one accepts while both are in the
keyring; once every service has the new secret, the old key leaves the keyring.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from baton_sdk.signing import cancel_webhook_id, derive_secret, dispatch_webhook_id, sign_headers

from baton.tokens import TokenKeyring

DERIVED_KEY_LABEL = b"baton-signing-key:v1"
"""What the signing key derived from a token key is the HMAC of."""


@dataclass(frozen=True)
class AlgorithmSecret:
    """One algorithm's ``whsec_...`` secret under one key of the signing keyring."""

    key_id: str
    secret: str
    current: bool

    def __repr__(self) -> str:
        # A dataclass would print the secret; a log line or a traceback must not.
        return f"AlgorithmSecret(key_id={self.key_id!r}, current={self.current})"


@dataclass(frozen=True)
class SigningKeyring:
    """The keys that sign dispatch requests: every one of them signs (rotation)."""

    current: str
    keys: Mapping[str, bytes]

    def __repr__(self) -> str:
        return f"SigningKeyring(current={self.current!r}, key_ids={sorted(self.keys)!r})"

    @classmethod
    def from_secret(cls, secret: str) -> SigningKeyring:
        """``BATON_SIGNING_SECRET``'s value: one key, or a keyring (as the token secret)."""
        keyring = TokenKeyring.from_secret(secret, what="signing secret")
        return cls(keyring.current, keyring.keys)

    @classmethod
    def derived_from(cls, tokens: TokenKeyring) -> SigningKeyring:
        """The default: one signing key per token key, under the same key id."""
        return cls(
            tokens.current,
            {
                kid: hmac.new(key, DERIVED_KEY_LABEL, hashlib.sha256).digest()
                for kid, key in tokens.keys.items()
            },
        )

    def key_ids(self) -> list[str]:
        """The current key first, then the others by id."""
        return [self.current, *sorted(kid for kid in self.keys if kid != self.current)]

    def secrets_of(self, algorithm: str) -> list[AlgorithmSecret]:
        """The algorithm's secret under every key, the current one first."""
        return [
            AlgorithmSecret(kid, derive_secret(self.keys[kid], algorithm), kid == self.current)
            for kid in self.key_ids()
        ]

    def dispatch_headers(
        self, algorithm: str, task_id: str, attempt: int, body: bytes, timestamp: int
    ) -> dict[str, str]:
        """Step 8: ``webhook-id`` (``<task_id>:<attempt>``), ``webhook-timestamp`` and
        ``webhook-signature`` of a dispatch request whose body is exactly ``body``."""
        return sign_headers(
            [one.secret for one in self.secrets_of(algorithm)],
            dispatch_webhook_id(task_id, attempt),
            body,
            timestamp=timestamp,
        )

    def cancel_headers(
        self, algorithm: str, task_id: str, attempt: int, body: bytes, timestamp: int
    ) -> dict[str, str]:
        """The same headers for a cancel request: ``webhook-id`` ``<task_id>:<attempt>:cancel``,
        so that a consumer dropping repeated webhook ids still gets it."""
        return sign_headers(
            [one.secret for one in self.secrets_of(algorithm)],
            cancel_webhook_id(task_id, attempt),
            body,
            timestamp=timestamp,
        )
