"""Who asks the status API, and which apps' tasks they may see (invariant 9).

API Gateway authenticates the caller (SigV4, ``AWS_IAM`` on the status routes) and
hands over its ARN: a REST API (payload 1.0) as ``requestContext.identity.userArn``, an
HTTP API (payload 2.0) as ``requestContext.authorizer.iam.userArn`` (``caller_arn``
reads either). What that ARN may see is decided here, from the app registry's
``principals`` and ``BATON_OPERATOR_PRINCIPALS`` (an assumed-role session stands for
its role, ``apps.principal_matches``).

A caller is refused outright (403) only when it may see nothing at all; a task of an
app it may not see is answered as if it did not exist (404, ``status``), so that the
API tells nobody which tasks, or which apps, there are.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_lambda_powertools.utilities.data_classes import (
    APIGatewayProxyEvent,
    APIGatewayProxyEventV2,
)
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

from baton.apps import principal_matches
from baton.errors import Forbidden
from baton.settings import Config


@dataclass(frozen=True)
class Access:
    """The apps whose tasks one caller may see; ``every_app``: an operator, or open mode."""

    caller: str
    apps: frozenset[str] = frozenset()
    every_app: bool = False

    def sees(self, app: str) -> bool:
        return self.every_app or app in self.apps


def caller_arn(event: BaseProxyEvent) -> str | None:
    """The ARN API Gateway authenticated for ``event``, whichever payload carries it;
    None for a request without an IAM identity."""
    if isinstance(event, APIGatewayProxyEventV2):
        return event.request_context.authorizer.iam.user_arn or None
    if isinstance(event, APIGatewayProxyEvent):
        return event.request_context.identity.user_arn or None
    return None


def access_of(config: Config, caller_arn: str | None) -> Access:
    """What ``caller_arn`` may see under the registries in force; ``Forbidden`` when it
    is missing (an unsigned request that reached the function), or when it is no
    operator and no app's principal."""
    if not caller_arn:
        raise Forbidden("no IAM identity: sign the request with SigV4 (AWS_IAM)")
    if principal_matches(caller_arn, config.settings.operators):
        return Access(caller_arn, every_app=True)
    registry = config.apps
    if registry is None:
        # Open mode: the IAM policy on the API is the only guard (the cold start warns).
        return Access(caller_arn, every_app=True)
    apps = frozenset(
        name for name, app in registry.apps.items() if principal_matches(caller_arn, app.principals)
    )
    if not apps:
        raise Forbidden("the caller is no app's principal and no operator")
    return Access(caller_arn, apps)
