"""The SAM side of the stack: functions (the local Lambda service), layers (the installed
packages stand in for them), REST APIs and custom resources."""

from __future__ import annotations

import json
import os
import re
import secrets
import string
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from baton.local.events import parse_schedule
from baton.local.gateway import ANY, HTTP_METHODS, RestApi, Route
from baton.local.lambdas import FunctionPool, FunctionSpec, Invocation
from baton.local.stack import Created, Stack
from baton.local.template import (
    ACCOUNT_ID,
    IMPLICIT_API,
    TemplateError,
    is_intrinsic,
    load_template_file,
    stringify,
)

SUPPORTED_EVENTS = ("SQS", "Schedule", "ScheduleV2", "Api")
EnvironmentHook = Callable[[str, dict[str, str]], dict[str, str]]


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
    env_overrides: Mapping[str, Any] = field(default_factory=dict)


class LambdaService:
    """The functions of the stack, each with its pool of worker processes (started on
    first use, or ahead with ``prewarm``)."""

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

    def invoke(self, logical_id: str, event: Any, source: str) -> Invocation:
        return self.pool(logical_id).invoke(event, source)

    def prewarm(self, order: list[str]) -> None:
        """Cold-start every function's workers in the background, a few at a time (as
        many as there are CPUs) so that the first ones in ``order`` are ready soonest."""
        slots = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))
        pools = [self.pool(logical_id) for logical_id in order]

        def warm(pool: FunctionPool) -> None:
            try:
                pool.prewarm()
            finally:
                slots.release()

        def run() -> None:
            for pool in pools:
                slots.acquire()
                threading.Thread(target=warm, args=(pool,), daemon=True).start()

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
        concurrency = self.settings.concurrency.get(logical_id)
        if concurrency is None:
            has_sqs = any(e.get("Type") == "SQS" for e in function.events.values())
            concurrency = 2 if has_sqs else 1
        reserved = self.stack.properties(logical_id, ["ReservedConcurrentExecutions"]).get(
            "ReservedConcurrentExecutions"
        )
        if reserved is not None:
            concurrency = max(1, min(concurrency, int(reserved)))
        invoke_config = self.stack.resolve(properties.get("EventInvokeConfig") or {}, logical_id)
        retries = int(invoke_config.get("MaximumRetryAttempts", 2))
        scale = self.settings.time_scale
        return FunctionPool(
            spec,
            concurrency,
            self.record,
            retry_attempts=retries,
            retry_delays=(60.0 * scale, 120.0 * scale),
        )

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


def _api_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(10))


