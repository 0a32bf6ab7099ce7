"""``baton local`` and ``baton demo``: subcommands this distribution adds to the
``baton`` console script through its ``baton.commands`` entry points (see
``local/pyproject.toml``), so that the product's command line never imports the
development tool by name.

Each entry point is a function that adds its subparser; the work is imported when the
command runs, so that every other ``baton`` command starts as fast as before."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]


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
        "--concurrency",
        nargs="+",
        default=[],
        metavar="N|FUNCTION=N",
        help="most instances of each function at once (N, default 4) or of one function "
        "(FUNCTION=N); never above a function's ReservedConcurrentExecutions",
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
    demo.add_argument("--timeout", type=float, help="overall limit, seconds (default 120)")
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

    from baton_local.emulator.cloud import LocalOptions, run_until_interrupted
    from baton_local.profile import baton_profile

    def pairs(items: Sequence[str], what: str) -> dict[str, str]:
        chosen: dict[str, str] = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise SystemExit(f"baton local: {what} must be KEY=VALUE, got {item!r}")
            chosen[key] = value
        return chosen

    default, per_function = _concurrency(args.concurrency)
    return run_until_interrupted(
        LocalOptions(
            template=Path(args.template),
            env_file=Path(args.env_vars) if args.env_vars else None,
            tick_seconds=args.tick,
            state_dir=Path(args.state_dir),
            parameter_overrides=pairs(args.parameter_overrides, "--parameter-overrides"),
            region=args.region,
            quiet=False,
            stack_name=args.stack_name,
            concurrency=per_function,
            default_concurrency=default,
        ),
        [baton_profile(args.redis_url, args.database_url)],
    )


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
