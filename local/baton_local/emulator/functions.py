"""The SAM functions and layers: the local Lambda service (each function's sandbox and
pool of workers, started on first use) and the providers of ``AWS::Serverless::Function``
and of layers (the installed packages stand in for them)."""

from __future__ import annotations

import os
import secrets
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from baton_local.emulator.events import parse_schedule
from baton_local.emulator.lambdas import FunctionPool, FunctionSpec, Invocation
from baton_local.emulator.stack import Created, Stack
from baton_local.emulator.template import ACCOUNT_ID, TemplateError, stringify

SUPPORTED_EVENTS = ("SQS", "Schedule", "ScheduleV2", "Api")
EnvironmentHook = Callable[[str, dict[str, str]], dict[str, str]]
DEFAULT_CONCURRENCY = 4
"""Instances a function may run at once without ReservedConcurrentExecutions: Lambda's
account pool is 1,000, but each local instance is a process with its own cold start."""


RUNTIME_VARIABLES = frozenset(
    {
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_FORMAT",
        "AWS_LAMBDA_LOG_LEVEL",
        "AWS_EXECUTION_ENV",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_SESSION_TOKEN",
        "LAMBDA_TASK_ROOT",
        "_HANDLER",
        "PATH",
        "LANG",
        "TZ",
    }
)
"""What the Lambda runtime sets for the sandbox itself: meaningless outside of one."""


@dataclass
class FunctionDef:
    logical_id: str
    name: str
    arn: str
    resource: dict[str, Any]

    @property
    def events(self) -> dict[str, Any]:
        return dict(self.resource["Properties"].get("Events") or {})


@dataclass
class LambdaSettings:
    """How the local Lambda service runs functions."""

    state_dir: Path
    template_dir: Path
    region: str
    endpoint_url: str = ""
    time_scale: float = 1.0
    concurrency: Mapping[str, int] = field(default_factory=dict)
    default_concurrency: int = DEFAULT_CONCURRENCY
    env_overrides: Mapping[str, Any] = field(default_factory=dict)


