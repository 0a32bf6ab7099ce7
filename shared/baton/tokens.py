"""Callback tokens: HMAC-SHA256 over task id, attempt and expiry, with a key id so the
signing key can rotate. Stateless, so nothing secret is ever stored: the database keeps
no token, and a token proves itself against the keyring alone.

Format: ``bt1.<key id>.<base64url(task_id:attempt:expires)>.<base64url(mac)>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from baton.errors import SettingsError, Unauthorized

KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""A token key id: it stands between the dots of a token, so it has none itself."""


@dataclass(frozen=True)
class TokenKeyring:
    """Keys that sign callback tokens: ``current`` signs, every key verifies (rotation)."""

    current: str
    keys: Mapping[str, bytes]

    @classmethod
    def from_secret(cls, secret: str, what: str = "token secret") -> TokenKeyring:
        """A plain string is one key; ``{"current": id, "keys": {id: key}}`` is a keyring.

        ``what`` names the secret in errors (the dispatch signing secret is read alike).
        """
        text = secret.strip()
        if text.startswith("{"):
            try:
                document = json.loads(text)
                keys = {str(kid): str(key).encode() for kid, key in document["keys"].items()}
                current = str(document["current"])
            except (ValueError, KeyError, TypeError, AttributeError):
                raise SettingsError(
                    f'{what}: a keyring must be {{"current": "<id>", "keys": {{"<id>": "<key>"}}}}'
                ) from None
            if current not in keys:
                raise SettingsError(f"{what}: the current key id is not in keys")
            if not all(KEY_ID.fullmatch(kid) for kid in keys):
                raise SettingsError(
                    f"{what}: key ids are letters, digits, '_' and '-' (1-64 characters)"
                )
        else:
            keys = {hashlib.sha256(text.encode()).hexdigest()[:8]: text.encode()}
            current = next(iter(keys))
        if any(len(key) < 32 for key in keys.values()):
            raise SettingsError(f"{what}: every key must be at least 32 characters")
        return cls(current=current, keys=keys)


_VERSION = "bt1"


@dataclass(frozen=True)
class TokenClaims:
    task_id: str
    attempt: int
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, signed: str) -> bytes:
    return hmac.new(key, signed.encode(), hashlib.sha256).digest()


def issue_token(keyring: TokenKeyring, task_id: str, attempt: int, expires_at: datetime) -> str:
    """A token that authorises callbacks for exactly this task and attempt until ``expires_at``."""
    payload = _b64(f"{task_id}:{attempt}:{int(expires_at.timestamp())}".encode())
    signed = f"{_VERSION}.{keyring.current}.{payload}"
    return f"{signed}.{_b64(_mac(keyring.keys[keyring.current], signed))}"


def authenticate_token(
    keyring: TokenKeyring, token: str, task_id: str, now: datetime
) -> TokenClaims:
    """The claims of an authentic, unexpired token for this task, or ``Unauthorized``.

    Every failure gives the same answer so that a caller learns nothing from it.
    """
    claims = _authentic_claims(keyring, token)
    if (
        claims is None
        # (a path is caller-controlled text: it may hold anything, lone surrogates included)
        or not hmac.compare_digest(claims.task_id.encode(), task_id.encode(errors="surrogatepass"))
        or claims.expires_at <= now
    ):
        raise Unauthorized("missing, invalid or expired token for this task")
    return claims


def verify_token(
    keyring: TokenKeyring, token: str, task_id: str, attempt: int, now: datetime
) -> TokenClaims:
    """As ``authenticate_token``, and the token must be the one of ``attempt``."""
    claims = authenticate_token(keyring, token, task_id, now)
    if claims.attempt != attempt:
        raise Unauthorized("the token belongs to another attempt")
    return claims


def _authentic_claims(keyring: TokenKeyring, token: str) -> TokenClaims | None:
    parts = token.split(".")
    # Every token Baton issues is ASCII; anything else is not one (and could not be
    # encoded for the MAC check if it held a lone surrogate).
    if len(parts) != 4 or parts[0] != _VERSION or not token.isascii():
        return None
    _, kid, payload, mac = parts
    key = keyring.keys.get(kid)
    if key is None:
        return None
    try:
        given = _unb64(mac)
    except (ValueError, binascii.Error):
        return None
    if not hmac.compare_digest(given, _mac(key, f"{_VERSION}.{kid}.{payload}")):
        return None
    try:
        task_id, attempt, expires = _unb64(payload).decode().split(":")
        return TokenClaims(task_id, int(attempt), datetime.fromtimestamp(int(expires), UTC))
    except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError, OSError):
        return None


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or ``Unauthorized``."""
    if not authorization:
        raise Unauthorized("missing Authorization: Bearer token")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization must be 'Bearer <token>'")
    return token.strip()
