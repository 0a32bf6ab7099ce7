"""The CloudWatch EMF documents Powertools prints on stdout, read back as CloudWatch
would: each metric of a document counted once in each of its dimension sets."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Datapoint:
    namespace: str
    name: str
    unit: str
    dimensions: tuple[tuple[str, str], ...]
    values: tuple[float, ...]

    @property
    def dimension_names(self) -> tuple[str, ...]:
        return tuple(sorted(name for name, _ in self.dimensions))


def emf_documents(stdout: str) -> list[dict[str, Any]]:
    documents = []
    for line in stdout.splitlines():
        if line.startswith('{"_aws":'):
            documents.append(json.loads(line))
    return documents


def datapoints(documents: Iterable[Mapping[str, Any]]) -> list[Datapoint]:
    found = []
    for document in documents:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for names in directive["Dimensions"]:
                dimensions = tuple(sorted((name, str(document[name])) for name in names))
                for metric in directive["Metrics"]:
                    raw = document[metric["Name"]]
                    values = tuple(float(v) for v in (raw if isinstance(raw, list) else [raw]))
                    found.append(
                        Datapoint(
                            directive["Namespace"],
                            metric["Name"],
                            metric.get("Unit", ""),
                            dimensions,
                            values,
                        )
                    )
    return found


class Metrics:
    """The datapoints of one run, looked up by name and exact dimensions."""

    def __init__(self, stdout: str) -> None:
        self.points = datapoints(emf_documents(stdout))

    def values(self, name: str, **dimensions: str) -> list[float]:
        """Every value of ``name`` in the series with exactly ``dimensions``."""
        wanted = tuple(sorted(dimensions.items()))
        return [
            value
            for point in self.points
            if point.name == name and point.dimensions == wanted
            for value in point.values
        ]

    def total(self, name: str, **dimensions: str) -> float:
        return sum(self.values(name, **dimensions))

    def last(self, name: str, **dimensions: str) -> float:
        values = self.values(name, **dimensions)
        assert values, f"no {name} with {dimensions}"
        return values[-1]
