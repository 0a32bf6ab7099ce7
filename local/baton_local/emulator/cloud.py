"""``baton local``: the SAM template emulated in-process, no Docker, no servers to install.

``LocalCloud`` reads the template and wires every function to its events the way AWS
would: AWS services from moto (in-process, on loopback), each function in its own worker
processes, SQS pollers, schedules on a clock where a minute lasts ``tick_seconds``,
REST APIs on loopback and custom resources run at start-up. What the emulator cannot
run itself (a cache, a database) comes from the profiles the caller plugs in
(``profiles``; Baton's is ``baton_local.profile``)::

    with LocalCloud(LocalOptions(template=Path("template.yaml"), tick_seconds=1)) as cloud:
        cloud.boto_session().client("sqs").send_message(
            QueueUrl=cloud.outputs["IntakeQueueUrl"], MessageBody="...")

Adding a function (or a queue, a schedule, a route) to the template makes it run here
with no code change; a resource type that cannot run locally fails start-up naming it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from baton_local.emulator.apis import ApiProvider
from baton_local.emulator.aws import (
    DUMMY_KEY_ID,
    DUMMY_SECRET,
    LocalAws,
    LocalSession,
    MotoServer,
    aws_providers,
)
from baton_local.emulator.console import ActivityConsole
from baton_local.emulator.custom_resources import CustomResourceProvider, ResponseServer
from baton_local.emulator.events import (
    Schedule,
    Scheduler,
    SqsEventSource,
    parse_schedule,
    scheduled_event,
)
from baton_local.emulator.functions import (
    DEFAULT_CONCURRENCY,
    RUNTIME_VARIABLES,
    FunctionProvider,
    LambdaService,
    LambdaSettings,
    LayerProvider,
)
from baton_local.emulator.gateway import AWS_IAM, RestApi
from baton_local.emulator.lambdas import Invocation, preload
from baton_local.emulator.profiles import LocalProfile, ProfileContext, ProfileFactory
from baton_local.emulator.sigv4 import DEFAULT_CALLER_ARN, IamCaller, callers_by_key
from baton_local.emulator.stack import Provider, Stack
from baton_local.emulator.template import (
    ACCOUNT_ID,
    Resolver,
    Template,
    TemplateError,
    load_template,
)

__all__ = ["ENV_FILE", "OUTPUTS_FILE", "LocalCloud", "LocalOptions", "TemplateError"]

OUTPUTS_FILE = "outputs.json"
ENV_FILE = "env"


@dataclass
class LocalOptions:
    """How to run the template locally.

    ``tick_seconds`` is how long a minute lasts: schedules, SQS visibility timeouts and
    Lambda's async retry delays are scaled by it (60 = real time). ``parameter_overrides``
    are template parameters; ``env_file`` is a ``sam local --env-vars`` JSON file.
    ``concurrency`` (logical id -> instances) and ``default_concurrency`` bound how many
    instances of a function run at once (never above its ReservedConcurrentExecutions).
    ``fresh`` starts with empty function logs, and tells the profiles to start from
    scratch too (Baton's: an empty SQLite file).

    ``aws_port`` (moto) and ``api_port`` (the first REST API; the next ones follow it)
    are fixed ports, so that a restarted stack has the same URLs; 0 takes free ones.
    Unless ``quiet``, the banner and the activity go to ``output``: ``activity`` is
    "errors" (failed invocations only), "summary" (scheduled runs summed up every
    ``summary_seconds``, each request and batch on a line) or "all".

    ``caller_arn`` is the IAM principal the local credentials stand for on ``AWS_IAM``
    routes (what API Gateway reports as ``userArn``); ``iam_callers`` are more access
    keys, each standing for its own principal."""

    template: Path = Path("template.yaml")
    env_file: Path | None = None
    tick_seconds: float = 60.0
    state_dir: Path = Path(".baton-local")
    parameter_overrides: Mapping[str, str] = field(default_factory=dict)
    region: str = "eu-west-1"
    quiet: bool = True
    stack_name: str = "local"
    concurrency: Mapping[str, int] = field(default_factory=dict)
    default_concurrency: int = DEFAULT_CONCURRENCY
    prewarm: bool = True
    fresh: bool = True
    output: TextIO | None = None
    aws_port: int = 0
    api_port: int = 0
    activity: str = "summary"
    summary_seconds: float = 10.0
    caller_arn: str = DEFAULT_CALLER_ARN
    iam_callers: Sequence[IamCaller] = ()


class LocalCloud:
    """The stack of one template, running on this machine, with the backing services
    of ``profiles`` (each factory called once). ``start()`` / ``stop()``, or use it as a
    context manager."""

    def __init__(self, options: LocalOptions, profiles: Sequence[ProfileFactory] = ()) -> None:
        if options.tick_seconds <= 0:
            raise ValueError("tick_seconds must be positive")
        self.options = options
        self.outputs: dict[str, Any] = {}
        self.invocations: Counter[str] = Counter()
        self.errors: list[tuple[str, str]] = []
        self.notes: list[str] = []
        self.apis: dict[str, RestApi] = {}
        self.startup_seconds = 0.0
        self.aws_endpoint_url = ""
        self.template: Template | None = None
        self.stack: Stack | None = None
        self.scheduler = Scheduler(options.tick_seconds)
        self._sources: list[SqsEventSource] = []
        self._moto: MotoServer | None = None
        self._responses: ResponseServer | None = None
        self._session: LocalSession | None = None
        self._lock = threading.Lock()
        self._stopping = False
        self._started = False
        self._wrote_files = False
        self.extra_info: dict[str, Any] = {}
        self.extra_environment: dict[str, str] = {}
        self.state_dir = options.state_dir.resolve()
        self.template_path = options.template.resolve()
        self.aws = LocalAws(options.tick_seconds / 60.0)
        context = ProfileContext(self.aws, self.state_dir, options.fresh)
        self.profiles: list[LocalProfile] = [make(context) for make in profiles]
        for profile in self.profiles:
            preload(list(profile.preload()))
        self.lambdas = LambdaService(
            LambdaSettings(
                state_dir=self.state_dir,
                template_dir=self.template_path.parent,
                region=options.region,
                time_scale=options.tick_seconds / 60.0,
                concurrency=dict(options.concurrency),
                default_concurrency=options.default_concurrency,
                env_overrides=_read_env_file(options.env_file),
            ),
            self._record,
            [profile.environment for profile in self.profiles],
        )
        self.callers = callers_by_key(
            [IamCaller(DUMMY_KEY_ID, DUMMY_SECRET, options.caller_arn), *options.iam_callers]
        )
        self._api_provider = ApiProvider(self.lambdas, self.apis, options.api_port, self.callers)
        self.console = ActivityConsole(self._out, options.activity, options.summary_seconds)

    # -- the public surface -------------------------------------------------------------------

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def boto_session(self) -> LocalSession:
        """A boto3 session whose clients talk to the local moto server."""
        if self._session is None:
            raise RuntimeError("the local cloud is not started")
        return self._session

    @property
    def urls(self) -> dict[str, str]:
        """Each REST API's local base URL (with its stage)."""
        return {logical_id: api.url for logical_id, api in self.apis.items()}

    def invoke(self, function: str, event: Any) -> Invocation:
        """Invoke a function (logical id or name) synchronously, as ``aws lambda invoke``."""
        logical_id = self.lambdas.find(function)
        if logical_id is None:
            raise KeyError(f"no function {function} in the template")
        return self.lambdas.invoke(logical_id, event, "invoke")

    def prewarm(self, function: str, instances: int | None = None) -> int:
        """Cold-start up to ``instances`` instances of a function (default: as many as it
        may run at once) and wait for them, as a function under steady load has them
        warm; returns how many it has now."""
        logical_id = self.lambdas.find(function)
        if logical_id is None:
            raise KeyError(f"no function {function} in the template")
        pool = self.lambdas.pool(logical_id)
        pool.prewarm(pool.concurrency if instances is None else instances)
        return pool.instances

    def instances(self) -> dict[str, dict[str, int]]:
        """Per function started so far: its instances, and the most ever busy at once."""
        return {
            logical_id: {"instances": pool.instances, "peak_busy": pool.peak}
            for logical_id, pool in sorted(self.lambdas.started_pools().items())
        }

    def function_log(self, function: str) -> Path:
        """The file that holds a function's stdout and stderr."""
        return self.lambdas.log_path(self.lambdas.find(function) or function)

    def start(self) -> LocalCloud:
        if self._started:
            return self
        started = time.perf_counter()
        self._started = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.perf_counter() - started
        if not self.options.quiet:
            self._banner()
            self.console.start()
        return self

    def stop(self) -> None:
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        # They describe a running stack: an operator command must not find them once it
        # stops, however long the rest of the shutdown takes (or if it is cut short).
        for name in (OUTPUTS_FILE, ENV_FILE):
            path = self.state_dir / name
            with contextlib.suppress(OSError):
                if path.is_file() and self._wrote_files:
                    path.unlink()
        self.scheduler.stop()
        if not self.options.quiet:
            self.console.stop()
        for source in self._sources:
            source.stop()
        for api in self.apis.values():
            api.stop()
        self.lambdas.stop()
        if self._responses is not None:
            self._responses.stop()
        if self.stack is not None and self._moto is not None:
            self.stack.delete_all()
        for profile in self.profiles:
            profile.stop()
        if self._moto is not None:
            self._moto.stop()

    # -- start-up ---------------------------------------------------------------------------

    def _start(self) -> None:
        options = self.options
        # The same id at every start: it shows up in names and in custom resources' events.
        stack_uuid = uuid.uuid5(
            uuid.NAMESPACE_URL, f"baton-local:{options.region}:{options.stack_name}"
        )
        stack_id = (
            f"arn:aws:cloudformation:{options.region}:{ACCOUNT_ID}:stack/"
            f"{options.stack_name}/{stack_uuid}"
        )
        self.template = Template(
            load_template(self.template_path),
            parameter_overrides={k: str(v) for k, v in options.parameter_overrides.items()},
            region=options.region,
            stack_name=options.stack_name,
            stack_id=stack_id,
        )
        providers: dict[str, Provider] = {
            **aws_providers(self.aws),
            "AWS::Serverless::Function": FunctionProvider(self.lambdas),
            "AWS::Serverless::LayerVersion": LayerProvider(),
            "AWS::Lambda::LayerVersion": LayerProvider(),
            "AWS::Serverless::Api": self._api_provider,
            "AWS::CloudFormation::CustomResource": CustomResourceProvider(
                self.lambdas, self._response_server
            ),
            "Custom::*": CustomResourceProvider(self.lambdas, self._response_server),
        }
        for profile in self.profiles:
            providers.update(profile.providers())
        self.stack = Stack(self.template, providers, self._note)
        self.lambdas.stack = self.stack
        self.stack.validate()

        self._prepare_state_dir()
        self._moto = MotoServer(options.aws_port)
        self.aws_endpoint_url = self._moto.start()
        self._session = LocalSession(self.aws_endpoint_url, options.region)
        self.aws.connect(self._session)
        self.lambdas.settings.endpoint_url = self.aws_endpoint_url

        self.stack.create_all()
        for logical_id in self.apis:
            self._api_provider.wire(self.stack, logical_id)
        self._wire_events()
        for api in self.apis.values():
            api.start()
        self.scheduler.start()
        for source in self._sources:
            source.start()
        if options.prewarm:
            self.lambdas.prewarm(self._prewarm_order())
        self.outputs = self._outputs()
        self._write_connection_files()

    def _prewarm_order(self) -> list[str]:
        """Functions that answer requests and queues first, timers last."""

        def rank(logical_id: str) -> int:
            kinds = {e.get("Type") for e in self.lambdas.functions[logical_id].events.values()}
            routed = any(
                route.function == logical_id for api in self.apis.values() for route in api.routes
            )
            return 0 if "SQS" in kinds or routed else 1 if kinds else 2

        return sorted(self.lambdas.functions, key=rank)

    def _response_server(self) -> ResponseServer:
        if self._responses is None:
            self._responses = ResponseServer()
        return self._responses

    def _prepare_state_dir(self) -> None:
        logs = self.state_dir / "logs"
        if self.options.fresh and logs.is_dir():
            shutil.rmtree(logs, ignore_errors=True)
        logs.mkdir(parents=True, exist_ok=True)

    def _wire_events(self) -> None:
        assert self.stack is not None
        for function in self.lambdas.functions.values():
            for name, event in function.events.items():
                where = f"{function.logical_id} event {name}"
                kind = event.get("Type")
                properties = self.stack.resolve(event.get("Properties") or {}, where)
                if kind == "SQS":
                    self._sources.append(self._sqs_source(function.logical_id, name, properties))
                elif kind in ("Schedule", "ScheduleV2"):
                    schedule = self._schedule(function.logical_id, name, str(kind), properties)
                    if schedule is not None:
                        self.scheduler.add(schedule)

    def _sqs_source(self, logical_id: str, name: str, properties: dict[str, Any]) -> SqsEventSource:
        queue_arn = str(properties["Queue"])
        queue_url = self._queue_url(queue_arn)
        visibility = self.aws.sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["VisibilityTimeout"]
        )["Attributes"]["VisibilityTimeout"]
        pool = self.lambdas.pool(logical_id)
        response_types = properties.get("FunctionResponseTypes") or []
        enabled = properties.get("Enabled", True)
        if enabled in (False, "false"):
            self._note(f"{logical_id} event {name}: disabled in the template")
        return SqsEventSource(
            name=f"{logical_id}.{name}",
            pool=pool,
            sqs=self.aws.sqs,
            queue_url=queue_url,
            queue_arn=queue_arn,
            region=self.options.region,
            batch_size=int(properties.get("BatchSize", 10)),
            batching_window=float(properties.get("MaximumBatchingWindowInSeconds", 0)),
            visibility_timeout=float(visibility),
            report_failures="ReportBatchItemFailures" in response_types,
            pollers=self._pollers(pool.concurrency, properties),
            enabled=enabled not in (False, "false"),
        )

    @staticmethod
    def _pollers(concurrency: int, properties: dict[str, Any]) -> int:
        """Concurrent batches: the function's concurrency, or less when the event's
        ScalingConfig caps it."""
        cap = (properties.get("ScalingConfig") or {}).get("MaximumConcurrency")
        return max(1, min(concurrency, int(cap))) if cap is not None else concurrency

    def _queue_url(self, queue_arn: str) -> str:
        assert self.stack is not None
        for created in self.stack.created.values():
            if created.attributes.get("Arn") == queue_arn and "QueueUrl" in created.attributes:
                return str(created.attributes["QueueUrl"])
        return self.aws.sqs.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[-1])["QueueUrl"]

    def _schedule(
        self, logical_id: str, name: str, kind: str, properties: dict[str, Any]
    ) -> Schedule | None:
        where = f"{logical_id} event {name} ({kind})"
        expression = str(properties.get("Schedule" if kind == "Schedule" else "ScheduleExpression"))
        rule = parse_schedule(expression, where)
        state = str(properties.get("State", "ENABLED")).upper()
        if properties.get("Enabled") in (False, "false") or state == "DISABLED":
            self._note(f"{where}: disabled in the template")
            return None
        region = self.options.region
        stack_name = self.options.stack_name
        if kind == "Schedule":
            arn = f"arn:aws:events:{region}:{ACCOUNT_ID}:rule/{stack_name}-{logical_id}{name}"
            source = "aws.events"
        else:
            schedule_name = f"{stack_name}-{logical_id}{name}"
            arn = f"arn:aws:scheduler:{region}:{ACCOUNT_ID}:schedule/default/{schedule_name}"
            source = "aws.scheduler"
        raw_input = properties.get("Input")

        def event() -> Any:
            if raw_input is not None:
                return json.loads(str(raw_input))
            return scheduled_event(arn, region, ACCOUNT_ID, source)

        return Schedule(
            name=f"{logical_id}.{name}",
            pool=self.lambdas.pool(logical_id),
            expression=expression,
            rule=rule,
            event=event,
        )

    def _outputs(self) -> dict[str, Any]:
        assert self.stack is not None
        template = self.stack.template
        outputs: dict[str, Any] = {}
        for name, output in template.outputs.items():
            condition = output.get("Condition")
            if condition is not None and not template.condition(str(condition)):
                continue
            resolver = Resolver(template, self.stack, self.stack.localize, f"output {name}")
            outputs[name] = resolver.resolve(output.get("Value"))
        return outputs

    # -- how to reach it ----------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        """What a process on this machine needs to act as one of the functions: the
        variables every function of the stack has alike (a template's Globals, as the
        profiles rewrote them), without the Lambda runtime's own, and the AWS endpoint,
        region and credentials of the local clients."""
        shared: dict[str, str] | None = None
        for logical_id in self.lambdas.functions:
            variables = self.lambdas.spec(logical_id).environment
            if shared is None:
                shared = dict(variables)
            else:
                shared = {k: v for k, v in shared.items() if variables.get(k) == v}
        chosen = {k: v for k, v in (shared or {}).items() if k not in RUNTIME_VARIABLES and v != ""}
        chosen.update(self.aws_environment())
        return dict(sorted(chosen.items()))

    def aws_environment(self) -> dict[str, str]:
        """The variables that point an AWS SDK or the AWS CLI at the local moto server."""
        region = self.options.region
        return {
            "AWS_ENDPOINT_URL": self.aws_endpoint_url,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_ACCESS_KEY_ID": DUMMY_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET,
        }

    def connection_info(self) -> dict[str, Any]:
        """What ``outputs.json`` holds: the stack's Outputs, where everything listens,
        and the environment of ``env``."""
        endpoints: dict[str, Any] = {"aws": self.aws_endpoint_url, "apis": dict(self.urls)}
        for profile in self.profiles:
            endpoints.update(profile.endpoints())
        return {
            "stack_name": self.options.stack_name,
            "region": self.options.region,
            "pid": os.getpid(),
            "outputs": dict(self.outputs),
            "endpoints": endpoints,
            "aws": {
                "endpoint_url": self.aws_endpoint_url,
                "region": self.options.region,
                "access_key_id": DUMMY_KEY_ID,
                "secret_access_key": DUMMY_SECRET,
                # Who a request signed with these credentials is on AWS_IAM routes.
                "caller_arn": self.callers[DUMMY_KEY_ID].arn,
            },
            "iam_callers": {key: caller.arn for key, caller in self.callers.items()},
            "functions": {
                logical_id: {
                    "name": function.name,
                    "arn": function.arn,
                    "log": str(self.lambdas.log_path(logical_id)),
                }
                for logical_id, function in self.lambdas.functions.items()
            },
            "environment": self.environment(),
            **self.extra_info,
        }

    def _write_connection_files(self) -> None:
        info = self.connection_info()
        (self.state_dir / OUTPUTS_FILE).write_text(json.dumps(info, indent=2) + "\n")
        lines = [
            "# The running local stack (baton local): the settings an operator command needs,",
            "# the AWS endpoint and credentials, and the stack's Outputs. `set -a; . <this>`",
            *(f"{key}={shlex.quote(value)}" for key, value in info["environment"].items()),
            *(
                f"{name}={shlex.quote(str(value))}"
                for name, value in info["outputs"].items()
                if name.isidentifier() and isinstance(value, str | int | float)
            ),
            *(f"{name}={shlex.quote(value)}" for name, value in self.extra_environment.items()),
        ]
        (self.state_dir / ENV_FILE).write_text("\n".join(lines) + "\n")
        self._wrote_files = True

    def add_info(self, key: str, value: Any, environment: Mapping[str, str] | None = None) -> None:
        """More for ``outputs.json`` (what a caller started beside the stack), and
        variables for ``env``; both files are written again."""
        self.extra_info[key] = value
        self.extra_environment.update(environment or {})
        if self._wrote_files:
            self._write_connection_files()

    # -- reporting ----------------------------------------------------------------------------

    def _out(self, line: str) -> None:
        stream = self.options.output or sys.stdout
        stream.write(line + "\n")
        stream.flush()

    def _note(self, message: str) -> None:
        self.notes.append(message)
        if not self.options.quiet and self.options.activity == "all":
            self._out(f"  note: {message}")

    def _record(self, invocation: Invocation) -> None:
        with self._lock:
            if self._stopping and not invocation.ok:
                return
            self.invocations[invocation.function] += 1
            if not invocation.ok:
                self.errors.append((invocation.function, invocation.error_text))
        if not self.options.quiet:
            self.console.record(invocation)

    def _banner(self) -> None:
        out = self._out
        if self.options.activity != "all":
            # What has no local meaning is one line; what changes behaviour is each its own.
            skipped = [n for n in self.notes if _is_skip(n)]
            for note in self.notes:
                if not _is_skip(note):
                    out(f"  note: {note}")
            if skipped:
                out(
                    f"  note: {len(skipped)} resources have no local meaning (--verbose names them)"
                )
        out(f"baton local: {self.template_path} up in {self.startup_seconds:.1f} s")
        out(f"  AWS (moto)  {self.aws_endpoint_url}  region {self.options.region}")
        for profile in self.profiles:
            for line in profile.describe():
                out(f"  {line}")
        for logical_id, url in self.urls.items():
            out(f"  API {logical_id}  {url}")
        if any(
            route.authorization == AWS_IAM for api in self.apis.values() for route in api.routes
        ):
            out(f"  IAM caller  {self.callers[DUMMY_KEY_ID].arn} (the local credentials, SigV4)")
        out(f"  functions   {', '.join(self.lambdas.functions)}")
        out(f"  logs        {self.state_dir / 'logs'}/<function>.log")
        out(f"  outputs     {self.state_dir / OUTPUTS_FILE} and {self.state_dir / ENV_FILE}")
        out(
            f"  a minute lasts {self.options.tick_seconds:g} s; each function runs up to "
            f"{self.options.default_concurrency} instances at once unless its template or "
            "--concurrency says otherwise"
        )
        if self.outputs:
            out("Outputs:")
            width = max(len(name) for name in self.outputs)
            for name, value in self.outputs.items():
                out(f"  {name:<{width}}  {value}")


def _is_skip(note: str) -> bool:
    return any(mark in note for mark in (": skipped", "not built", "not needed"))


def _read_env_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TemplateError(f"env-vars file {path}: {exc}") from None
    if not isinstance(document, dict) or not all(isinstance(v, dict) for v in document.values()):
        raise TemplateError(
            f'env-vars file {path}: expected {{"Parameters": {{...}}, "<LogicalId>": {{...}}}}'
        )
    return document


def run_until_interrupted(
    options: LocalOptions,
    profiles: Sequence[ProfileFactory] = (),
    after_start: Callable[[LocalCloud], Sequence[str]] | None = None,
) -> int:
    """``baton local``: start, print the outputs and URLs, run until Ctrl-C (or SIGTERM).
    ``after_start`` adds to the running stack and returns lines for the banner."""
    stop = threading.Event()
    # Both set here, SIGINT too: a process started in the background of a shell without
    # job control inherits SIGINT ignored, and Ctrl-C (or `kill -INT`) must still stop it.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    cloud = LocalCloud(options, profiles)
    try:
        cloud.start()
        for line in after_start(cloud) if after_start is not None else ():
            print(f"  {line}", file=options.output or sys.stdout, flush=True)
    except TemplateError as exc:
        cloud.stop()
        print(f"baton local: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C while it was still starting: stop all the same
        print("stopping ...", file=options.output or sys.stdout, flush=True)
        cloud.stop()
        return 0
    try:
        print("Ctrl-C stops.", file=options.output or sys.stdout, flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping ...", file=options.output or sys.stdout, flush=True)
        cloud.stop()
    return 0
