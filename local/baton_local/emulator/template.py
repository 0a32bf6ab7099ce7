"""Reading a CloudFormation / SAM template the way CloudFormation does: the short-form
tags, parameters (defaults, overrides, validation), conditions, the SAM ``Globals``
section, and the intrinsic functions, resolved against whatever provides the
resources (``ResourceLookup``). Nothing here knows about moto or Baton."""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import yaml


class TemplateError(Exception):
    """The template cannot run locally; the message names the resource, parameter or event."""


class PortInUse(TemplateError):
    """A fixed port is taken (another local stack is running, or something else)."""


class _NoValue:
    """``AWS::NoValue``: the property (or list item) disappears."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Any = _NoValue()

ACCOUNT_ID = "123456789012"

# -- YAML with the short-form tags ------------------------------------------------------


class TemplateLoader(yaml.SafeLoader):
    """YAML 1.1 as CloudFormation reads it: every ``!Tag`` becomes its long form, and
    dates stay strings (``AWSTemplateFormatVersion: 2010-09-09`` unquoted)."""


TemplateLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

SHORT_TAGS = (
    "Ref",
    "Condition",
    "GetAtt",
    "Sub",
    "If",
    "Equals",
    "Not",
    "And",
    "Or",
    "Join",
    "Select",
    "Split",
    "FindInMap",
    "Base64",
    "GetAZs",
    "ImportValue",
    "Cidr",
    "Transform",
    "ToJsonString",
    "Length",
)


def _long_form(tag: str) -> Callable[[yaml.SafeLoader, yaml.Node], dict[str, Any]]:
    key = tag if tag in ("Ref", "Condition") else f"Fn::{tag}"

    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if tag == "GetAtt":
                logical_id, _, attribute = str(value).partition(".")
                value = [logical_id, attribute]
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            assert isinstance(node, yaml.MappingNode)
            value = loader.construct_mapping(node, deep=True)
        return {key: value}

    return construct


for _tag in SHORT_TAGS:
    TemplateLoader.add_constructor(f"!{_tag}", _long_form(_tag))


def load_template_file(path: Path) -> dict[str, Any]:
    """A YAML or JSON document with CloudFormation's tags in their long form."""
    try:
        document = yaml.load(path.read_text(), Loader=TemplateLoader)  # noqa: S506 - SafeLoader subclass
    except (OSError, yaml.YAMLError) as exc:
        raise TemplateError(f"{path}: {exc}") from None
    if not isinstance(document, dict):
        raise TemplateError(f"{path}: not a mapping")
    return document


def load_template(path: Path) -> dict[str, Any]:
    """The template document (YAML or JSON), long-form intrinsics only."""
    document = load_template_file(path)
    if not isinstance(document.get("Resources"), dict):
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources section)")
    return document


# -- references ---------------------------------------------------------------------------


class ResourceLookup(Protocol):
    """What intrinsic functions ask of the resources: their ``Ref`` and ``Fn::GetAtt``."""

    def ref(self, logical_id: str) -> Any: ...

    def get_att(self, logical_id: str, attribute: str) -> Any: ...


def is_intrinsic(value: Any) -> bool:
    if not isinstance(value, dict) or len(value) != 1:
        return False
    key = next(iter(value))
    return (
        key == "Ref"
        or key.startswith("Fn::")
        or (key == "Condition" and isinstance(value[key], str))
    )


