"""``AWS_IAM`` authorization of the emulated REST APIs: the SigV4 signature of a request
checked as API Gateway checks it, with botocore's own signer recomputing it from the
local credentials, and the caller's identity as API Gateway reports it to the function
(``requestContext.identity``).

Each local access key stands for an IAM principal (``IamCaller``): the default
credentials of ``baton local`` for ``DEFAULT_CALLER_ARN`` unless told otherwise, so
any AWS SDK signing with the local credentials (``execute-api``, the stack's region)
is that principal. A refusal is what API Gateway answers: 403, with its response type
(``MISSING_AUTHENTICATION_TOKEN``, ``INVALID_SIGNATURE``, ...) for the API's gateway
responses to render.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from baton_local.emulator.template import ACCOUNT_ID

SERVICE = "execute-api"
ALGORITHM = "AWS4-HMAC-SHA256"
MAX_CLOCK_SKEW = timedelta(minutes=5)
"""API Gateway refuses a signature dated further than this from its clock."""
DEFAULT_CALLER_ARN = f"arn:aws:iam::{ACCOUNT_ID}:user/baton-local"
"""Who the local credentials are, unless ``baton local --caller-arn`` says otherwise."""

_AUTHORIZATION = re.compile(
    rf"^{ALGORITHM} +Credential=(?P<credential>[^,\s]+) *, *"
    r"SignedHeaders=(?P<signed>[^,\s]+) *, *Signature=(?P<signature>[0-9a-f]{64})$"
)
_AMZ_DATE = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class IamCaller:
    """One access key of the local IAM, and the principal it stands for."""

    access_key_id: str
    secret_access_key: str
    arn: str

    def identity(self, source_ip: str, user_agent: str | None) -> dict[str, Any]:
        """``requestContext.identity`` of a request this caller signed, as API Gateway
        fills it for ``AWS_IAM``: ``caller``/``user`` are the principal's unique id (a
        role session's ``AROA...:session``), stable per ARN."""
        account = self.arn.split(":")[4] if self.arn.count(":") >= 5 else ACCOUNT_ID
        resource = self.arn.split(":", 5)[-1]
        digest = hashlib.sha256(self.arn.encode()).hexdigest()[:17].upper()
        if resource.startswith("assumed-role/"):
            unique = f"AROA{digest}:{resource.rsplit('/', 1)[-1]}"
        else:
            unique = f"AIDA{digest}"
        return {
            "accessKey": self.access_key_id,
            "accountId": account,
            "caller": unique,
            "cognitoAuthenticationProvider": None,
            "cognitoAuthenticationType": None,
            "cognitoIdentityId": None,
            "cognitoIdentityPoolId": None,
            "principalOrgId": None,
            "sourceIp": source_ip,
            "user": unique,
            "userAgent": user_agent,
            "userArn": self.arn,
        }


@dataclass(frozen=True)
class Refusal:
    """API Gateway's own 403: its gateway response type, and its message."""

    response_type: str
    message: str


def callers_by_key(callers: Iterable[IamCaller]) -> dict[str, IamCaller]:
    return {caller.access_key_id: caller for caller in callers}


class _SignedHeadersOnly(SigV4Auth):
    """botocore's SigV4 over exactly the headers the client said it signed (botocore
    itself signs every header it has, which a server cannot know)."""

    def __init__(
        self, credentials: Credentials, region: str, signed: Iterable[str], service: str
    ) -> None:
        super().__init__(credentials, service, region)
        self._signed = {name.lower() for name in signed}

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        chosen = HTTPHeaders()
        for name, value in request.headers.items():
            if name.lower() in self._signed:
                chosen[name.lower()] = value
        return chosen


class _Refused(Exception):
    def __init__(self, response_type: str, message: str) -> None:
        super().__init__(message)
        self.refusal = Refusal(response_type, message)


def verify(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    region: str,
    callers: Mapping[str, IamCaller],
    now: datetime | None = None,
) -> IamCaller | Refusal:
    """The caller who signed this request, or API Gateway's refusal of it."""
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(value)
    try:
        caller, signed, signature, amz_date = _credential(values, region, callers)
        _check_time_and_body(values, amz_date, body, now or datetime.now(UTC))
    except _Refused as refused:
        return refused.refusal
    expected = [
        _signature(
            caller,
            region=region,
            signed=signed,
            method=method,
            url=url,
            headers=headers,
            body=body,
            amz_date=amz_date,
        )
        for url in _urls(values, target)
    ]
    if not any(hmac.compare_digest(candidate, signature) for candidate in expected):
        return Refusal(
            "INVALID_SIGNATURE",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
        )
    return caller


