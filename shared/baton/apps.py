"""The app registry: who may send as each business app, who may look at its tasks, and
its share and limits, as the operator wrote it (``BATON_APPS`` or the SSM parameter
``BATON_APPS_PARAMETER``). Without one, Baton runs open: any app name is accepted."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from baton.contracts import MAX_PRIORITY, Name
from baton.errors import SettingsError
from baton.input_hygiene import duplicate_key

ANY_ALGORITHM = "*"

SenderId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][\x21-\x7e]{0,255}$")]
"""An SQS ``SenderId``: an IAM unique id (``AIDA...``, ``AROA...``), or a role session's
``AROA...:session`` to admit that one session only."""

PRINCIPAL_ARN_PATTERN = r"^arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:[\x21-\x7e]{1,1024}$"
PrincipalArn = Annotated[str, StringConstraints(pattern=PRINCIPAL_ARN_PATTERN)]
"""An IAM user or role ARN, or an assumed-role session ARN."""


class AppConfig(BaseModel):
    """One entry of the app registry."""

    # Strict: a weight of "4" or a priority bound of true is a mistake to point out,
    # not to guess at.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    senders: list[SenderId] = Field(
        description="SQS SenderId values allowed to submit and cancel as the app."
    )
    principals: list[PrincipalArn] = Field(
        description="IAM ARNs allowed on the status API for the app's tasks."
    )
    weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    max_in_flight: dict[Name | Literal["*"], Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict,
        description="Cost the app may have in flight per algorithm ('*': each one not named).",
    )
    max_priority: int = Field(default=MAX_PRIORITY, ge=-MAX_PRIORITY, le=MAX_PRIORITY)

    def limit_for(self, algorithm: str) -> int | None:
        """The app's cap on ``algorithm``: its own entry, else ``*``, else None (no cap)."""
        if algorithm in self.max_in_flight:
            return self.max_in_flight[algorithm]
        return self.max_in_flight.get(ANY_ALGORITHM)


class AppRegistry(BaseModel):
    """App name -> its senders, principals, share and limits. Empty registers no app."""

    model_config = ConfigDict(frozen=True)

    apps: dict[Name, AppConfig]

    @classmethod
    def from_json(cls, text: str) -> AppRegistry:
        return cls.model_validate({"apps": json.loads(text)})

    def __contains__(self, name: object) -> bool:
        return name in self.apps

    def __getitem__(self, name: str) -> AppConfig:
        return self.apps[name]

    def get(self, name: str) -> AppConfig | None:
        return self.apps.get(name)

    def names(self) -> list[str]:
        return sorted(self.apps)


def parse_app_registry(text: str, source: str) -> AppRegistry:
    """The registry in ``text``, or ``SettingsError`` naming ``source`` and each problem."""
    try:
        registry = AppRegistry.from_json(text)
    except ValueError as exc:
        detail = (
            "; ".join(
                (".".join(str(part) for part in error["loc"][1:]) or "registry")
                + ": "
                + error["msg"]
                for error in exc.errors(include_input=False, include_url=False)
            )
            if isinstance(exc, ValidationError)
            else "not valid JSON"
        )
        raise SettingsError(f"{source}: invalid app registry: {detail}") from None
    # The last of two entries for one app would silently win: a sender list that the
    # operator reads in one place and Baton takes from another.
    duplicate = duplicate_key(text)
    if duplicate is not None:
        raise SettingsError(f"{source}: invalid app registry: {duplicate}: duplicate key")
    return registry


def sender_matches(sender_id: str | None, senders: Iterable[str]) -> bool:
    """Whether an SQS ``SenderId`` is one of ``senders``: matched whole, or, for a role
    session's ``AROA...:session``, by the role's unique id before the ``:``."""
    if not sender_id:
        return False
    allowed = set(senders)
    role_id, colon, _session = sender_id.partition(":")
    return sender_id in allowed or (bool(colon) and role_id in allowed)


def principal_matches(arn: str | None, principals: Iterable[str]) -> bool:
    """Whether a caller's ARN is one of ``principals``. An assumed-role session
    (``arn:aws:sts::<account>:assumed-role/<role>/<session>``) stands for the role of
    that name in that account, whatever the role's path
    (``arn:aws:iam::<account>:role/<path/><role>``)."""
    if not arn:
        return False
    allowed = set(principals)
    if arn in allowed:
        return True
    role = _session_role(arn)
    if role is None:
        return False
    partition, account, name = role
    for principal in allowed:
        parts = principal.split(":", 5)
        if len(parts) != 6:
            continue
        _arn, other_partition, service, _region, other_account, resource = parts
        kind, _, path_and_name = resource.partition("/")
        if (service, kind, other_partition, other_account) == (
            "iam",
            "role",
            partition,
            account,
        ) and path_and_name.rsplit("/", 1)[-1] == name:
            return True
    return False


def _session_role(arn: str) -> tuple[str, str, str] | None:
    """(partition, account, role name) of an assumed-role session ARN, else None."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sts" or parts[3]:
        return None
    kind, _, rest = parts[5].partition("/")
    role, _, session = rest.partition("/")
    if kind != "assumed-role" or not role or not session or "/" in session:
        return None
    return parts[1], parts[4], role
