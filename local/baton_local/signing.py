"""The dispatch signing secrets of the algorithms of a running local stack: what
``baton algorithm secret --local <name>`` prints, for the sample services that
``baton local`` and ``baton demo`` start beside it.

They come out of Baton's own resolution, never a second copy of it: the settings the
stack's functions share (``LocalCloud.environment()``, the same variables as
``.baton-local/env``: the template's, as the profile and any ``--env-vars`` rewrote
them) go through ``baton.settings.resolve_config``, which fetches the token secret
from the local Secrets Manager and yields the ``SigningKeyring`` the functions sign
with: ``BATON_SIGNING_SECRET`` where it is set, else the keyring derived from the
token secret."""

from __future__ import annotations

from typing import TYPE_CHECKING

from baton.settings import load_settings, resolve_config
from baton.signing import SigningKeyring

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_ssm import SSMClient

    from baton_local.emulator.cloud import LocalCloud


def stack_signing_keys(cloud: LocalCloud) -> SigningKeyring:
    """The keyring that signs the stack's dispatch and cancel requests."""
    session = cloud.boto_session()
    secrets: SecretsManagerClient = session.client("secretsmanager")
    ssm: SSMClient = session.client("ssm")

    def fetch_secret(arn: str) -> str:
        return secrets.get_secret_value(SecretId=arn)["SecretString"]

    def fetch_parameter(name: str) -> str:
        return ssm.get_parameter(Name=name)["Parameter"]["Value"]

    config = resolve_config(load_settings(cloud.environment()), fetch_secret, fetch_parameter)
    return config.signing_keys


def algorithm_secrets(keys: SigningKeyring, algorithm: str) -> list[str]:
    """The algorithm's ``whsec_`` secret under each key, the current one first (a
    service verifies with all of them while a key rotates)."""
    return [one.secret for one in keys.secrets_of(algorithm)]