def _credential(
    values: Mapping[str, list[str]], region: str, callers: Mapping[str, IamCaller]
) -> tuple[IamCaller, list[str], str, str]:
    """(caller, signed header names, signature, X-Amz-Date) of the Authorization header."""
    authorization = values.get("authorization") or []
    if not authorization:
        # What API Gateway says of an unsigned request to an AWS_IAM route.
        raise _Refused("MISSING_AUTHENTICATION_TOKEN", "Missing Authentication Token")
    parsed = _AUTHORIZATION.match(authorization[0].strip()) if len(authorization) == 1 else None
    if parsed is None:
        raise _Refused(
            "INCOMPLETE_SIGNATURE",
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' "
            f"parameters, signed with {ALGORITHM}",
        )
    key_id, _, scope = parsed["credential"].partition("/")
    date, region_of_scope, service, terminal = [*scope.split("/"), "", "", "", ""][:4]
    signed = parsed["signed"].split(";")
    amz_date = (values.get("x-amz-date") or [""])[0]
    caller = callers.get(key_id)
    if caller is None:
        raise _Refused(
            "INVALID_SIGNATURE", "The security token included in the request is invalid."
        )
    if (region_of_scope, service, terminal) != (region, SERVICE, "aws4_request"):
        raise _Refused(
            "INVALID_SIGNATURE",
            f"Credential should be scoped to a valid region and service ({region}/{SERVICE}).",
        )
    if "host" not in signed or "x-amz-date" not in signed or not amz_date.startswith(date):
        raise _Refused(
            "INVALID_SIGNATURE",
            "The request must sign the host and x-amz-date headers, dated as its credential scope.",
        )
    return caller, signed, parsed["signature"], amz_date


def _check_time_and_body(
    values: Mapping[str, list[str]], amz_date: str, body: bytes, now: datetime
) -> None:
    try:
        signed_at = datetime.strptime(amz_date, _AMZ_DATE).replace(tzinfo=UTC)
    except ValueError:
        raise _Refused(
            "INVALID_SIGNATURE", "X-Amz-Date is not a date in the basic ISO 8601 format."
        ) from None
    if abs(now - signed_at) > MAX_CLOCK_SKEW:
        raise _Refused(
            "INVALID_SIGNATURE",
            f"Signature expired: {amz_date} is not within 5 minutes of {now.strftime(_AMZ_DATE)}.",
        )
    content_hash = (values.get("x-amz-content-sha256") or [""])[0]
    if content_hash and content_hash != hashlib.sha256(body).hexdigest():
        raise _Refused("INVALID_SIGNATURE", "X-Amz-Content-SHA256 does not match the body.")


def _urls(values: Mapping[str, list[str]], target: str) -> list[str]:
    """The URL as sent, and with its query in the canonical form of the SigV4 rules
    (each name and value percent-encoded as RFC 3986 says, ``+`` taken literally): a
    client that encodes its query otherwise (curl) signs the canonical form."""
    host = (values.get("host") or ["localhost"])[0]
    parts = urlsplit(target)
    sent = f"http://{host}{target}"
    if not parts.query:
        return [sent]
    pairs = []
    for pair in parts.query.split("&"):
        name, _, value = pair.partition("=")
        pairs.append(f"{quote(unquote(name), safe='-_.~')}={quote(unquote(value), safe='-_.~')}")
    canonical = f"http://{host}{parts.path}?{'&'.join(pairs)}"
    return [sent] if canonical == sent else [sent, canonical]


def _signature(
    caller: IamCaller,
    *,
    region: str,
    signed: list[str],
    method: str,
    url: str,
    headers: list[tuple[str, str]],
    body: bytes,
    amz_date: str,
) -> str:
    credentials = Credentials(caller.access_key_id, caller.secret_access_key)
    signer = _SignedHeadersOnly(credentials, region, signed, SERVICE)
    request = AWSRequest(method=method, url=url, data=body)
    for name, value in headers:
        request.headers[name] = value  # appends: a repeated header is signed as sent
    request.context["timestamp"] = amz_date
    canonical = signer.canonical_request(request)
    return str(signer.signature(signer.string_to_sign(request, canonical), request))