_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def stringify(value: Any, where: str) -> str:
    """A scalar as CloudFormation turns it into a string (``true``, ``60``, ...)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise TemplateError(f"{where}: expected a string, got {type(value).__name__} {value!r}")


# -- parameters ---------------------------------------------------------------------------

_PLACEHOLDER_IDS = {
    "AWS::EC2::VPC::Id": "vpc-0local00000000000",
    "AWS::EC2::Subnet::Id": "subnet-0local0000000000",
    "AWS::EC2::SecurityGroup::Id": "sg-0local00000000000",
    "AWS::EC2::KeyPair::KeyName": "local-key",
    "AWS::EC2::Image::Id": "ami-0local00000000000",
    "AWS::EC2::AvailabilityZone::Name": "{region}a",
    "AWS::EC2::Instance::Id": "i-0local00000000000",
    "AWS::EC2::Volume::Id": "vol-0local00000000000",
    "AWS::Route53::HostedZone::Id": "Z0LOCAL0000000",
}


def _placeholder(parameter_type: str, region: str) -> Any:
    """A value for an AWS-specific parameter type that has no meaning locally (VPC ids)."""
    if parameter_type.startswith("List<") and parameter_type.endswith(">"):
        single = _placeholder(parameter_type[5:-1], region)
        if single is None:
            return None
        return [f"{single}{n}" for n in (1, 2)]
    value = _PLACEHOLDER_IDS.get(parameter_type)
    return value.format(region=region) if value is not None else None


def resolve_parameters(
    declared: Mapping[str, Any], overrides: Mapping[str, str], region: str
) -> dict[str, Any]:
    """Each parameter's value: override, else default, else a placeholder for AWS-specific
    types (VPC and subnet ids mean nothing locally); validated as CloudFormation would."""
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(f"parameter override for undeclared parameter(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, declaration in declared.items():
        spec = declaration or {}
        parameter_type = str(spec.get("Type", "String"))
        raw: Any
        if name in overrides:
            raw = overrides[name]
        elif "Default" in spec:
            raw = spec["Default"]
        else:
            raw = _placeholder(parameter_type, region)
            if raw is None:
                raise TemplateError(
                    f"parameter {name} ({parameter_type}) has no default: "
                    f"give it with --parameter-overrides {name}=VALUE"
                )
            values[name] = raw
            continue
        values[name] = _validated(name, parameter_type, spec, raw)
    return values


def _validated(name: str, parameter_type: str, spec: Mapping[str, Any], raw: Any) -> Any:
    if parameter_type.startswith("AWS::SSM::Parameter::Value"):
        raise TemplateError(
            f"parameter {name} ({parameter_type}) reads SSM at deploy time: "
            f"give its value with --parameter-overrides {name}=VALUE"
        )
    is_list = parameter_type.startswith("List<") or parameter_type == "CommaDelimitedList"
    if is_list:
        items = raw if isinstance(raw, list) else [p.strip() for p in str(raw).split(",")]
        return [stringify(item, f"parameter {name}") for item in items if item != ""]
    text = stringify(raw, f"parameter {name}")
    allowed = spec.get("AllowedValues")
    if allowed is not None and text not in [stringify(v, name) for v in allowed]:
        raise TemplateError(f"parameter {name}={text!r} is not one of {allowed}")
    pattern = spec.get("AllowedPattern")
    if pattern is not None and re.fullmatch(str(pattern), text) is None:
        raise TemplateError(f"parameter {name}={text!r} does not match {pattern}")
    if "MinLength" in spec and len(text) < int(spec["MinLength"]):
        raise TemplateError(f"parameter {name} is shorter than {spec['MinLength']}")
    if "MaxLength" in spec and len(text) > int(spec["MaxLength"]):
        raise TemplateError(f"parameter {name} is longer than {spec['MaxLength']}")
    if parameter_type == "Number":
        try:
            number = float(text)
        except ValueError:
            raise TemplateError(f"parameter {name}={text!r} is not a number") from None
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise TemplateError(f"parameter {name}={text} is below {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise TemplateError(f"parameter {name}={text} is above {spec['MaxValue']}")
    return text


# -- Globals ----------------------------------------------------------------------------

GLOBALS_SECTIONS = {
    "AWS::Serverless::Function": "Function",
    "AWS::Serverless::Api": "Api",
    "AWS::Serverless::HttpApi": "HttpApi",
    "AWS::Serverless::SimpleTable": "SimpleTable",
    "AWS::Serverless::StateMachine": "StateMachine",
}


def merge_globals(global_value: Any, local_value: Any) -> Any:
    """SAM's rules: a resource's scalar wins, maps merge key by key (the resource wins),
    lists add up (globals first); an intrinsic function counts as a scalar."""
    if is_intrinsic(global_value) or is_intrinsic(local_value):
        return copy.deepcopy(local_value)
    if isinstance(global_value, dict) and isinstance(local_value, dict):
        merged = copy.deepcopy(global_value)
        for key, value in local_value.items():
            merged[key] = (
                merge_globals(merged[key], value) if key in merged else copy.deepcopy(value)
            )
        return merged
    if isinstance(global_value, list) and isinstance(local_value, list):
        return copy.deepcopy(global_value) + copy.deepcopy(local_value)
    return copy.deepcopy(local_value)


IMPLICIT_API = "ServerlessRestApi"


# -- the template ---------------------------------------------------------------------------


class Template:
    """The template with its parameters and conditions evaluated and Globals merged into
    the SAM resources. ``resources`` holds only what the conditions keep."""

    def __init__(
        self,
        document: Mapping[str, Any],
        *,
        parameter_overrides: Mapping[str, str],
        region: str,
        stack_name: str,
        stack_id: str,
    ) -> None:
        self.document = document
        self.region = region
        self.stack_name = stack_name
        self.stack_id = stack_id
        self.mappings: dict[str, Any] = dict(document.get("Mappings") or {})
        self.parameters = resolve_parameters(
            document.get("Parameters") or {}, parameter_overrides, region
        )
        self._condition_specs: dict[str, Any] = dict(document.get("Conditions") or {})
        self._conditions: dict[str, bool] = {}
        self._evaluating: list[str] = []
        self.excluded: dict[str, str] = {}
        self.resources: dict[str, dict[str, Any]] = {}
        globals_section = document.get("Globals") or {}
        declared = document["Resources"]
        for logical_id, resource in declared.items():
            if not isinstance(resource, dict) or "Type" not in resource:
                raise TemplateError(f"{logical_id}: a resource needs a Type")
            condition = resource.get("Condition")
            if condition is not None and not self.condition(str(condition)):
                self.excluded[logical_id] = str(resource["Type"])
                continue
            merged = copy.deepcopy(resource)
            section = GLOBALS_SECTIONS.get(merged["Type"])
            if section and section in globals_section:
                merged["Properties"] = merge_globals(
                    globals_section[section], merged.get("Properties") or {}
                )
            merged.setdefault("Properties", {})
            self.resources[logical_id] = merged
        self._add_implicit_api(globals_section)
        self.outputs: dict[str, Any] = dict(document.get("Outputs") or {})

    def _add_implicit_api(self, globals_section: Mapping[str, Any]) -> None:
        """SAM creates ``ServerlessRestApi`` (stage ``Prod``) for Api events that name no API."""
        for resource in self.resources.values():
            if resource["Type"] != "AWS::Serverless::Function":
                continue
            for event in (resource["Properties"].get("Events") or {}).values():
                if event.get("Type") == "Api" and "RestApiId" not in (
                    event.get("Properties") or {}
                ):
                    properties = merge_globals(
                        globals_section.get("Api") or {}, {"StageName": "Prod"}
                    )
                    self.resources.setdefault(
                        IMPLICIT_API, {"Type": "AWS::Serverless::Api", "Properties": properties}
                    )
                    return

    def condition(self, name: str) -> bool:
        if name in self._conditions:
            return self._conditions[name]
        if name not in self._condition_specs:
            raise TemplateError(f"condition {name} is not declared")
        if name in self._evaluating:
            raise TemplateError(
                f"conditions refer to each other: {' -> '.join([*self._evaluating, name])}"
            )
        self._evaluating.append(name)
        try:
            value = Resolver(self, None).resolve(self._condition_specs[name])
        finally:
            self._evaluating.pop()
        if not isinstance(value, bool):
            raise TemplateError(f"condition {name} is not a boolean: {value!r}")
        self._conditions[name] = value
        return value

    def pseudo_parameter(self, name: str) -> Any:
        values: dict[str, Any] = {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": self.stack_id,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }
        if name not in values:
            raise TemplateError(f"unknown pseudo parameter {name}")
        return values[name]


class Resolver:
    """Evaluates intrinsic functions. ``lookup`` answers ``Ref``/``GetAtt`` of resources
    (None where resources may not be referred to, as in Conditions); ``localize`` is
    applied to every resolved string (e.g. public API URLs -> loopback)."""

    def __init__(
        self,
        template: Template,
        lookup: ResourceLookup | None,
        localize: Callable[[str], str] | None = None,
        where: str = "",
    ) -> None:
        self.template = template
        self.lookup = lookup
        self.localize = localize or (lambda text: text)
        self.where = where

    def resolve(self, value: Any) -> Any:
        result = self._resolve(value)
        return None if result is NO_VALUE else result

    def _error(self, message: str) -> TemplateError:
        return TemplateError(f"{self.where}: {message}" if self.where else message)

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, dict):
            if is_intrinsic(value):
                key, argument = next(iter(value.items()))
                return self._intrinsic(key, argument)
            resolved = {key: self._resolve(item) for key, item in value.items()}
            return {key: item for key, item in resolved.items() if item is not NO_VALUE}
        if isinstance(value, list):
            items = [self._resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if isinstance(value, str):
            return self.localize(value)
        return value

    # -- intrinsic functions --------------------------------------------------------------

    def _intrinsic(self, key: str, argument: Any) -> Any:  # noqa: PLR0911, PLR0912 - a dispatch table
        if key == "Ref":
            return self._ref(str(argument))
        if key == "Condition":
            return self.template.condition(str(argument))
        name = key.removeprefix("Fn::")
        if name == "GetAtt":
            logical_id, attribute = self._get_att_arguments(argument)
            return self._get_att(logical_id, attribute)
        if name == "Sub":
            return self.localize(self._sub(argument))
        if name == "If":
            condition, when_true, when_false = self._arguments(name, argument, 3)
            chosen = when_true if self.template.condition(str(condition)) else when_false
            return self._resolve(chosen)
        if name == "Equals":
            first, second = (self._resolve(item) for item in self._arguments(name, argument, 2))
            return _comparable(first) == _comparable(second)
        if name == "Not":
            (inner,) = self._arguments(name, argument, 1)
            return not self._boolean(inner)
        if name == "And":
            return all(self._boolean(item) for item in self._list(name, argument))
        if name == "Or":
            return any(self._boolean(item) for item in self._list(name, argument))
        if name == "Join":
            delimiter, items = self._arguments(name, argument, 2)
            values = self._resolve(items)
            if not isinstance(values, list):
                raise self._error(f"Fn::Join needs a list, got {values!r}")
            return str(delimiter).join(stringify(item, self.where or "Fn::Join") for item in values)
        if name == "Select":
            index, items = self._arguments(name, argument, 2)
            values = self._resolve(items)
            position = int(self._resolve(index))
            if not isinstance(values, list) or not 0 <= position < len(values):
                raise self._error(f"Fn::Select index {position} out of range of {values!r}")
            return values[position]
        if name == "Split":
            delimiter, text = self._arguments(name, argument, 2)
            return stringify(self._resolve(text), "Fn::Split").split(str(delimiter))
        if name == "FindInMap":
            return self._find_in_map(argument)
        if name == "Base64":
            return base64.b64encode(
                stringify(self._resolve(argument), "Fn::Base64").encode()
            ).decode()
        if name == "GetAZs":
            return [f"{self.template.region}{zone}" for zone in "abc"]
        if name == "ToJsonString":
            return json.dumps(self._resolve(argument), separators=(",", ":"))
        if name == "Length":
            values = self._resolve(argument)
            if not isinstance(values, list):
                raise self._error(f"Fn::Length needs a list, got {values!r}")
            return len(values)
        if name == "ImportValue":
            raise self._error("Fn::ImportValue is not emulated (no other stacks exist locally)")
        raise self._error(f"{key} is not emulated")

    def _arguments(self, name: str, argument: Any, count: int) -> list[Any]:
        if not isinstance(argument, list) or len(argument) != count:
            raise self._error(f"Fn::{name} takes a list of {count}, got {argument!r}")
        return argument

    def _list(self, name: str, argument: Any) -> list[Any]:
        if not isinstance(argument, list):
            raise self._error(f"Fn::{name} takes a list, got {argument!r}")
        return argument

    def _boolean(self, value: Any) -> bool:
        result = self._resolve(value)
        if not isinstance(result, bool):
            raise self._error(f"expected a condition, got {result!r}")
        return result

    def _get_att_arguments(self, argument: Any) -> tuple[str, str]:
        if isinstance(argument, str):
            logical_id, _, attribute = argument.partition(".")
            return logical_id, attribute
        if isinstance(argument, list) and len(argument) == 2:
            return str(argument[0]), str(self._resolve(argument[1]))
        raise self._error(f"Fn::GetAtt takes [resource, attribute], got {argument!r}")

    def _ref(self, name: str) -> Any:
        if name in self.template.parameters:
            return self.template.parameters[name]
        if name.startswith("AWS::"):
            return self.template.pseudo_parameter(name)
        return self._resource(name).ref(name)

    def _get_att(self, logical_id: str, attribute: str) -> Any:
        return self._resource(logical_id).get_att(logical_id, attribute)

    def _resource(self, logical_id: str) -> ResourceLookup:
        if logical_id in self.template.excluded:
            raise self._error(f"{logical_id} is referred to, but its condition leaves it out")
        if logical_id not in self.template.resources:
            raise self._error(f"{logical_id} is neither a parameter nor a resource")
        if self.lookup is None:
            raise self._error(f"{logical_id}: resources cannot be referred to here")
        return self.lookup

    def _sub(self, argument: Any) -> str:
        if isinstance(argument, str):
            text, variables = argument, {}
        elif isinstance(argument, list) and len(argument) == 2 and isinstance(argument[1], dict):
            text, variables = str(argument[0]), argument[1]
        else:
            raise self._error(f"Fn::Sub takes a string or [string, variables], got {argument!r}")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                value = self._resolve(variables[name])
            elif "." in name and not name.startswith("AWS::"):
                logical_id, _, attribute = name.partition(".")
                value = self._get_att(logical_id, attribute)
            else:
                value = self._ref(name)
            return stringify(value, f"${{{name}}}")

        return _SUB_VARIABLE.sub(substitute, text)

    def _find_in_map(self, argument: Any) -> Any:
        if not isinstance(argument, list) or len(argument) not in (3, 4):
            raise self._error(f"Fn::FindInMap takes [map, key, key], got {argument!r}")
        map_name, top, second = (
            stringify(self._resolve(part), "Fn::FindInMap") for part in argument[:3]
        )
        try:
            return self._resolve(self.template.mappings[map_name][top][second])
        except KeyError:
            if (
                len(argument) == 4
                and isinstance(argument[3], dict)
                and "DefaultValue" in argument[3]
            ):
                return self._resolve(argument[3]["DefaultValue"])
            raise self._error(f"Fn::FindInMap: no {map_name}.{top}.{second}") from None


def _comparable(value: Any) -> Any:
    if isinstance(value, bool | int | float):
        return stringify(value, "Fn::Equals")
    return value