class LambdaService:
    """The functions of the stack, each with its pool of instances (worker processes
    started as events need them; with ``prewarm``, the first ones ahead)."""

    def __init__(
        self,
        settings: LambdaSettings,
        record: Callable[[Invocation], None],
        hooks: list[EnvironmentHook],
    ) -> None:
        self.settings = settings
        self.record = record
        self.hooks = hooks
        self.stack: Stack | None = None
        self.functions: dict[str, FunctionDef] = {}
        self.pools: dict[str, FunctionPool] = {}
        self._names: dict[str, str] = {}
        self._lock = threading.RLock()

    def register(self, function: FunctionDef) -> None:
        self.functions[function.logical_id] = function
        for key in (function.logical_id, function.name, function.arn):
            self._names[key] = function.logical_id

    def find(self, reference: str) -> str | None:
        """The logical id of a function given its name, ARN (with or without a
        qualifier) or logical id."""
        if reference in self._names:
            return self._names[reference]
        if reference.startswith("arn:"):
            parts = reference.split(":")
            if len(parts) >= 7 and parts[5] == "function":
                return self._names.get(parts[6])
        return None

    def log_path(self, logical_id: str) -> Path:
        return self.settings.state_dir / "logs" / f"{logical_id}.log"

    def pool(self, logical_id: str) -> FunctionPool:
        with self._lock:
            if logical_id not in self.pools:
                self.pools[logical_id] = self._start(logical_id)
            return self.pools[logical_id]

    def started_pools(self) -> dict[str, FunctionPool]:
        """The pools of the functions started so far, by logical id."""
        with self._lock:
            return dict(self.pools)

    def invoke(
        self,
        logical_id: str,
        event: Any,
        source: str,
        *,
        kind: str = "invoke",
        describe: Callable[[Invocation], str] | None = None,
    ) -> Invocation:
        return self.pool(logical_id).invoke(event, source, kind=kind, describe=describe)

    def prewarm(self, order: list[str]) -> None:
        """Cold-start each function's first instance (or its provisioned concurrency) in
        the background, a few at a time (as many as there are CPUs) so that the first
        ones in ``order`` are ready soonest; further instances start on demand."""
        slots = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))
        pools = [(self.pool(logical_id), self.provisioned(logical_id)) for logical_id in order]

        def warm(pool: FunctionPool, instances: int) -> None:
            try:
                pool.prewarm(instances)
            finally:
                slots.release()

        def run() -> None:
            for pool, instances in pools:
                slots.acquire()
                threading.Thread(target=warm, args=(pool, instances), daemon=True).start()

        threading.Thread(target=run, name="prewarm", daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            pools = list(self.pools.values())
        threads = [threading.Thread(target=pool.stop, daemon=True) for pool in pools]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)

    # -- building a function's sandbox ------------------------------------------------------

    def _start(self, logical_id: str) -> FunctionPool:
        assert self.stack is not None
        function = self.functions[logical_id]
        spec = self.spec(logical_id)
        properties = function.resource["Properties"]
        invoke_config = self.stack.resolve(properties.get("EventInvokeConfig") or {}, logical_id)
        retries = int(invoke_config.get("MaximumRetryAttempts", 2))
        scale = self.settings.time_scale
        return FunctionPool(
            spec,
            self.concurrency(logical_id),
            self.record,
            retry_attempts=retries,
            retry_delays=(60.0 * scale, 120.0 * scale),
        )

    def concurrency(self, logical_id: str) -> int:
        """Most instances at once: the function's own setting (``--concurrency F=N``) or
        the default, never above its ReservedConcurrentExecutions, which alone sets it
        when neither is given for the function."""
        assert self.stack is not None
        reserved = self.stack.properties(logical_id, ["ReservedConcurrentExecutions"]).get(
            "ReservedConcurrentExecutions"
        )
        chosen = self.settings.concurrency.get(logical_id)
        if chosen is None:
            chosen = int(reserved) if reserved is not None else self.settings.default_concurrency
        elif reserved is not None:
            chosen = min(chosen, int(reserved))
        return max(1, chosen)

    def provisioned(self, logical_id: str) -> int:
        """Instances to start ahead: the template's provisioned concurrency, else one."""
        assert self.stack is not None
        config = self.stack.properties(logical_id, ["ProvisionedConcurrencyConfig"]).get(
            "ProvisionedConcurrencyConfig"
        )
        given = (config or {}).get("ProvisionedConcurrentExecutions")
        return max(1, int(given)) if given is not None else 1

    def spec(self, logical_id: str) -> FunctionSpec:
        assert self.stack is not None
        function = self.functions[logical_id]
        keys = ["Environment", "Timeout", "MemorySize", "Handler", "CodeUri", "LoggingConfig"]
        properties = self.stack.properties(logical_id, keys)
        variables = {
            str(name): stringify(value, f"{logical_id} environment variable {name}")
            for name, value in (
                (properties.get("Environment") or {}).get("Variables") or {}
            ).items()
        }
        for hook in self.hooks:
            variables = hook(logical_id, variables)
        variables.update(self._overrides(function))
        code_dir = (self.settings.template_dir / str(properties["CodeUri"])).resolve()
        timeout = float(properties.get("Timeout", 3))
        memory = int(properties.get("MemorySize", 128))
        logging_config = properties.get("LoggingConfig") or {}
        log_format = str(logging_config.get("LogFormat", "Text"))
        log_group = str(logging_config.get("LogGroup") or f"/aws/lambda/{function.name}")
        log_stream = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{secrets.token_hex(16)}"
        handler = str(properties.get("Handler", "app.lambda_handler"))
        runtime = {
            "AWS_REGION": self.settings.region,
            "AWS_DEFAULT_REGION": self.settings.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_ENDPOINT_URL": self.settings.endpoint_url,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
            "AWS_LAMBDA_LOG_GROUP_NAME": log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python{}.{}".format(*sys.version_info[:2]),
            # As `sam local` does: Powertools then leaves X-Ray alone (no daemon locally).
            "AWS_SAM_LOCAL": "true",
            "LAMBDA_TASK_ROOT": str(code_dir),
            "_HANDLER": handler,
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
        }
        if "LogFormat" in logging_config:
            runtime["AWS_LAMBDA_LOG_FORMAT"] = log_format
        if "ApplicationLogLevel" in logging_config:
            runtime["AWS_LAMBDA_LOG_LEVEL"] = str(logging_config["ApplicationLogLevel"])
        variables.update(runtime)
        log_path = self.log_path(logical_id)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        return FunctionSpec(
            logical_id=logical_id,
            name=function.name,
            arn=function.arn,
            code_dir=str(code_dir),
            handler=handler,
            timeout=timeout,
            memory_mb=memory,
            environment=variables,
            log_path=str(log_path),
            log_format=log_format,
        )

    def _overrides(self, function: FunctionDef) -> dict[str, str]:
        """``sam local --env-vars`` format: ``Parameters`` for all, then the function's own
        entry (by logical id or function name). Unlike sam local, variables the template
        does not declare are added too."""
        chosen: dict[str, str] = {}
        for key in ("Parameters", function.name, function.logical_id):
            entry = self.settings.env_overrides.get(key) or {}
            for name, value in entry.items():
                if value is not None:
                    chosen[str(name)] = stringify(value, f"env-vars {key}.{name}")
        return chosen


