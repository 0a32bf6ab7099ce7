"""The ``baton`` console script: operator commands over the configured environment."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

from baton.errors import ApiError, SettingsError

if TYPE_CHECKING:
    _Commands = argparse._SubParsersAction[argparse.ArgumentParser]


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


def _task_why(args: argparse.Namespace) -> int:
    from baton.runtime import get_runtime
    from baton.waiting import explain_waiting

    runtime = get_runtime()
    task = runtime.repository.get_task(args.task_id)
    if task is None:
        print(f"task {args.task_id} does not exist", file=sys.stderr)
        return 1
    waiting = explain_waiting(runtime, task)
    if waiting is None:
        print(f"task {task.id} is {task.status.value}: it is not waiting")
        return 0
    print(json.dumps(waiting.as_dict(), indent=2))
    return 0


def _algorithm_pause(args: argparse.Namespace) -> int:
    from baton.pausing import pause_algorithm
    from baton.runtime import get_runtime

    changed = pause_algorithm(get_runtime(), args.name, args.reason)
    print(f"algorithm {args.name} {'paused' if changed else 'was already paused'}")
    return 0


def _algorithm_resume(args: argparse.Namespace) -> int:
    from baton.pausing import resume_algorithm
    from baton.runtime import get_runtime

    changed = resume_algorithm(get_runtime(), args.name)
    print(f"algorithm {args.name} {'resumed' if changed else 'was not paused'}")
    return 0


def _algorithm_secret(args: argparse.Namespace) -> int:
    from baton.runtime import get_runtime

    config = get_runtime().config
    if args.name not in config.registry:
        # Still printed: a service is set up with its secret before it is registered.
        print(f"baton: warning: algorithm {args.name!r} is not registered", file=sys.stderr)
    secrets = config.signing_keys.secrets_of(args.name)
    if args.json:
        document = {
            "algorithm": args.name,
            "current": secrets[0].secret,
            "keys": [
                {"key_id": one.key_id, "secret": one.secret, "current": one.current}
                for one in secrets
            ],
        }
        print(json.dumps(document, indent=2))
        return 0
    # The first line alone is the secret to configure; during a rotation every key
    # signs, and a service may accept any of them until the old key is retired.
    print(secrets[0].secret)
    if len(secrets) > 1:
        for one in secrets:
            print(f"{one.key_id} {one.secret}{' (current)' if one.current else ''}")
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


COMMANDS_GROUP = "baton.commands"
"""Entry points of the subcommands other distributions add: each is named after its
command and loads a function that adds the command's subparser."""

DEVELOPMENT_COMMANDS = ("local", "demo")
"""What baton-local adds: without it they still parse, to say how to get them."""


def _add_plugin_commands(commands: _Commands) -> None:
    """The development tool is a distribution of its own, so that the product ships
    alone; its commands join this console script wherever it is installed."""
    found: dict[str, EntryPoint] = {}
    for entry_point in entry_points(group=COMMANDS_GROUP):
        found.setdefault(entry_point.name, entry_point)
    # The development commands first, where they have always been listed.
    for name in dict.fromkeys([*DEVELOPMENT_COMMANDS, *sorted(found)]):
        if name not in found:
            reason = f"baton {name} needs the baton-local package: pip install ./local"
        else:
            try:
                add_command = found[name].load()
            except ImportError as exc:  # a broken install must not take the other commands down
                reason = f"baton {name}: the baton-local package does not load: {exc}"
            else:
                add_command(commands)
                continue
        unavailable = commands.add_parser(name, help="not installed (baton-local)", add_help=False)
        unavailable.set_defaults(run=_unavailable(reason), accepts_any_arguments=True)


def _unavailable(reason: str) -> Callable[[argparse.Namespace], int]:
    def run(_args: argparse.Namespace) -> int:
        print(reason, file=sys.stderr)
        return 2

    return run


def _log_to_stderr() -> None:
    """A command's output is stdout's alone, so that a script can parse it; the
    package's log lines (such as the cold start's open-mode warning) go to stderr."""
    import logging

    from baton.observability import logger

    handler = logger.registered_handler
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(_CurrentStderr())


class _CurrentStderr:
    """Whatever ``sys.stderr`` is when a line is written (a caller may replace it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


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
    why = task_commands.add_parser("why", help="why a pending or queued task waits")
    why.add_argument("task_id")
    why.set_defaults(run=_task_why)
    cancel = task_commands.add_parser("cancel", help="cancel a task that has not finished")
    cancel.add_argument("task_id")
    cancel.add_argument("--reason", default="cancelled by operator")
    cancel.set_defaults(run=_task_cancel)

    algorithm = commands.add_parser(
        "algorithm", help="pause or resume one algorithm, or print its signing secret"
    )
    algorithm_commands = algorithm.add_subparsers(dest="algorithm", required=True)
    pause = algorithm_commands.add_parser(
        "pause", help="admit no more of its tasks (running attempts finish)"
    )
    pause.add_argument("name")
    pause.add_argument("--reason", default="paused by operator")
    pause.set_defaults(run=_algorithm_pause)
    resume = algorithm_commands.add_parser("resume", help="admit its tasks again")
    resume.add_argument("name")
    resume.set_defaults(run=_algorithm_resume)
    secret = algorithm_commands.add_parser(
        "secret",
        help="print the whsec_... secret its service verifies dispatch requests with "
        "(during a rotation, then each key's, with its key id)",
    )
    secret.add_argument("name")
    secret.add_argument("--json", action="store_true", help="one JSON document")
    secret.set_defaults(run=_algorithm_secret)

    reconcile = commands.add_parser("reconcile", help="rebuild Redis state from the database")
    reconcile.set_defaults(run=_reconcile)

    openapi = commands.add_parser("openapi", help="print the callback API's OpenAPI document")
    openapi.set_defaults(run=_openapi)

    _add_plugin_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    # parse_args, except that a command that is not installed takes any flags, so that it
    # can say what is missing instead of what it does not recognise.
    if unknown and not getattr(args, "accepts_any_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    _log_to_stderr()
    try:
        return int(args.run(args))
    except (SettingsError, ApiError) as exc:
        print(f"baton: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
