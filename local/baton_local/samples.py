"""Sample algorithm services for ``baton local --samples``: the stack comes up with
algorithms that answer, so that a task sent by hand succeeds.

They are the demo's services (``baton_local.demo.algorithms``), registered under the
template's own example names as well as the demo's: ``ocr`` (text statistics of the
document), ``nlp`` (its keywords), and ``text-stats``, ``keywords`` and ``classify``.
A document is named as a business app would name it (``s3://docs/contract-17.pdf``):
each one stands for the sample document of its kind (contract, invoice, form or
letter) in ``demo/documents``; the sample documents' own names work too.

Each service verifies its requests with its algorithm's signing secret (what ``baton
algorithm secret --local <name>`` prints), handed over once the stack is up
(``use_secrets``), and takes Baton's cancel requests at its ``cancel_url``, beside
its endpoint.

``--samples`` also makes the queue a business app would have: ``local-notifications``,
subscribed to the notification topic with raw delivery, where every notification lands.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from baton_local.demo.algorithms import SERVICES, AlgorithmService, ServiceSpec, load_corpus
from baton_local.signing import algorithm_secrets, stack_signing_keys

if TYPE_CHECKING:
    from baton_local.emulator.cloud import LocalCloud

KINDS = ("contract", "invoice", "form", "letter")
NOTIFICATION_QUEUE = "notifications"
"""The sample subscriber queue, named ``<stack>-notifications``."""


class DocumentShelf(Mapping[str, str]):
    """The sample documents, found by their own name or by any reference that names a
    kind of document (``s3://docs/contract-17.pdf`` is one of the contracts, always the
    same one); iterating gives the sample documents themselves."""

    def __init__(self, documents: Mapping[str, str]) -> None:
        self._documents = dict(documents)

    def __getitem__(self, reference: str) -> str:
        if reference in self._documents:
            return self._documents[reference]
        name = reference.rsplit("/", 1)[-1].lower()
        for kind in KINDS:
            if re.search(rf"(^|[^a-z]){kind}", name):
                shelf = sorted(d for d in self._documents if d.startswith(f"{kind}-"))
                if shelf:
                    pick = int(hashlib.sha256(reference.encode()).hexdigest(), 16) % len(shelf)
                    return self._documents[shelf[pick]]
        raise KeyError(reference)

    def __iter__(self) -> Iterator[str]:
        return iter(self._documents)

    def __len__(self) -> int:
        return len(self._documents)


@dataclass(frozen=True)
class Sample:
    """One registered algorithm: the service that does its work and its registry entry."""

    algorithm: str
    service: ServiceSpec
    timeout_seconds: int
    max_timeout_seconds: int
    max_attempts: int

    def registry_entry(self, service: AlgorithmService) -> dict[str, Any]:
        """The service's own entry (its endpoints, caps and rate limit) with this
        sample's timeouts and attempts."""
        return service.registry_entry() | {
            "timeout_seconds": self.timeout_seconds,
            "max_timeout_seconds": self.max_timeout_seconds,
            "max_attempts": self.max_attempts,
        }


def _demo_service(name: str) -> ServiceSpec:
    return next(spec for spec in SERVICES if spec.name == name)


# ocr and nlp take the README's first message as it is (timeout_seconds 600).
SAMPLES = (
    Sample(
        "ocr",
        replace(_demo_service("text-stats"), max_concurrency=4, latency=(0.3, 1.0)),
        timeout_seconds=900,
        max_timeout_seconds=3600,
        max_attempts=3,
    ),
    Sample(
        "nlp",
        replace(
            _demo_service("keywords"), max_concurrency=8, latency=(0.3, 1.0), rebuild_every=0.0
        ),
        timeout_seconds=600,
        max_timeout_seconds=3600,
        max_attempts=3,
    ),
    *(
        Sample(
            spec.name, spec, spec.timeout_seconds, max(spec.timeout_seconds, 60), spec.max_attempts
        )
        for spec in SERVICES
    ),
)


@dataclass
class SampleServices:
    """The sample services on loopback, their registry, and the subscriber queue."""

    samples: tuple[Sample, ...] = SAMPLES
    services: dict[str, AlgorithmService] = field(default_factory=dict)
    queue_url: str = ""

    def start(self) -> dict[str, Any]:
        """Start every service; the registry (``AlgorithmsJson``) that points at them."""
        shelf = DocumentShelf(load_corpus())
        for sample in self.samples:
            self.services[sample.algorithm] = AlgorithmService(sample.service, shelf).start()
        return self.registry()

    def use_secrets(self, cloud: LocalCloud) -> None:
        """Hand each service its algorithm's signing secrets, from the running stack."""
        keys = stack_signing_keys(cloud)
        for name, service in self.services.items():
            service.use_secrets(algorithm_secrets(keys, name))

    def registry(self) -> dict[str, Any]:
        return {
            sample.algorithm: sample.registry_entry(self.services[sample.algorithm])
            for sample in self.samples
        }

    def subscribe(self, cloud: LocalCloud, topic_output: str = "NotificationTopicArn") -> str:
        """Create the subscriber queue and subscribe it to the stack's topic."""
        session = cloud.boto_session()
        sqs, sns = session.client("sqs"), session.client("sns")
        name = f"{cloud.options.stack_name}-{NOTIFICATION_QUEUE}"
        self.queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(
            TopicArn=str(cloud.outputs[topic_output]),
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true"},
        )
        cloud.add_info(
            "samples",
            {
                "notification_queue_url": self.queue_url,
                "algorithms": {name: s.endpoint for name, s in self.services.items()},
                "cancel_urls": {name: s.cancel_url for name, s in self.services.items()},
            },
            environment={"NotificationQueueUrl": self.queue_url},
        )
        return self.queue_url

    def describe(self) -> list[str]:
        lines = [
            f"sample {name:<10} {service.endpoint}  (cap {service.spec.max_concurrency})"
            for name, service in self.services.items()
        ]
        if self.queue_url:
            lines.append(f"notifications land in {self.queue_url}")
        return lines

    def stop(self) -> None:
        for service in self.services.values():
            service.stop()


def registry_json(registry: Mapping[str, Any]) -> str:
    return json.dumps(registry, separators=(",", ":"))
