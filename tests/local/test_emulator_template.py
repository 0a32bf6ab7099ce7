"""Reading templates: short-form tags, intrinsic functions, conditions, parameters,
Globals; what cannot run locally fails start-up naming it; custom resources run at start."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from baton_local.emulator.template import (
    Resolver,
    Template,
    TemplateError,
    TemplateLoader,
    merge_globals,
)

from tests.local.conftest import StartCloud, records


class FakeResources:
    """Ref and GetAtt answers for resolver tests."""

    def ref(self, logical_id: str) -> Any:
        return f"{logical_id}-physical"

    def get_att(self, logical_id: str, attribute: str) -> Any:
        return f"{logical_id}.{attribute}-value"


DOCUMENT = """
Parameters:
  Stage: {Type: String, Default: dev, AllowedValues: [dev, prod]}
  Subnets: {Type: "List<AWS::EC2::Subnet::Id>"}
  Sizes: {Type: CommaDelimitedList, Default: "small, large"}
Mappings:
  Memory: {dev: {size: 128}, prod: {size: 1024}}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  IsDev: !Not [!Condition IsProd]
  Both: !And [!Condition IsDev, !Equals ["a", "a"]]
  Either: !Or [!Condition IsProd, !Equals [1, "1"]]
Resources:
  Queue: {Type: AWS::SQS::Queue}
  ProdOnly: {Type: AWS::SQS::Queue, Condition: IsProd}
"""


def _template(**overrides: str) -> Template:
    document = yaml.load(DOCUMENT, Loader=TemplateLoader)
    return Template(
        document,
        parameter_overrides=overrides,
        region="eu-west-1",
        stack_name="st",
        stack_id="arn:aws:cloudformation:eu-west-1:123456789012:stack/st/1",
    )


def _resolve(text: str, template: Template | None = None) -> Any:
    value = yaml.load(text, Loader=TemplateLoader)
    return Resolver(template or _template(), FakeResources()).resolve(value)


def test_intrinsic_functions_resolve_as_cloudformation_does() -> None:
    assert _resolve("!Ref Stage") == "dev"
    assert _resolve("!Ref AWS::Region") == "eu-west-1"
    assert _resolve("!Ref Queue") == "Queue-physical"
    assert _resolve("!GetAtt Queue.Arn") == "Queue.Arn-value"
    assert _resolve("!GetAtt [Queue, Arn]") == "Queue.Arn-value"
    assert _resolve('!Sub "${AWS::StackName}-${Stage}-${Queue}-${Queue.Arn}-${!Literal}"') == (
        "st-dev-Queue-physical-Queue.Arn-value-${Literal}"
    )
    assert _resolve('!Sub ["${A}/${Stage}", {A: !Ref Queue}]') == "Queue-physical/dev"
    assert _resolve("!If [IsProd, big, small]") == "small"
    assert _resolve("!Join [',', [a, !Ref Stage, 3]]") == "a,dev,3"
    assert _resolve("!Select [1, !Split ['-', a-b-c]]") == "b"
    assert _resolve("!FindInMap [Memory, !Ref Stage, size]") == 128
    assert _resolve("!Select [0, !GetAZs '']") == "eu-west-1a"
    stack_id_part = "!Select [0, !Split ['-', !Select [2, !Split ['/', !Ref AWS::StackId]]]]"
    assert _resolve(stack_id_part) == "1"
    assert _resolve("!Base64 hi") == "aGk="
    assert _resolve("{A: !Ref AWS::NoValue, B: [1, !Ref AWS::NoValue, 2]}") == {"B": [1, 2]}
    assert _resolve("!Ref Sizes") == ["small", "large"]
    assert _resolve("!Ref Subnets") == ["subnet-0local00000000001", "subnet-0local00000000002"]


def test_conditions_and_parameters() -> None:
    dev = _template()
    prod = _template(Stage="prod")
    assert (dev.condition("IsDev"), dev.condition("Both"), dev.condition("Either")) == (
        True,
        True,
        True,
    )
    assert prod.condition("IsProd") is True
    assert "ProdOnly" not in dev.resources
    assert "ProdOnly" in prod.resources
    with pytest.raises(TemplateError, match="its condition leaves it out"):
        _resolve("!Ref ProdOnly", dev)
    with pytest.raises(TemplateError, match=r"Stage='test' is not one of \['dev', 'prod'\]"):
        _template(Stage="test")
    with pytest.raises(TemplateError, match=r"undeclared parameter.*Nope"):
        _template(Nope="1")


def test_globals_merge_like_sam() -> None:
    merged = merge_globals(
        {"Timeout": 3, "Layers": ["a"], "Environment": {"Variables": {"A": "g", "B": "g"}}},
        {"Timeout": 9, "Layers": ["b"], "Environment": {"Variables": {"B": "f"}}},
    )
    assert merged == {
        "Timeout": 9,
        "Layers": ["a", "b"],
        "Environment": {"Variables": {"A": "g", "B": "f"}},
    }
    assert merge_globals({"X": {"Ref": "P"}}, {"X": {"Y": 1}}) == {"X": {"Y": 1}}


def test_an_unsupported_resource_fails_start_up_naming_it(start_cloud: StartCloud) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateError) as failure:
        start_cloud("unsupported.yaml")
    assert "MyTable (AWS::DynamoDB::Table): not emulated" in str(failure.value)
    assert time.monotonic() - started < 2  # refused before anything started


def test_a_custom_resource_runs_at_start_and_its_data_resolves(start_cloud: StartCloud) -> None:
    cloud = start_cloud("custom.yaml")

    (record,) = records(cloud, "ProvisionerFunction")
    event = record["event"]
    assert event["RequestType"] == "Create"
    assert event["LogicalResourceId"] == "Provisioned"
    assert event["ResourceType"] == "Custom::Provisioned"
    assert event["ResponseURL"].startswith("http://127.0.0.1:")
    properties = event["ResourceProperties"]
    assert properties["Count"] == "3"  # CloudFormation sends strings
    assert properties["ServiceToken"] == event["ServiceToken"]
    assert properties["ServiceToken"].endswith(
        ":function:" + properties["ServiceToken"].split(":")[-1]
    )
    assert properties["Bucket"].startswith("local-bucket-")
    assert cloud.outputs == {"Greeting": "hello world", "ProvisionedId": "provisioned-world"}
    # The function that depends on it sees its Data
    consumer_env = cloud.lambdas.spec("ConsumerFunction").environment
    assert consumer_env["GREETING"] == "hello world"


def test_a_failed_custom_resource_fails_start_up(start_cloud: StartCloud, tmp_path: Path) -> None:
    with pytest.raises(TemplateError) as failure:
        start_cloud("custom.yaml", parameter_overrides={"Outcome": "FAILED"})
    assert "Provisioned (Custom::Provisioned): FAILED: asked to fail" in str(failure.value)
