"""The one Logger, Tracer and Metrics of the package, imported everywhere else, and the
name, unit and dimension sets of every metric Baton emits (the dashboard, the alarms
and the tests read them from here).

Metrics of the whole service go through ``metrics``, the Powertools singleton, with the
dimension ``service`` alone. Metrics of one algorithm carry their dimensions per call:
``emit`` keeps one Powertools ``EphemeralMetrics`` (an EMF document of its own) per
set of dimension values, and ``metrics.log_metrics``, the decorator every handler
wears, flushes them with the rest at the end of the invocation. So a dispatch round of
fifty tasks writes one EMF line per algorithm and app, not fifty, and a process that
wears no decorator (the ``baton`` console script) prints no EMF among its answers.

Each per-algorithm metric is written with several dimension sets in one EMF document
(``{service, algorithm}``, ``{service, algorithm, app}``, and for the gauges and the
alarms' inputs ``{service}``): CloudWatch neither adds series up across dimensions nor
takes percentiles of a sum, so the per-algorithm series (and the service total the
alarms watch) must be published as such.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

SERVICE = "baton"
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "Baton"
"""Powertools would let an explicit namespace win over its variable: this lets the
variable win, and falls back to the design's ``Baton``."""

# -- logs ------------------------------------------------------------------------------

KEYS_DROPPED = frozenset(
    {"service", "cold_start", "function_name", "function_memory_size", "function_arn"}
)
"""What Powertools would repeat on every line and CloudWatch already has: the log
group names the function (and every function is Baton's), the platform's REPORT line
gives its memory and (as Init Duration) the cold start. Of the Lambda context that
``inject_lambda_context`` adds, only ``function_request_id`` stays."""


class CompactFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON lines, without what every line would repeat for nothing.

    A line is billed by the byte at ingestion: a successful task's lines are kept to a
    few hundred bytes by leaving out what CloudWatch already has (``KEYS_DROPPED``),
    the source location (each message is written at one place, and an exception
    carries its traceback) and the X-Ray trace id (the request id finds the
    invocation, and its trace), and by a short UTC timestamp.
    """

    def __init__(self) -> None:
        super().__init__(
            datefmt="%Y-%m-%dT%H:%M:%S.%FZ",
            utc=True,
            log_record_order=["level", "message", "timestamp"],
            location=None,
            xray_trace_id=None,
        )

    def append_keys(self, **additional_keys: Any) -> None:
        for key in KEYS_DROPPED & additional_keys.keys():
            del additional_keys[key]
        super().append_keys(**additional_keys)


logger = Logger(service=SERVICE, logger_formatter=CompactFormatter())

# -- traces ------------------------------------------------------------------------------

_Handler = TypeVar("_Handler", bound=Callable[..., Any])


def tracing_enabled() -> bool:
    """Whether Powertools' Tracer would trace here: not turned off by
    ``POWERTOOLS_TRACE_DISABLED``, and in Lambda (not SAM's or Chalice's emulators),
    where the X-Ray daemon listens (Powertools' own rule, ``Tracer._is_tracer_disabled``)."""
    if resolve_truthy_env_var_choice(env=os.getenv("POWERTOOLS_TRACE_DISABLED", "false")):
        return False
    in_lambda = bool(os.getenv("LAMBDA_TASK_ROOT"))
    emulated = bool(os.getenv("AWS_SAM_LOCAL") or os.getenv("AWS_CHALICE_CLI_MODE"))
    return in_lambda and not emulated


class LazyTracer:
    """Powertools' Tracer, built (and the X-Ray SDK imported, some 100 ms of a cold
    start) only where tracing is on; elsewhere its decorators leave the function as is.

    Where tracing is on, the Tracer is built when the first handler is decorated, at
    import, as Powertools' own module-level Tracer is: its patching of botocore and the
    HTTP clients must come before any client is made.
    """

    def __init__(self, service: str) -> None:
        self._service = service
        self._tracer: Tracer | None = None

    @property
    def tracer(self) -> Tracer:
        """The Powertools Tracer (built on first use; disabled where tracing is off)."""
        if self._tracer is None:
            from aws_lambda_powertools import Tracer

            self._tracer = Tracer(service=self._service)
        return self._tracer

    @overload
    def capture_lambda_handler(self, lambda_handler: _Handler) -> _Handler: ...

    @overload
    def capture_lambda_handler(
        self,
        lambda_handler: None = None,
        capture_response: bool | None = None,
        capture_error: bool | None = None,
    ) -> Callable[[_Handler], _Handler]: ...

    def capture_lambda_handler(
        self,
        lambda_handler: _Handler | None = None,
        capture_response: bool | None = None,
        capture_error: bool | None = None,
    ) -> _Handler | Callable[[_Handler], _Handler]:
        if lambda_handler is None:
            return functools.partial(
                self.capture_lambda_handler,
                capture_response=capture_response,
                capture_error=capture_error,
            )
        if not tracing_enabled():
            return lambda_handler
        return self.tracer.capture_lambda_handler(
            lambda_handler, capture_response=capture_response, capture_error=capture_error
        )


tracer = LazyTracer(SERVICE)

# -- dimension sets ----------------------------------------------------------------------

BY_SERVICE: tuple[str, ...] = ("service",)
BY_ALGORITHM: tuple[str, ...] = ("service", "algorithm")
BY_APP: tuple[str, ...] = ("service", "algorithm", "app")


@dataclass(frozen=True)
class MetricSpec:
    """A metric Baton emits: its name, unit, and every dimension set it is written with."""

    name: str
    unit: MetricUnit
    dimension_sets: tuple[tuple[str, ...], ...]


def _per_app(name: str, unit: MetricUnit = MetricUnit.Count) -> MetricSpec:
    return MetricSpec(name, unit, (BY_ALGORITHM, BY_APP))


def _per_algorithm(name: str, unit: MetricUnit = MetricUnit.Count) -> MetricSpec:
    return MetricSpec(name, unit, (BY_ALGORITHM, BY_SERVICE))


def _service(name: str) -> MetricSpec:
    return MetricSpec(name, MetricUnit.Count, (BY_SERVICE,))


# Dispatches, by how the algorithm answered (scheduling.dispatch_attempt).
DISPATCH_ACCEPTED = _per_app("DispatchAccepted")
DISPATCH_REJECTED = _per_app("DispatchRejected")
"""A 4xx other than 408/429: the task failed for good."""
DISPATCH_FAILED = _per_app("DispatchFailed")
"""5xx, 408 or no answer: retried with backoff while attempts remain."""
DISPATCH_BUSY = _per_app("DispatchBusy")
"""429, or 503 with Retry-After: the task waits without using up an attempt."""

# Attempts (attempts.end_attempt, completion.complete_attempt).
ATTEMPTS_TIMED_OUT = _per_app("AttemptsTimedOut")
"""Attempts that ran past their deadline. The service total (``{service}``) is the
sweep's own count of the same attempts (sweep.py)."""
CALLBACKS = MetricSpec("Callbacks", MetricUnit.Count, (BY_ALGORITHM, BY_APP, BY_SERVICE))
"""Completion callbacks applied (succeeded or failed)."""

# Final tasks, once per outcome, when its notification is published (outbox).
TASK_OUTCOMES = {
    status: _per_app(f"Tasks{status.title().replace('_', '')}")
    for status in ("succeeded", "failed", "timed_out", "cancelled")
}
QUEUE_WAIT_SECONDS = _per_app("QueueWaitSeconds", MetricUnit.Seconds)
"""Per finished task that was dispatched: its first dispatch minus its acceptance."""
RUN_TIME_SECONDS = _per_app("RunTimeSeconds", MetricUnit.Seconds)
"""Per finished task that was dispatched: its end minus its first dispatch (every
attempt, and the backoffs between them: what its app waited for after the queue)."""

# The sweep's gauges, once a minute per algorithm (gauges.publish_gauges).
PENDING = _per_algorithm("Pending")
QUEUED = _per_algorithm("Queued")
BACKLOG = _per_algorithm("Backlog")
"""Pending plus queued."""
RUNNING = _per_algorithm("Running")
"""Cost in flight (attempts being sent, running, or draining after a cancel)."""
CAPACITY = _per_algorithm("Capacity")
"""The algorithm's ``max_concurrency``."""
PAUSED = _per_algorithm("Paused")
"""1 while the registry or an operator pauses the algorithm, else 0."""
OLDEST_PENDING_AGE_SECONDS = _per_algorithm("OldestPendingAgeSeconds", MetricUnit.Seconds)
"""Since when the oldest task that waits for a dispatch (pending or queued, its
``not_before`` passed) was accepted; 0 when none waits."""
SATURATED = _per_algorithm("Saturated")
"""1 when the cost in flight fills the capacity while tasks that could start wait (and
the algorithm is not paused), else 0."""
GAUGES = (
    PENDING,
    QUEUED,
    BACKLOG,
    RUNNING,
    CAPACITY,
    PAUSED,
    OLDEST_PENDING_AGE_SECONDS,
    SATURATED,
)

CANCELS_ACKNOWLEDGED = _per_algorithm("CancelsAcknowledged")
"""Draining attempts whose service acknowledged the cancel request: slot freed."""
CANCEL_GRACE_EXPIRED = _per_algorithm("CancelGraceExpired")
"""Draining attempts freed at their ``cancel_grace_seconds`` without an acknowledgement."""

# Service-wide counts, through ``metrics``.
TASKS_PROMOTED = _service("TasksPromoted")
RECONCILE_REPAIRS = _service("ReconcileRepairs")
REGISTRY_REJECTED = _service("RegistryRejected")
NOTIFICATIONS_REPUBLISHED = _service("NotificationsRepublished")
SWEEP_ATTEMPTS_TIMED_OUT = _service(ATTEMPTS_TIMED_OUT.name)
"""The sweep's total of ATTEMPTS_TIMED_OUT, the input of the timeout-rate alarm."""

ALL_METRICS: tuple[MetricSpec, ...] = (
    DISPATCH_ACCEPTED,
    DISPATCH_REJECTED,
    DISPATCH_FAILED,
    DISPATCH_BUSY,
    ATTEMPTS_TIMED_OUT,
    CALLBACKS,
    *TASK_OUTCOMES.values(),
    QUEUE_WAIT_SECONDS,
    RUN_TIME_SECONDS,
    *GAUGES,
    CANCELS_ACKNOWLEDGED,
    CANCEL_GRACE_EXPIRED,
    TASKS_PROMOTED,
    RECONCILE_REPAIRS,
    REGISTRY_REJECTED,
    NOTIFICATIONS_REPUBLISHED,
    SWEEP_ATTEMPTS_TIMED_OUT,
)


def emitted_dimension_sets() -> dict[str, set[tuple[str, ...]]]:
    """Every metric name with every dimension set it is written with (sorted names)."""
    found: dict[str, set[tuple[str, ...]]] = {}
    for spec in ALL_METRICS:
        found.setdefault(spec.name, set()).update(
            tuple(sorted(dimensions)) for dimensions in spec.dimension_sets
        )
    return found


# -- per-call dimensions -----------------------------------------------------------------

_DocumentKey = tuple[tuple[tuple[str, str], ...], ...]


class _Documents:
    """One EMF document per set of dimension values, until the handler flushes them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._documents: dict[_DocumentKey, EphemeralMetrics] = {}

    def add(self, spec: MetricSpec, value: float, dimensions: Mapping[str, str]) -> None:
        sets = [names for names in spec.dimension_sets if all(n in dimensions for n in names)]
        key = tuple(tuple((name, dimensions[name]) for name in names) for names in sets)
        with self._lock:
            document = self._documents.get(key)
            if document is None:
                document = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
                first, *others = key
                for name, dimension in first:
                    document.add_dimension(name=name, value=dimension)
                for names in others:
                    document.add_dimensions(**dict(names))
                self._documents[key] = document
            document.add_metric(name=spec.name, unit=spec.unit, value=value)

    def flush(self) -> None:
        with self._lock:
            documents = list(self._documents.values())
            self._documents.clear()
        if not documents or is_metrics_disabled():
            return
        serialized = [cast("dict[str, Any]", d.serialize_metric_set()) for d in documents]
        for line in merged_documents(serialized):
            # As Powertools' flush_metrics writes a document: one line on stdout.
            print(json.dumps(line, separators=(",", ":")))

    def clear(self) -> None:
        with self._lock:
            self._documents.clear()


_documents = _Documents()

EMF_MAX_METRICS = 100
"""CloudWatch takes at most 100 metrics in one EMF document."""


def merged_documents(documents: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """EMF documents whose dimension values agree, as one document each: a document may
    hold several directives (each its own dimension sets and metrics) over one set of
    root values, so the timestamp and the values are written once. A callback's
    ``Callbacks`` and its task's outcome (two sets of dimension sets, one task) make
    one line instead of two."""
    lines: list[dict[str, Any]] = []
    for document in documents:
        directives = document["_aws"]["CloudWatchMetrics"]
        names = {metric["Name"] for directive in directives for metric in directive["Metrics"]}
        root = {key: value for key, value in document.items() if key != "_aws"}
        for line in lines:
            taken = sum(len(d["Metrics"]) for d in line["_aws"]["CloudWatchMetrics"])
            if (
                not names & line.keys()
                and all(line[key] == value for key, value in root.items() if key in line)
                and taken + len(names) <= EMF_MAX_METRICS
            ):
                line["_aws"]["CloudWatchMetrics"].extend(directives)
                line.update(root)
                break
        else:
            lines.append(document)
    return lines


def emit(spec: MetricSpec, value: float, *, algorithm: str, app: str | None = None) -> None:
    """Count ``value`` of ``spec`` for ``algorithm`` (and ``app``, where it applies), in
    each of its dimension sets; written when the handler's invocation ends."""
    dimensions = {"service": SERVICE, "algorithm": algorithm}
    if app is not None:
        dimensions["app"] = app
    _documents.add(spec, value, dimensions)


def count(spec: MetricSpec, value: float = 1) -> None:
    """Count ``value`` of a service-wide ``spec`` (dimension ``service`` alone)."""
    assert spec.dimension_sets == (BY_SERVICE,), f"{spec.name} has per-call dimensions"
    metrics.add_metric(name=spec.name, unit=spec.unit, value=value)


class BatonMetrics(Metrics):
    """Powertools' Metrics, whose flush also writes the documents of ``emit``."""

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        super().flush_metrics(raise_on_empty_metrics=raise_on_empty_metrics)
        _documents.flush()

    def clear_metrics(self) -> None:
        super().clear_metrics()
        _documents.clear()

    def log_metrics(
        self,
        lambda_handler: Callable[..., Any] | None = None,
        capture_cold_start_metric: bool = False,
        raise_on_empty_metrics: bool = False,
        default_dimensions: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Callable[..., Any]:
        options: dict[str, Any] = {
            "capture_cold_start_metric": capture_cold_start_metric,
            "raise_on_empty_metrics": raise_on_empty_metrics,
            "default_dimensions": default_dimensions,
            **kwargs,
        }
        if lambda_handler is None:
            return functools.partial(self.log_metrics, **options)
        decorated = super().log_metrics(lambda_handler, **options)

        @functools.wraps(lambda_handler)
        def handler(*args: Any, **handler_kwargs: Any) -> Any:
            try:
                return decorated(*args, **handler_kwargs)
            finally:
                _documents.flush()

        return handler


metrics = BatonMetrics(namespace=NAMESPACE, service=SERVICE)