class ApiProvider:
    """``AWS::Serverless::Api``: an id and a bound loopback port now (so its public URL can
    be rewritten to the local one wherever it is built); routes once every function exists."""

    def __init__(self, service: LambdaService, apis: dict[str, RestApi]) -> None:
        self.service = service
        self.apis = apis

    def validate(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> None:
        properties = resource["Properties"]
        where = f"{logical_id} (AWS::Serverless::Api)"
        uri = properties.get("DefinitionUri")
        if uri is not None and not isinstance(uri, str):
            raise TemplateError(f"{where}: DefinitionUri must be a local file")
        if isinstance(uri, str) and not (self.service.settings.template_dir / uri).is_file():
            raise TemplateError(f"{where}: DefinitionUri {uri} is not a file")

    def create(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> Created:
        stage = stack.properties(logical_id, ["StageName"]).get("StageName")
        if not stage:
            raise TemplateError(f"{logical_id} (AWS::Serverless::Api): StageName is required")
        api = RestApi(logical_id, _api_id(), str(stage), stack.template.region, self._invoke)
        self.apis[logical_id] = api
        host = re.escape(api.public_host)
        stack.add_replacement(f"https://{host}", api.local_root)
        stack.add_replacement(host, f"127.0.0.1:{api.port}")
        for problem in ("Auth", "Cors"):
            if problem in resource["Properties"]:
                stack.note(f"{logical_id}: {problem} is not emulated")
        return Created(api.api_id, {"RootResourceId": secrets.token_hex(5)})

    def _invoke(self, logical_id: str, event: dict[str, Any], source: str) -> Invocation:
        return self.service.invoke(logical_id, event, source)

    def wire(self, stack: Stack, logical_id: str) -> None:
        """Routes from the OpenAPI body and from the functions' Api events."""
        api = self.apis[logical_id]
        properties = stack.properties(
            logical_id, ["Variables", "BinaryMediaTypes", "GatewayResponses"]
        )
        api.stage_variables = {
            str(k): str(v) for k, v in (properties.get("Variables") or {}).items()
        }
        api.binary_media_types = [str(t) for t in properties.get("BinaryMediaTypes") or []]
        api.gateway_responses = dict(properties.get("GatewayResponses") or {})
        for route in self._definition_routes(stack, logical_id, api):
            api.add_route(route)
        for function in self.service.functions.values():
            for name, event in function.events.items():
                if event.get("Type") != "Api":
                    continue
                event_properties = stack.resolve(
                    event.get("Properties") or {}, f"{function.logical_id} event {name}"
                )
                target = event_properties.get(
                    "RestApiId", IMPLICIT_API if logical_id == IMPLICIT_API else None
                )
                if target not in (logical_id, api.api_id):
                    continue
                method = str(event_properties["Method"]).upper()
                api.add_route(
                    Route(
                        ANY if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else method,
                        str(event_properties["Path"]),
                        function.logical_id,
                    )
                )

    def _definition_routes(self, stack: Stack, logical_id: str, api: RestApi) -> list[Route]:
        resource = stack.template.resources[logical_id]
        body = resource["Properties"].get("DefinitionBody")
        uri = resource["Properties"].get("DefinitionUri")
        if body is None and isinstance(uri, str):
            body = load_template_file(self.service.settings.template_dir / uri)
        if body is None:
            return []
        definition = stack.resolve(body, f"{logical_id} DefinitionBody")
        routes: list[Route] = []
        for path, operations in (definition.get("paths") or {}).items():
            for key, operation in (operations or {}).items():
                method = "ANY" if key == "x-amazon-apigateway-any-method" else key.upper()
                if method not in HTTP_METHODS and method != ANY:
                    continue
                routes.append(self._route(stack, api, str(path), method, operation or {}))
        return routes

    def _route(
        self, stack: Stack, api: RestApi, path: str, method: str, operation: dict[str, Any]
    ) -> Route:
        integration = operation.get("x-amazon-apigateway-integration") or {}
        kind = str(integration.get("type", "")).lower()
        where = f"{api.logical_id} {method} {path}"
        if kind != "aws_proxy":
            stack.note(f"{where}: integration type {kind or 'none'} is not emulated (answers 500)")
            return Route(method, path, None, f"integration type {kind or 'none'} is not emulated")
        uri = re.sub(
            r"\$\{stageVariables\.([A-Za-z0-9_]+)\}",
            lambda m: api.stage_variables.get(m.group(1), m.group(0)),
            str(integration.get("uri", "")),
        )
        found = re.search(r"/functions/(.+?)/invocations", uri)
        target = self.service.find(found.group(1)) if found else None
        if target is None:
            raise TemplateError(
                f"{where}: the integration {uri} reaches no function of this template"
            )
        return Route(method, path, target)


class ResponseServer:
    """Where custom resources answer (their ResponseURL): PUT /<request id>."""

    def __init__(self) -> None:
        self.responses: dict[str, dict[str, Any]] = {}
        self._arrived: dict[str, threading.Event] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request_id = self.path.strip("/").split("/")[-1]
                try:
                    server.responses[request_id] = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    server.responses[request_id] = {
                        "Status": "FAILED",
                        "Reason": "response is not JSON",
                    }
                server._arrived.setdefault(request_id, threading.Event()).set()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="cfn-responses",
            daemon=True,
        ).start()

    def url(self, request_id: str) -> str:
        self._arrived.setdefault(request_id, threading.Event())
        return f"http://127.0.0.1:{self.server.server_address[1]}/cloudformation/{request_id}"

    def wait(self, request_id: str, timeout: float) -> dict[str, Any] | None:
        self._arrived.setdefault(request_id, threading.Event()).wait(timeout)
        return self.responses.get(request_id)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _stringified(value: Any) -> Any:
    """Custom resource properties arrive as strings, as CloudFormation sends them."""
    if isinstance(value, dict):
        return {k: _stringified(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringified(v) for v in value]
    if isinstance(value, bool | int | float):
        return stringify(value, "custom resource property")
    return value


class CustomResourceProvider:
    """``AWS::CloudFormation::CustomResource`` / ``Custom::*`` backed by a function of the
    template: invoked with a Create event whose ResponseURL the emulator serves; FAILED
    (or no answer) fails start-up. No Delete is sent at stop: the local stack is thrown
    away."""

    ANSWER_GRACE_SECONDS = 5.0

    def __init__(self, service: LambdaService, responses: Callable[[], ResponseServer]) -> None:
        self.service = service
        self.responses = responses

    def validate(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> None:
        token = resource["Properties"].get("ServiceToken")
        where = f"{logical_id} ({resource['Type']})"
        if token is None:
            raise TemplateError(f"{where}: ServiceToken is required")
        if not is_intrinsic(token) and ":function:" not in str(token):
            raise TemplateError(
                f"{where}: only custom resources backed by a function of this template are emulated"
            )

    def create(self, stack: Stack, logical_id: str, resource: dict[str, Any]) -> Created:
        where = f"{logical_id} ({resource['Type']})"
        properties = stack.properties(logical_id)
        token = str(properties["ServiceToken"])
        function = self.service.find(token)
        if function is None:
            raise TemplateError(f"{where}: ServiceToken {token} is not a function of this template")
        server = self.responses()
        request_id = str(uuid.uuid4())
        event = {
            "RequestType": "Create",
            "ServiceToken": token,
            "ResponseURL": server.url(request_id),
            "StackId": stack.template.stack_id,
            "RequestId": request_id,
            "LogicalResourceId": logical_id,
            "ResourceType": resource["Type"],
            "ResourceProperties": _stringified(properties),
        }
        invocation = self.service.invoke(function, event, f"custom resource {logical_id}")
        answer = server.wait(request_id, self.ANSWER_GRACE_SECONDS)
        if answer is None:
            detail = f": {invocation.error_text}" if not invocation.ok else ""
            raise TemplateError(f"{where}: {function} sent no response{detail}")
        if answer.get("Status") != "SUCCESS":
            log = self.service.log_path(function)
            raise TemplateError(f"{where}: FAILED: {answer.get('Reason', '')} (log: {log})")
        data = answer.get("Data") or {}
        physical_id = answer.get("PhysicalResourceId") or f"{logical_id}-{request_id[:8]}"
        return Created(physical_id, {str(k): v for k, v in data.items()})
