"""The ``baton`` console script: operator commands over the configured environment."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from baton.errors import ApiError, SettingsError


def _database_url(args: argparse.Namespace) -> str:
    if args.database_url:
        return str(args.database_url)
    from baton.runtime import fetch_secret
    from baton.settings import load_settings, resolve_database_url

    return resolve_database_url(load_settings(), fetch_secret)


def _db_upgrade(args: argparse.Namespace) -> int:
    from baton.schema import current_revision, upgrade_database

    url = _database_url(args)
    upgrade_database(url, args.revision)
    print(f"database at revision {current_revision(url)}")
    return 0


def _task_show(args: argparse.Namespace) -> int:
    from baton.runtime import get_runtime

    runtime = get_runtime()
    task = runtime.repository.get_task(args.task_id)
    if task is None:
        print(f"task {args.task_id} does not exist", file=sys.stderr)
        return 1
    executions = runtime.repository.executions_of(task.id)
    print(
        json.dumps(
            {
                "task_id": task.id,
                "app": task.app,
                "algorithm": task.algorithm,
                "status": task.status.value,
                "attempts": task.attempts,
                "max_attempts": task.max_attempts,
                "error": {"code": task.error_code, "message": task.error_message},
                "executions": [
                    {
                        "attempt": e.attempt,
                        "status": e.status.value,
                        "deadline": e.deadline.isoformat(),
                        "http_status": e.http_status,
                        "error_code": e.error_code,
                        "progress": e.progress,
                    }
                    for e in executions
                ],
            },
            indent=2,
        )
    )
    return 0


def _task_cancel(args: argparse.Namespace) -> int:
    from baton.cancellation import cancel_task
    from baton.runtime import get_runtime

    task = cancel_task(get_runtime(), args.task_id, args.reason)
    print(f"task {task.id} cancelled")
    return 0


def _reconcile(_args: argparse.Namespace) -> int:
    from baton.reconcile import reconcile_all
    from baton.runtime import get_runtime

    for report in reconcile_all(get_runtime()).algorithms:
        print(json.dumps(report.as_dict()))
    return 0


def _openapi(_args: argparse.Namespace) -> int:
    from baton.openapi import callback_api_document

    print(json.dumps(callback_api_document(), indent=2))
    return 0


def _local(args: argparse.Namespace) -> int:
    from pathlib import Path

    from baton.local.emulator import LocalOptions, run_until_interrupted

    def pairs(items: Sequence[str], what: str) -> dict[str, str]:
        chosen: dict[str, str] = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise SystemExit(f"baton local: {what} must be KEY=VALUE, got {item!r}")
            chosen[key] = value
        return chosen

    return run_until_interrupted(
        LocalOptions(
            template=Path(args.template),
            env_file=Path(args.env_vars) if args.env_vars else None,
            redis_url=args.redis_url,
            database_url=args.database_url,
            tick_seconds=args.tick,
            state_dir=Path(args.state_dir),
            parameter_overrides=pairs(args.parameter_overrides, "--parameter-overrides"),
            region=args.region,
            quiet=False,
            stack_name=args.stack_name,
            concurrency={k: int(v) for k, v in pairs(args.concurrency, "--concurrency").items()},
        )
    )


def _demo(args: argparse.Namespace) -> int:
    from baton.local.demo import run_from_args

    return run_from_args(args)


def _log_to_stderr() -> None:
    """A command's output is stdout's alone, so that a script can parse it; the
    package's log lines (such as the cold start's open-mode warning) go to stderr."""
    import logging

    from baton.observability import logger

    handler = logger.registered_handler
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="baton", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db", required=True)
    upgrade = db.add_parser("upgrade", help="apply the Alembic migrations")
    upgrade.add_argument("--database-url", help="default: BATON_DATABASE_URL or the secret")
    upgrade.add_argument("--revision", default="head")
    upgrade.set_defaults(run=_db_upgrade)

    task = commands.add_parser("task", help="inspect or cancel one task")
    task_commands = task.add_subparsers(dest="task", required=True)
    show = task_commands.add_parser("show", help="a task and its attempts as JSON")
    show.add_argument("task_id")
    show.set_defaults(run=_task_show)
    cancel = task_commands.add_parser("cancel", help="cancel a task that has not finished")
    cancel.add_argument("task_id")
    cancel.add_argument("--reason", default="cancelled by operator")
    cancel.set_defaults(run=_task_cancel)

    reconcile = commands.add_parser("reconcile", help="rebuild Redis state from the database")
    reconcile.set_defaults(run=_reconcile)

    openapi = commands.add_parser("openapi", help="print the callback API's OpenAPI document")
    openapi.set_defaults(run=_openapi)

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
        metavar="FUNCTION=N",
        help="workers of a function (default 1; 2 with an SQS event)",
    )
    local.set_defaults(run=_local)

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _log_to_stderr()
    try:
        return int(args.run(args))
    except (SettingsError, ApiError) as exc:
        print(f"baton: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
