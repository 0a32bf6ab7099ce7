"""AWS from moto, served in-process on a loopback port (so presigned S3 URLs work over
real HTTP), and the providers that create the template's queues, topics, buckets,
secrets and parameters in it."""

from __future__ import annotations

import json
import logging
import math
import secrets
import socket
import string
from typing import TYPE_CHECKING, Any

import boto3
from moto.server import ThreadedMotoServer

from baton_local.emulator.stack import Created, Stack
from baton_local.emulator.template import PortInUse, TemplateError, stringify

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_secretsmanager.type_defs import TagTypeDef
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_ssm import SSMClient

MOTO_CUSTOM_ID_TAG = "_custom_id_"
DUMMY_KEY_ID = "testing"
DUMMY_SECRET = "testing"  # noqa: S105 - moto accepts any credentials


class LocalSession(boto3.session.Session):
    """A boto3 session whose clients and resources talk to the local moto server.

    The endpoint is passed to every client explicitly, so neither ``AWS_ENDPOINT_URL``
    nor a profile of the calling process can point it elsewhere."""

    def __init__(self, endpoint_url: str, region: str) -> None:
        super().__init__(
            aws_access_key_id=DUMMY_KEY_ID,
            aws_secret_access_key=DUMMY_SECRET,
            aws_session_token=DUMMY_SECRET,
            region_name=region,
        )
        self.endpoint_url = endpoint_url

    def client(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("endpoint_url", self.endpoint_url)
        return super().client(*args, **kwargs)

    def resource(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("endpoint_url", self.endpoint_url)
        return super().resource(*args, **kwargs)


class MotoServer:
    """``moto.server.ThreadedMotoServer`` on 127.0.0.1, on ``port`` (0: a free one)."""

    def __init__(self, port: int = 0) -> None:
        # moto answers through werkzeug, which logs every request line on stderr.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.port = port
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.endpoint_url = ""

    def start(self) -> str:
        # moto binds in its own thread and would wait forever on a port that is taken.
        if self.port:
            ensure_free_port(self.port, "AWS (moto)")
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        return self.endpoint_url

    def stop(self) -> None:
        """Stop serving and free the port (a restart may want it at once); the
        server's loop notices within half a second."""
        if self.endpoint_url:
            self._server.stop()
            server = self._server._server
            if server is not None:
                server.server_close()
            self.endpoint_url = ""


def ensure_free_port(port: int, what: str) -> None:
    """Fail naming ``what`` when 127.0.0.1:``port`` cannot be listened on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise PortInUse(
                f"{what}: port {port} is not free ({exc.strerror}); is another local stack running?"
            ) from None


class LocalAws:
    """Clients of the local moto server, shared by the providers (boto3 clients are
    thread-safe). Created before moto starts (validation needs none), connected after."""

    def __init__(self, time_scale: float) -> None:
        self.time_scale = time_scale
        self.region = ""
        self._session: LocalSession | None = None
        self._clients: dict[str, Any] = {}

    def connect(self, session: LocalSession) -> None:
        self._session = session
        self.region = str(session.region_name)
        self._clients.clear()

    def _client(self, service: str) -> Any:
        if self._session is None:
            raise RuntimeError("moto is not started")
        if service not in self._clients:
            self._clients[service] = self._session.client(service)
        return self._clients[service]

    @property
    def sqs(self) -> SQSClient:
        return self._client("sqs")  # type: ignore[no-any-return]

    @property
    def sns(self) -> SNSClient:
        return self._client("sns")  # type: ignore[no-any-return]

    @property
    def s3(self) -> S3Client:
        return self._client("s3")  # type: ignore[no-any-return]

    @property
    def secretsmanager(self) -> SecretsManagerClient:
        return self._client("secretsmanager")  # type: ignore[no-any-return]

    @property
    def ssm(self) -> SSMClient:
        return self._client("ssm")  # type: ignore[no-any-return]

    def scaled_seconds(self, seconds: Any) -> int:
        """A duration of the template in local time (the tick makes a minute shorter);
        whole seconds, at least 1 unless it was 0."""
        value = float(seconds)
        if value <= 0:
            return 0
        return max(1, math.ceil(value * self.time_scale))


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


class _Base:
    def __init__(self, aws: LocalAws) -> None:
        self.aws = aws

    def validate(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> None:
        """Nothing to check before start-up."""


# -- SQS --------------------------------------------------------------------------------

_QUEUE_ATTRIBUTES = (
    "MessageRetentionPeriod",
    "MaximumMessageSize",
    "ReceiveMessageWaitTimeSeconds",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
)


class QueueProvider(_Base):
    """``AWS::SQS::Queue`` with its attributes and RedrivePolicy. VisibilityTimeout and
    DelaySeconds are scaled by the tick, so retries come in seconds, not minutes."""

    def create(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> Created:
        properties = stack.properties(logical_id)
        fifo = _flag(properties.get("FifoQueue"))
        name = properties.get("QueueName") or (
            stack.physical_name(logical_id, 75 if fifo else 80) + (".fifo" if fifo else "")
        )
        attributes = {
            key: stringify(properties[key], f"{logical_id}.{key}")
            for key in _QUEUE_ATTRIBUTES
            if key in properties
        }
        attributes["VisibilityTimeout"] = str(
            self.aws.scaled_seconds(properties.get("VisibilityTimeout", 30))
        )
        if "DelaySeconds" in properties:
            attributes["DelaySeconds"] = str(self.aws.scaled_seconds(properties["DelaySeconds"]))
        for key in ("RedrivePolicy", "RedriveAllowPolicy"):
            if key in properties:
                value = properties[key]
                attributes[key] = value if isinstance(value, str) else json.dumps(value)
        sqs = self.aws.sqs
        url = sqs.create_queue(QueueName=str(name), Attributes=attributes)["QueueUrl"]  # type: ignore[arg-type]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        return Created(
            url,
            {"Arn": arn, "QueueName": str(name), "QueueUrl": url},
            delete=lambda: sqs.delete_queue(QueueUrl=url),
        )


# -- SNS --------------------------------------------------------------------------------

_SKIPPED_PROTOCOLS = {"email", "email-json", "sms"}
_DELIVERED_PROTOCOLS = {"sqs", "http", "https"}


def _check_protocol(where: str, protocol: Any) -> None:
    if isinstance(protocol, str) and protocol not in _SKIPPED_PROTOCOLS | _DELIVERED_PROTOCOLS:
        raise TemplateError(f"{where}: SNS subscriptions with protocol {protocol} are not emulated")


class TopicProvider(_Base):
    """``AWS::SNS::Topic`` (with inline Subscription entries)."""

    def validate(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> None:
        for entry in resource["Properties"].get("Subscription") or []:
            if isinstance(entry, dict):
                _check_protocol(f"{logical_id} (AWS::SNS::Topic)", entry.get("Protocol"))

    def create(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> Created:
        properties = stack.properties(logical_id)
        fifo = _flag(properties.get("FifoTopic"))
        name = properties.get("TopicName") or (
            stack.physical_name(logical_id, 251 if fifo else 256) + (".fifo" if fifo else "")
        )
        attributes: dict[str, str] = {
            key: stringify(properties[key], f"{logical_id}.{key}")
            for key in ("DisplayName", "KmsMasterKeyId", "FifoTopic", "ContentBasedDeduplication")
            if key in properties
        }
        sns = self.aws.sns
        arn = sns.create_topic(Name=str(name), Attributes=attributes)["TopicArn"]
        for entry in properties.get("Subscription") or []:
            protocol = str(entry["Protocol"])
            if protocol in _SKIPPED_PROTOCOLS:
                stack.note(f"{logical_id}: {protocol} subscription skipped (no mail locally)")
                continue
            sns.subscribe(TopicArn=arn, Protocol=protocol, Endpoint=str(entry["Endpoint"]))
        return Created(
            arn,
            {"TopicArn": arn, "TopicName": str(name)},
            delete=lambda: sns.delete_topic(TopicArn=arn),
        )


class SubscriptionProvider(_Base):
    """``AWS::SNS::Subscription`` to SQS or HTTP(S); e-mail and SMS ones are skipped."""

    def validate(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> None:
        _check_protocol(
            f"{logical_id} (AWS::SNS::Subscription)", resource["Properties"].get("Protocol")
        )

    def create(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> Created:
        protocol = str(stack.properties(logical_id, ["Protocol"]).get("Protocol"))
        _check_protocol(f"{logical_id} (AWS::SNS::Subscription)", protocol)
        if protocol in _SKIPPED_PROTOCOLS:
            stack.note(
                f"{logical_id} (AWS::SNS::Subscription): {protocol} skipped (no mail locally)"
            )
            return Created(f"{logical_id}-skipped")
        properties = stack.properties(logical_id)
        attributes: dict[str, str] = {}
        for key in ("RawMessageDelivery", "FilterPolicyScope"):
            if key in properties:
                attributes[key] = stringify(properties[key], f"{logical_id}.{key}")
        for key in ("FilterPolicy", "RedrivePolicy", "DeliveryPolicy"):
            if key in properties:
                value = properties[key]
                attributes[key] = value if isinstance(value, str) else json.dumps(value)
        sns = self.aws.sns
        arn = sns.subscribe(
            TopicArn=str(properties["TopicArn"]),
            Protocol=protocol,
            Endpoint=str(properties["Endpoint"]),
            Attributes=attributes,
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]
        return Created(arn, {"Arn": arn}, delete=lambda: sns.unsubscribe(SubscriptionArn=arn))


# -- S3 -----------------------------------------------------------------------------------


class BucketProvider(_Base):
    """``AWS::S3::Bucket``: created with its versioning and CORS rules; encryption,
    lifecycle, ownership and public access settings are accepted, not enforced."""

    def validate(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> None:
        if "NotificationConfiguration" in resource["Properties"]:
            raise TemplateError(
                f"{logical_id} (AWS::S3::Bucket): NotificationConfiguration is not emulated"
            )

    def create(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> Created:
        properties = stack.properties(logical_id)
        name = str(properties.get("BucketName") or stack.physical_name(logical_id, 63, lower=True))
        s3 = self.aws.s3
        if self.aws.region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(
                Bucket=name,
                CreateBucketConfiguration={"LocationConstraint": self.aws.region},  # type: ignore[typeddict-item]
            )
        versioning = (properties.get("VersioningConfiguration") or {}).get("Status")
        if versioning:
            s3.put_bucket_versioning(
                Bucket=name,
                VersioningConfiguration={"Status": str(versioning)},  # type: ignore[typeddict-item]
            )
        cors = (properties.get("CorsConfiguration") or {}).get("CorsRules")
        if cors:
            s3.put_bucket_cors(
                Bucket=name,
                CORSConfiguration={"CORSRules": [_cors_rule(rule) for rule in cors]},
            )
        region = self.aws.region
        return Created(
            name,
            {
                "Arn": f"arn:aws:s3:::{name}",
                "DomainName": f"{name}.s3.amazonaws.com",
                "RegionalDomainName": f"{name}.s3.{region}.amazonaws.com",
                "DualStackDomainName": f"{name}.s3.dualstack.{region}.amazonaws.com",
                "WebsiteURL": f"http://{name}.s3-website.{region}.amazonaws.com",
            },
            delete=lambda: _empty_and_delete(s3, name),
        )


def _cors_rule(rule: dict[str, Any]) -> Any:
    renamed = {"ExposedHeaders": "ExposeHeaders", "MaxAge": "MaxAgeSeconds", "Id": "ID"}
    return {renamed.get(key, key): value for key, value in rule.items()}


def _empty_and_delete(s3: S3Client, bucket: str) -> None:
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket):
        doomed = [
            {"Key": item["Key"], "VersionId": item["VersionId"]}
            for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
        ]
        if doomed:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed})  # type: ignore[typeddict-item]
    s3.delete_bucket(Bucket=bucket)


# -- Secrets Manager and SSM ------------------------------------------------------------------


def generate_secret_string(spec: dict[str, Any]) -> str:
    """``GenerateSecretString`` as Secrets Manager does it: a random password with the
    requested character classes, optionally put into ``SecretStringTemplate`` under
    ``GenerateStringKey``."""
    length = int(spec.get("PasswordLength", 32))
    excluded = set(str(spec.get("ExcludeCharacters", "")))
    classes = []
    if not _flag(spec.get("ExcludeLowercase")):
        classes.append(string.ascii_lowercase)
    if not _flag(spec.get("ExcludeUppercase")):
        classes.append(string.ascii_uppercase)
    if not _flag(spec.get("ExcludeNumbers")):
        classes.append(string.digits)
    if not _flag(spec.get("ExcludePunctuation")):
        classes.append(string.punctuation)
    if _flag(spec.get("IncludeSpace")):
        classes.append(" ")
    classes = ["".join(c for c in chars if c not in excluded) for chars in classes]
    classes = [chars for chars in classes if chars]
    if not classes:
        raise TemplateError("GenerateSecretString excludes every character")
    alphabet = "".join(classes)
    while True:
        password = "".join(secrets.choice(alphabet) for _ in range(length))
        require_each = spec.get("RequireEachIncludedType", True)
        if not _flag(require_each) or length < len(classes):
            break
        if all(any(c in chars for c in password) for chars in classes):
            break
    template = spec.get("SecretStringTemplate")
    if template is None:
        return password
    document = json.loads(str(template))
    document[str(spec.get("GenerateStringKey", "password"))] = password
    return json.dumps(document)


def stable_secret_suffix(stack: Stack, logical_id: str) -> list[TagTypeDef]:
    """The tag that has moto end the secret's ARN in a suffix of our choosing (Secrets
    Manager adds six random letters), so that the ARN survives a restart."""
    suffix = stack.stable_id(logical_id, 6, string.ascii_letters)
    return [{"Key": MOTO_CUSTOM_ID_TAG, "Value": suffix}]


class SecretProvider(_Base):
    """``AWS::SecretsManager::Secret`` with SecretString or GenerateSecretString."""

    def create(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> Created:
        properties = stack.properties(logical_id)
        name = str(properties.get("Name") or stack.physical_name(logical_id, 128))
        if "SecretString" in properties:
            value = str(properties["SecretString"])
        else:
            value = generate_secret_string(properties.get("GenerateSecretString") or {})
        client = self.aws.secretsmanager
        arn = client.create_secret(
            Name=name,
            SecretString=value,
            Description=str(properties.get("Description", "")),
            Tags=stable_secret_suffix(stack, logical_id),
        )["ARN"]
        return Created(
            arn,
            {"Id": arn},
            delete=lambda: client.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True),
        )


class ParameterProvider(_Base):
    """``AWS::SSM::Parameter`` (String or StringList)."""

    def create(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> Created:
        properties = stack.properties(logical_id)
        name = str(properties.get("Name") or f"CFN-{logical_id}-{stack.stable_id(logical_id, 12)}")
        parameter_type = str(properties.get("Type", "String"))
        value = stringify(properties.get("Value"), f"{logical_id}.Value")
        extra: dict[str, Any] = {}
        for key in ("Description", "AllowedPattern", "Tier", "DataType"):
            if key in properties:
                extra[key] = str(properties[key])
        client = self.aws.ssm
        client.put_parameter(Name=name, Value=value, Type=parameter_type, Overwrite=True, **extra)  # type: ignore[arg-type]
        return Created(
            name,
            {"Type": parameter_type, "Value": value},
            delete=lambda: client.delete_parameter(Name=name),
        )


def aws_providers(aws: LocalAws) -> dict[str, Any]:
    return {
        "AWS::SQS::Queue": QueueProvider(aws),
        "AWS::SNS::Topic": TopicProvider(aws),
        "AWS::SNS::Subscription": SubscriptionProvider(aws),
        "AWS::S3::Bucket": BucketProvider(aws),
        "AWS::SecretsManager::Secret": SecretProvider(aws),
        "AWS::SSM::Parameter": ParameterProvider(aws),
    }
