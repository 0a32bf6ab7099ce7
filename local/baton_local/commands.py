"""``baton local`` and ``baton demo``: subcommands this distribution adds to the
``baton`` console script through its ``baton.commands`` entry points (see
``local/pyproject.toml``), so that the product's command line never imports the
development tool by name.

Each entry point is a function that adds its subparser; the work is imported when the
command runs, so that every other ``baton`` command starts as fast as before."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

AWS_PORT = 4750
API_PORT = 4751
REDIS_PORT = 4760


def add_local(commands: Commands) -> None:
    local = commands.add_parser(
        "local",
        help="run the SAM template on this machine (moto, embedded Redis, SQLite; no Docker)",
    )
    local.add_argument("--template", default="template.yaml")
    local.add_argument("--env-vars", help="JSON file in the format of sam local --env-vars")
    local.add_argument(
        "--tick", type=float, default=60.0, help="seconds a minute lasts (schedules, retries)"
    )
    local.add_argument("--redis-url", help="a real Redis instead of the embedded one")
    local.add_argument("--database-url", help="a real database instead of SQLite")
    local.add_argument(
        "--parameter-overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="template parameters",
    )
    local.add_argument("--state-dir", default=".baton-local", help="SQLite file and function logs")
    local.add_argument("--region", default="eu-west-1")
    local.add_argument("--stack-name", default="local")
    local.add_argument(
        "--caller-arn",
        metavar="ARN",
        help="the IAM principal the local credentials stand for on the AWS_IAM routes (the "
        "task status API); default the local account's user baton-local",
    )
    local.add_argument(
        "--concurrency",
        nargs="+",
        default=[],
        metavar="N|FUNCTION=N",
        help="most instances of each function at once (N, default 4) or of one function "
        "(FUNCTION=N); never above a function's ReservedConcurrentExecutions",
    )
    loudness = local.add_mutually_exclusive_group()
    loudness.add_argument(
        "--quiet", action="store_true", help="show failed invocations only, after the banner"
    )
    loudness.add_argument(
        "--verbose",
        action="store_true",
        help="show every invocation, each scheduled run too, and every resource skipped",
    )
    local.add_argument(
        "--samples",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="start sample algorithm services and register them (default: on, unless "
        "AlgorithmsJson is given: the template's example endpoints do not exist here)",
    )
    ports = local.add_argument_group(
        "ports", "fixed, so that a restarted stack keeps its URLs (0: any free port)"
    )
    ports.add_argument("--aws-port", type=int, default=AWS_PORT, help=f"moto (default {AWS_PORT})")
    ports.add_argument(
        "--api-port",
        type=int,
        default=API_PORT,
        help=f"the first REST API; the next ones follow (default {API_PORT})",
    )
    ports.add_argument(
        "--redis-port",
        type=int,
        default=REDIS_PORT,
        help=f"the embedded Redis (default {REDIS_PORT})",
    )
    local.set_defaults(run=_local)


def add_demo(commands: Commands) -> None:
    demo = commands.add_parser(
        "demo",
        help="a small document platform on the emulated stack: live view, report, timeline",
    )
    demo.add_argument("--tasks", type=int, help="tasks to submit (default 200)")
    demo.add_argument("--seed", type=int, help="seed of the task plan (default 7)")
    demo.add_argument("--tick", type=float, help="seconds a minute lasts (default 1)")
    demo.add_argument("--reports", help="folder of the JSON report and PNG (default reports)")
    demo.add_argument("--redis-url", help="a real Redis instead of the embedded one")
    demo.add_argument("--database-url", help="a real database instead of SQLite")
    demo.add_argument("--timeout", type=float, help="overall limit, seconds (default 180)")
    demo.add_argument(
        "--no-live",
        dest="live",
        action="store_false",
        default=None,
        help="a progress line a second instead of the live table (automatic without a terminal)",
    )
    demo.add_argument("--template", help="the SAM template (default: ./template.yaml)")
    demo.set_defaults(run=_demo)


def _local(args: argparse.Namespace) -> int:
    from pathlib import Path

    from baton_local.emulator.cloud import LocalCloud, LocalOptions, run_until_interrupted
    from baton_local.emulator.sigv4 import DEFAULT_CALLER_ARN
    from baton_local.profile import baton_profile
    from baton_local.samples import SampleServices, registry_json

    def pairs(items: Sequence[str], what: str) -> dict[str, str]:
        chosen: dict[str, str] = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise SystemExit(f"baton local: {what} must be KEY=VALUE, got {item!r}")
            chosen[key] = value
        return chosen

    default, per_function = _concurrency(args.concurrency)
    parameters = pairs(args.parameter_overrides, "--parameter-overrides")
    samples = SampleServices() if _with_samples(args.samples, parameters) else None
    if samples is not None:
        registry = samples.start()
        # What the caller registered stays, beside the samples (and wins a name both use).
        given = parameters.get("AlgorithmsJson")
        if given:
            registry.update(json.loads(given))
        parameters["AlgorithmsJson"] = registry_json(registry)

    def add_samples(cloud: LocalCloud) -> list[str]:
        if samples is None:
            return []
        samples.use_secrets(cloud)
        samples.subscribe(cloud)
        return samples.describe()

    try:
        return run_until_interrupted(
            LocalOptions(
                template=Path(args.template),
                env_file=Path(args.env_vars) if args.env_vars else None,
                tick_seconds=args.tick,
                state_dir=Path(args.state_dir),
                parameter_overrides=parameters,
                region=args.region,
                quiet=False,
                stack_name=args.stack_name,
                concurrency=per_function,
                default_concurrency=default,
                aws_port=args.aws_port,
                api_port=args.api_port,
                activity="errors" if args.quiet else "all" if args.verbose else "summary",
                caller_arn=args.caller_arn or DEFAULT_CALLER_ARN,
            ),
            [baton_profile(args.redis_url, args.database_url, redis_port=args.redis_port)],
            after_start=add_samples,
        )
    finally:
        if samples is not None:
            samples.stop()


def _with_samples(asked: bool | None, parameters: dict[str, str]) -> bool:
    """On unless told, or unless the caller registers algorithms of their own."""
    return asked if asked is not None else "AlgorithmsJson" not in parameters


def _concurrency(items: Sequence[str]) -> tuple[int, dict[str, int]]:
    """``--concurrency``: a bare number is the default, ``FUNCTION=N`` one function's."""
    from baton_local.emulator.functions import DEFAULT_CONCURRENCY

    default, per_function = DEFAULT_CONCURRENCY, {}
    for item in items:
        name, sep, value = item.rpartition("=")
        if sep and not name:
            value = ""
        if not value.isdigit() or int(value) < 1:
            raise SystemExit(
                f"baton local: --concurrency takes N or FUNCTION=N (N >= 1), got {item!r}"
            )
        if sep:
            per_function[name] = int(value)
        else:
            default = int(value)
    return default, per_function


def _demo(args: argparse.Namespace) -> int:
    from baton_local.demo.run import run_from_args

    return run_from_args(args)
