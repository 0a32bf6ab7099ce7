"""samconfig.toml: the defaults that `sam build` and `sam deploy` read per environment."""

from __future__ import annotations

import tomllib

from tests.support.template import ROOT


def test_samconfig() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert str(config["version"]) == "0.1"
    default = config["default"]
    assert default["global"]["parameters"]["stack_name"] == "baton-dev"
    assert default["validate"]["parameters"]["lint"] is True
    assert default["build"]["parameters"]["cached"] is True
    deploy = default["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["confirm_changeset"] is True
    assert deploy["resolve_s3"] is True
    prod = config["prod"]
    assert prod["global"]["parameters"]["stack_name"] == "baton-prod"
    assert prod["deploy"]["parameters"]["confirm_changeset"] is True
    assert 'Stage="prod"' in prod["deploy"]["parameters"]["parameter_overrides"]