# -- providers ------------------------------------------------------------------------------


class FunctionProvider:
    """``AWS::Serverless::Function``: its name and ARN; the sandbox starts later."""

    def __init__(self, service: LambdaService) -> None:
        self.service = service

    def validate(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> None:
        where = f"{logical_id} (AWS::Serverless::Function)"
        properties = resource["Properties"]
        if properties.get("PackageType") == "Image":
            raise TemplateError(f"{where}: container image functions are not emulated")
        if "InlineCode" in properties:
            raise TemplateError(f"{where}: InlineCode is not emulated (use CodeUri)")
        runtime = properties.get("Runtime")
        if isinstance(runtime, str) and not runtime.startswith("python"):
            raise TemplateError(f"{where}: runtime {runtime} is not emulated (Python only)")
        code_uri = properties.get("CodeUri")
        if not isinstance(code_uri, str):
            raise TemplateError(f"{where}: CodeUri must be a local directory")
        if not (self.service.settings.template_dir / code_uri).is_dir():
            raise TemplateError(f"{where}: CodeUri {code_uri} is not a directory")
        for name, event in (properties.get("Events") or {}).items():
            self._validate_event(f"{logical_id} event {name}", event or {})

    @staticmethod
    def _validate_event(where: str, event: dict[str, Any]) -> None:
        event_type = event.get("Type")
        if event_type not in SUPPORTED_EVENTS:
            raise TemplateError(f"{where} ({event_type}): not emulated")
        properties = event.get("Properties") or {}
        if event_type == "SQS" and "FilterCriteria" in properties:
            raise TemplateError(f"{where} (SQS): FilterCriteria is not emulated")
        if event_type in ("Schedule", "ScheduleV2"):
            key = "Schedule" if event_type == "Schedule" else "ScheduleExpression"
            expression = properties.get(key)
            if isinstance(expression, str):
                parse_schedule(expression, f"{where} ({event_type})")
        if event_type == "Api" and not {"Path", "Method"} <= set(properties):
            raise TemplateError(f"{where} (Api): Path and Method are required")

    def create(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> Created:
        name = stack.properties(logical_id, ["FunctionName"]).get("FunctionName")
        name = str(name or stack.physical_name(logical_id, 64))
        arn = f"arn:aws:lambda:{stack.template.region}:{ACCOUNT_ID}:function:{name}"
        self.service.register(FunctionDef(logical_id, name, arn, resource))
        return Created(name, {"Arn": arn})


class LayerProvider:
    """Layers are not built: the functions import the packages installed where the
    emulator runs (the project's virtualenv)."""

    def validate(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> None:
        """Any layer is accepted."""

    def create(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> Created:
        name = stack.properties(logical_id, ["LayerName"]).get("LayerName") or logical_id
        stack.note(f"{logical_id} ({resource['Type']}): not built, the installed packages stand in")
        arn = f"arn:aws:lambda:{stack.template.region}:{ACCOUNT_ID}:layer:{name}:1"
        return Created(arn, {"LayerVersionArn": arn})
