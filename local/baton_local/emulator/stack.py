"""The local stack: every resource of the template created once, on demand, in
dependency order (``DependsOn`` and the references met while resolving properties),
by the provider registered for its type. Types with no local meaning are skipped
(``SKIPPED_TYPES``, a documented allow-list); any other type fails start-up naming
the resource."""

from __future__ import annotations

import fnmatch
import hashlib
import re
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from baton_local.emulator.template import ACCOUNT_ID, Resolver, Template, TemplateError


@dataclass
class Created:
    """What a created resource answers to ``Ref`` and ``Fn::GetAtt``."""

    physical_id: Any
    attributes: dict[str, Any] = field(default_factory=dict)
    delete: Callable[[], object] | None = None


class Provider(Protocol):
    """Creates one resource type locally."""

    def validate(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> None:
        """Fail early (before anything starts) on what cannot run locally."""

    def create(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> Created: ...


# Types that have no local meaning: created as placeholders (their Ref is a made-up id)
# with a one-line note. Everything not here and without a provider fails start-up.
SKIPPED_TYPES: dict[str, str] = {
    "AWS::IAM::Role": "IAM is not enforced locally",
    "AWS::IAM::Policy": "IAM is not enforced locally",
    "AWS::IAM::ManagedPolicy": "IAM is not enforced locally",
    "AWS::IAM::InstanceProfile": "IAM is not enforced locally",
    "AWS::EC2::VPC": "no networks locally",
    "AWS::EC2::Subnet": "no networks locally",
    "AWS::EC2::SecurityGroup": "no networks locally",
    "AWS::EC2::SecurityGroupIngress": "no networks locally",
    "AWS::EC2::SecurityGroupEgress": "no networks locally",
    "AWS::EC2::RouteTable": "no networks locally",
    "AWS::EC2::Route": "no networks locally",
    "AWS::EC2::SubnetRouteTableAssociation": "no networks locally",
    "AWS::EC2::InternetGateway": "no networks locally",
    "AWS::EC2::VPCGatewayAttachment": "no networks locally",
    "AWS::EC2::NatGateway": "no networks locally",
    "AWS::EC2::EIP": "no networks locally",
    "AWS::EC2::VPCEndpoint": "no networks locally",
    "AWS::CloudWatch::Alarm": "no metrics locally",
    "AWS::CloudWatch::CompositeAlarm": "no metrics locally",
    "AWS::CloudWatch::Dashboard": "no metrics locally",
    "AWS::Logs::LogGroup": "function logs go to files in the state directory",
    "AWS::Logs::MetricFilter": "no metrics locally",
    "AWS::Logs::SubscriptionFilter": "logs stay in files locally",
    "AWS::Lambda::Permission": "IAM is not enforced locally",
    "AWS::ApiGateway::Account": "account settings have no local meaning",
    "AWS::CloudFormation::WaitConditionHandle": "nothing waits locally",
    "AWS::SQS::QueuePolicy": "resource policies are not enforced locally",
    "AWS::SNS::TopicPolicy": "resource policies are not enforced locally",
    "AWS::S3::BucketPolicy": "resource policies are not enforced locally",
    "AWS::KMS::Alias": "no encryption locally",
    "AWS::XRay::Group": "no tracing locally",
    "AWS::XRay::SamplingRule": "no tracing locally",
}

# The name a skipped resource answers to Ref, when it has a name property.
_NAME_PROPERTIES = {
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
}


def find_provider(providers: Mapping[str, Provider], resource_type: str) -> Provider | None:
    """The provider of a type; keys may be patterns (``AWS::ElastiCache::*``)."""
    if resource_type in providers:
        return providers[resource_type]
    for pattern, provider in providers.items():
        if "*" in pattern and fnmatch.fnmatchcase(resource_type, pattern):
            return provider
    return None


class Stack:
    """The resources of one template, created locally; answers Ref and GetAtt."""

    def __init__(
        self,
        template: Template,
        providers: Mapping[str, Provider],
        note: Callable[[str], None],
    ) -> None:
        self.template = template
        self.providers = providers
        self.note = note
        self.created: dict[str, Created] = {}
        self._creating: list[str] = []
        self._replacements: list[tuple[re.Pattern[str], str]] = []
        self._suffix_alphabet = string.ascii_uppercase + string.digits

    # -- before anything starts ----------------------------------------------------------

    def validate(self) -> None:
        """Every resource has a provider or is on the skip list, and its provider accepts it."""
        problems: list[str] = []
        for logical_id, resource in self.template.resources.items():
            resource_type = resource["Type"]
            provider = find_provider(self.providers, resource_type)
            if provider is None:
                if resource_type not in SKIPPED_TYPES:
                    problems.append(f"{logical_id} ({resource_type}): not emulated")
                continue
            try:
                provider.validate(self, logical_id, resource)
            except TemplateError as exc:
                problems.append(str(exc))
        for logical_id, resource in self.template.resources.items():
            for dependency in _depends_on(resource):
                if (
                    dependency not in self.template.resources
                    and dependency not in self.template.excluded
                ):
                    problems.append(
                        f"{logical_id}: DependsOn {dependency}, which is not a resource"
                    )
        if problems:
            raise TemplateError("the template cannot run locally:\n  " + "\n  ".join(problems))

    # -- creation --------------------------------------------------------------------------

    def create_all(self) -> None:
        for logical_id in self.template.resources:
            self.ensure(logical_id)

    def ensure(self, logical_id: str) -> Created:
        """Create the resource (and what it depends on) unless it exists already."""
        if logical_id in self.created:
            return self.created[logical_id]
        if logical_id in self._creating:
            cycle = " -> ".join([*self._creating[self._creating.index(logical_id) :], logical_id])
            raise TemplateError(f"circular dependency: {cycle}")
        resource = self.template.resources[logical_id]
        self._creating.append(logical_id)
        try:
            for dependency in _depends_on(resource):
                if dependency in self.template.resources:
                    self.ensure(dependency)
            resource_type = resource["Type"]
            provider = find_provider(self.providers, resource_type)
            if provider is None:
                created = self._skip(logical_id, resource)
            else:
                created = provider.create(self, logical_id, resource)
        finally:
            self._creating.pop()
        self.created[logical_id] = created
        return created

    def _skip(self, logical_id: str, resource: dict[str, Any]) -> Created:
        resource_type = resource["Type"]
        self.note(f"{logical_id} ({resource_type}): skipped, {SKIPPED_TYPES[resource_type]}")
        name_property = _NAME_PROPERTIES.get(resource_type)
        physical_id: Any = None
        if name_property and name_property in resource["Properties"]:
            physical_id = self.resolver(logical_id).resolve(resource["Properties"][name_property])
        if physical_id is None:
            physical_id = self.physical_name(logical_id, 64)
        service = resource_type.split("::")[1].lower()
        kind = resource_type.split("::")[-1].lower()
        arn = f"arn:aws:{service}:{self.template.region}:{ACCOUNT_ID}:{kind}/{physical_id}"
        return Created(physical_id, {"Arn": arn}, None)

    def delete_all(self) -> None:
        """Undo what was created, newest first (best effort: this is teardown)."""
        for created in reversed(list(self.created.values())):
            if created.delete is not None:
                try:
                    created.delete()
                except Exception:  # noqa: S112 - teardown goes on whatever one resource says
                    continue

    # -- ResourceLookup --------------------------------------------------------------------

    def ref(self, logical_id: str) -> Any:
        return self.ensure(logical_id).physical_id

    def get_att(self, logical_id: str, attribute: str) -> Any:
        created = self.ensure(logical_id)
        if attribute in created.attributes:
            return created.attributes[attribute]
        if self.template.resources[logical_id]["Type"] in SKIPPED_TYPES:
            return f"{created.physical_id}.{attribute}"
        known = ", ".join(sorted(created.attributes)) or "none"
        raise TemplateError(
            f"{logical_id}: Fn::GetAtt {attribute} is not emulated (known attributes: {known})"
        )

    # -- helpers for providers -------------------------------------------------------------

    def resolver(self, where: str) -> Resolver:
        return Resolver(self.template, self, self.localize, where)

    def resolve(self, value: Any, where: str) -> Any:
        return self.resolver(where).resolve(value)

    def properties(self, logical_id: str, names: Iterable[str] | None = None) -> dict[str, Any]:
        """The resolved properties of a resource (all, or only ``names``)."""
        raw = self.template.resources[logical_id]["Properties"]
        chosen = raw if names is None else {k: v for k, v in raw.items() if k in set(names)}
        resolved = self.resolve(chosen, logical_id)
        return resolved if isinstance(resolved, dict) else {}

    def stable_id(self, logical_id: str, length: int, alphabet: str | None = None) -> str:
        """An id that looks random but is the same for this stack, region and resource
        every time the stack starts, so that names, URLs and ARNs survive a restart (as
        they survive an update of a deployed stack)."""
        chars = alphabet or self._suffix_alphabet
        seed = f"{self.template.stack_name}/{self.template.region}/{logical_id}".encode()
        digest = int.from_bytes(hashlib.sha256(seed).digest(), "big")
        picked = []
        for _ in range(length):
            digest, index = divmod(digest, len(chars))
            picked.append(chars[index])
        return "".join(picked)

    def physical_name(self, logical_id: str, max_length: int, *, lower: bool = False) -> str:
        """A generated name as CloudFormation makes them: ``<stack>-<logical id>-<suffix>``."""
        suffix = self.stable_id(logical_id, 12)
        stem = f"{self.template.stack_name}-{logical_id}"[: max_length - len(suffix) - 1]
        name = f"{stem}-{suffix}"
        return name.lower() if lower else name

    def add_replacement(self, pattern: str, replacement: str) -> None:
        """Rewrite a public value to its local one in every string resolved from now on."""
        self._replacements.append((re.compile(pattern), replacement))

    def localize(self, text: str) -> str:
        for pattern, replacement in self._replacements:
            text = pattern.sub(_constant(replacement), text)
        return text


def _constant(text: str) -> Callable[[re.Match[str]], str]:
    """A replacement taken literally (``re.sub`` would read backslashes in a string)."""
    return lambda _match: text


def _depends_on(resource: Mapping[str, Any]) -> list[str]:
    depends = resource.get("DependsOn") or []
    return [depends] if isinstance(depends, str) else [str(d) for d in depends]
