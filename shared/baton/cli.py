"""The ``baton`` console script: operator commands over the configured environment, or
with ``--local`` over the stack ``baton local`` runs on this machine.

Exit codes: 0 done; 1 not found or refused (no such task, a task already finished);
2 usage or settings (a flag, a variable missing or invalid, no local stack)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from baton_sdk.errors import BatonError as BatonSdkError

from baton.errors import ApiError, SettingsError
from baton.tables import print_table

if TYPE_CHECKING:
    from baton_sdk import BatonClient
    from botocore.exceptions import ClientError
    from pydantic import ValidationError

    from baton.contracts import TaskView
    from baton.retrying import TaskRef
    from baton.waiting import Waiting

    _Commands = argparse._SubParsersAction[argparse.ArgumentParser]

R = TypeVar("R")


LOCAL_STATE_DIR = ".baton-local"
"""Where ``baton local`` writes ``env`` and ``outputs.json`` (its ``--state-dir``)."""

REQUIRED_ONE_OF = (
    ("BATON_DATABASE_URL", "BATON_DATABASE_SECRET_ARN"),
    ("BATON_TOKEN_SECRET", "BATON_TOKEN_SECRET_ARN"),
    ("BATON_ALGORITHMS", "BATON_ALGORITHMS_PARAMETER"),
)
"""The settings given one way or the other (``Settings`` checks them only once every
plain one is there, so they are looked at here, to name everything missing at once)."""


def _missing_settings(needs: str, environ: Mapping[str, str]) -> list[str]:
    """What the environment lacks for a command that ``needs`` "runtime" (the whole
    lifecycle) or "database"."""
    from baton.settings import Settings

    def given(name: str) -> bool:
        return bool(environ.get(name))

    pairs = REQUIRED_ONE_OF if needs == "runtime" else REQUIRED_ONE_OF[:1]
    missing = []
    if needs == "runtime":
        missing = [
            f"BATON_{name.upper()}"
            for name, field in Settings.model_fields.items()
            if field.is_required() and not given(f"BATON_{name.upper()}")
        ]
    missing += [f"{a} or {b}" for a, b in pairs if not (given(a) or given(b))]
    uses_aws = needs == "runtime" or given("BATON_DATABASE_SECRET_ARN")
    if uses_aws and not (given("AWS_REGION") or given("AWS_DEFAULT_REGION")):
        import boto3

        if boto3.session.Session().region_name is None:
            missing.append("AWS_REGION")
    return missing


def _check_settings(args: argparse.Namespace) -> None:
    from baton.runtime import has_runtime

    needs = getattr(args, "needs", None)
    if needs is None or (needs == "database" and getattr(args, "database_url", None)):
        return
    if getattr(args, "via_api", False):
        args.api_url = args.api_url or os.environ.get("BATON_STATUS_API_URL")
        if args.api_url:  # through the signed API: no settings of ours
            return
    elif getattr(args, "api_url", None):
        raise SettingsError(
            f"baton {args.command} reads the database and Redis: run it where the stack's "
            "settings reach them (inside the VPC, or --local); through the status API "
            "(--api-url) only task show, task why and task cancel work"
        )
    if needs == "runtime" and has_runtime():  # built already (the process set it up)
        return
    missing = _missing_settings(needs, os.environ)
    if missing:
        raise SettingsError(
            f"settings missing: {', '.join(missing)} "
            f"(set them, or use --local against a running `baton local`)"
        )


def _use_local(state_dir: str) -> None:
    """Take the settings of the local stack that ``baton local`` runs: its env file, over
    whatever the environment says."""
    folder = Path(state_dir)
    env_file, outputs_file = folder / "env", folder / "outputs.json"
    if not env_file.is_file():
        raise SettingsError(
            f"--local: no {env_file}: start the local stack first (`baton local`, in "
            "this directory or with --state-dir)"
        )
    try:
        pid = int(json.loads(outputs_file.read_text()).get("pid", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        pid = 0
    if pid and not _running(pid):
        raise SettingsError(f"--local: the local stack of {folder} (pid {pid}) is not running")
    os.environ.update(read_env_file(env_file))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines, values quoted as a shell would read them; ``#`` comments."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        key, sep, raw = text.partition("=")
        try:
            words = shlex.split(raw)
        except ValueError:
            words = None
        if not sep or not key.isidentifier() or words is None or len(words) > 1:
            raise SettingsError(f"{path}:{number}: not a KEY=VALUE line")
        values[key] = words[0] if words else ""
    return values


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


def _task_ref(args: argparse.Namespace) -> TaskRef:
    from baton.retrying import TaskRef

    return TaskRef(task_id=args.task_id, app=args.app, idempotency_key=args.key)


def _api_client(args: argparse.Namespace) -> BatonClient:
    """The SDK's client of the signed status API (``--api-url``): from outside the VPC,
    with the caller's own AWS credentials, no database or Redis needed."""
    from baton_sdk import BatonClient

    return BatonClient("", api_url=str(args.api_url).rstrip("/"))


def _task_view(args: argparse.Namespace, ref: TaskRef) -> TaskView:
    """The task as the status API answers it: through the API with ``--api-url``, else
    read here (the same function the API runs)."""
    if args.api_url:
        client = _api_client(args)
        if ref.task_id is not None:
            return client.status(ref.task_id)
        return client.status_by_key(ref.app or "", ref.idempotency_key or "")
    from baton.retrying import find_task
    from baton.runtime import get_runtime
    from baton.status import task_view

    runtime = get_runtime()
    return task_view(runtime, find_task(runtime, ref))


def _task_show(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    try:
        ref = _task_ref(args)
    except ValidationError as exc:
        return _invalid(exc)
    print(_task_view(args, ref).model_dump_json(indent=2))
    return 0


def _task_cancel(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from baton.cancellation import CancelOutcome, cancel_task, cancel_task_by_key
    from baton.retrying import TaskRef, task_summary
    from baton.runtime import get_runtime

    try:
        ref = TaskRef(task_id=args.task_id, app=args.app, idempotency_key=args.key)
    except ValidationError as exc:
        return _invalid(exc)
    if args.api_url:
        return _task_cancel_via_api(args, ref)
    runtime = get_runtime()
    # The cancel message's own implementation: the task ends cancelled with its one
    # notification, and a running attempt is stopped at its algorithm.
    if ref.task_id is not None:
        result = _quietly(lambda: cancel_task(runtime, ref.task_id or "", args.reason))
    else:
        result = _quietly(
            lambda: cancel_task_by_key(
                runtime, ref.app or "", ref.idempotency_key or "", args.reason
            )
        )
    document: dict[str, Any] = {"outcome": result.outcome.value}
    if result.task is not None:
        document |= task_summary(result.task)
    if args.json:
        _print_document(document)
    elif result.outcome is CancelOutcome.CANCELLED:
        print(f"task {document['task_id']} cancelled")
    elif result.outcome is CancelOutcome.KEPT:
        print(
            f"no task of {ref.app} with that key yet: the cancel is kept, and the task "
            "will end cancelled if it arrives"
        )
    elif result.outcome is CancelOutcome.ALREADY_FINAL:
        print(f"baton: task {document['task_id']} is already {document['status']}", file=sys.stderr)
    else:
        print(f"baton: task {ref.task_id} does not exist", file=sys.stderr)
    return 0 if result.outcome in (CancelOutcome.CANCELLED, CancelOutcome.KEPT) else _REFUSED_EXIT


def _task_cancel_via_api(args: argparse.Namespace, ref: TaskRef) -> int:
    client = _api_client(args)
    outcome = client.cancel_via_api(
        ref.task_id, app=ref.app, idempotency_key=ref.idempotency_key, reason=args.reason
    )
    document: dict[str, Any] = {"outcome": outcome.outcome, "status": outcome.status}
    if outcome.task is not None:
        document["task_id"] = outcome.task.task_id
    if args.json:
        _print_document(document)
    elif outcome.outcome == "already_final":
        print(f"baton: the task is already {outcome.status}", file=sys.stderr)
    elif outcome.outcome == "kept":
        print(f"no task of {ref.app} with that key yet: the cancel is kept for it")
    else:
        print(f"task {document['task_id']} cancelled")
    return _REFUSED_EXIT if outcome.outcome == "already_final" else 0


def _waiting_of(args: argparse.Namespace, ref: TaskRef) -> tuple[str, str, Waiting | None]:
    """The task's id, status and ``waiting``: the status API's (``--api-url``), or read
    here by the function the API runs."""
    if args.api_url:
        view = _task_view(args, ref)
        return view.task_id, view.status, view.waiting
    from baton.retrying import find_task
    from baton.runtime import get_runtime
    from baton.waiting import explain_waiting

    runtime = get_runtime()
    task = find_task(runtime, ref)
    return task.id, task.status.value, explain_waiting(runtime, task)


def _task_why(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    try:
        ref = _task_ref(args)
    except ValidationError as exc:
        return _invalid(exc)
    task_id, status, waiting = _waiting_of(args, ref)
    if waiting is None:
        if args.json:
            print("null")
        else:
            print(f"task {task_id} is {status}: it is not waiting")
        return 0
    if args.json:
        print(waiting.model_dump_json(indent=2))
        return 0
    print(f"task {task_id} waits: {waiting.reason}")
    print(f"  {waiting.detail}")
    print(f"  ahead of it: {waiting.ahead}; running {waiting.running} of {waiting.max_concurrency}")
    if waiting.until is not None:
        print(f"  until: {waiting.until.isoformat()}")
    if waiting.eta is not None:
        print(f"  expected done by: {waiting.eta.isoformat()}")
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


# -- retry and redrive: operators give final tasks a new outcome, and move the intake
# DLQ's messages back -------------------------------------------------------------------

_REFUSED_EXIT = 1
"""A command that found nothing to act on, or was refused."""

_USAGE_EXIT = 2

_FLAGS = {"idempotency_key": "--key", "error_code": "--error-code", "task_id": "task_id"}


_RETRIED_COLUMNS = (
    "task_id",
    "app",
    "algorithm",
    "status",
    "attempts",
    "max_attempts",
    "error_code",
)


def _print_document(document: Any) -> None:
    print(json.dumps(document, indent=2))


def _invalid(exc: ValidationError) -> int:
    """Each bad argument by its flag and problem (pydantic's words, without the value)."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        name = ".".join(str(part) for part in error["loc"])
        flag = _FLAGS.get(name, f"--{name.replace('_', '-')}") if name else ""
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{flag}: {message}" if flag else message)
    print(f"baton: {'; '.join(problems)}", file=sys.stderr)
    return _USAGE_EXIT


def _quietly(run: Callable[[], R]) -> R:
    """Run an operation with anything it prints (the fast path's EMF metrics, flushed
    when they pile up) sent to stderr: stdout holds the command's answer alone."""
    with contextlib.redirect_stdout(sys.stderr):
        return run()


def _task_retry(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from baton.errors import RetryRefused, TaskNotFound
    from baton.retrying import TaskRef, retry_task, task_summary
    from baton.runtime import get_runtime

    try:
        ref = TaskRef(task_id=args.task_id, app=args.app, idempotency_key=args.key)
    except ValidationError as exc:
        return _invalid(exc)
    runtime = get_runtime()
    try:
        task, previous = _quietly(lambda: retry_task(runtime, ref))
    except (TaskNotFound, RetryRefused) as exc:
        print(f"baton: {exc}", file=sys.stderr)
        return _REFUSED_EXIT
    summary = {**task_summary(task), "previous_status": previous.value}
    if args.json:
        _print_document(summary)
    else:
        print(
            f"task {task.id} retried: {previous.value} -> {task.status.value}, "
            f"attempt {task.attempts + 1} of up to {task.max_attempts} next"
        )
    return 0


def _tasks_retry(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from baton.retrying import BulkRetry, bulk_retry, preview_bulk_retry
    from baton.runtime import get_runtime

    try:
        request = BulkRetry(
            status=args.status,
            app=args.app,
            algorithm=args.algorithm,
            error_code=args.error_code,
            since=args.since,
            limit=args.limit,
        )
    except ValidationError as exc:
        return _invalid(exc)
    runtime = get_runtime()
    preview = preview_bulk_retry(runtime, request)
    if not args.json:
        print(f"{preview.matched} {request.status} task(s) selected")
        if preview.tasks:
            print_table(preview.tasks, (*_RETRIED_COLUMNS, "finished_at"))
            if preview.matched > len(preview.tasks):
                print(f"... and {preview.matched - len(preview.tasks)} more")
    if args.dry_run:
        if args.json:
            _print_document(preview.as_dict())
        else:
            print("dry run: nothing changed")
        return 0
    report = _quietly(lambda: bulk_retry(runtime, request))
    if args.json:
        _print_document(report.as_dict())
    else:
        skipped = ", ".join(f"{count} {why}" for why, count in sorted(report.skipped.items()))
        print(f"{report.retried} task(s) retried" + (f"; skipped: {skipped}" if skipped else ""))
    return 0


def _sqs_client() -> Any:
    import boto3

    return boto3.client("sqs")


def _dlq_list(args: argparse.Namespace) -> int:
    from botocore.exceptions import ClientError

    from baton.dead_letters import intake_queue_urls, list_dead_letters
    from baton.rejections import kept_reasons
    from baton.runtime import get_runtime

    runtime = get_runtime()
    dlq_url, _ = intake_queue_urls(runtime.settings, redrive=False)
    try:
        total, letters = list_dead_letters(
            _sqs_client(), dlq_url, args.limit, lambda ids: kept_reasons(runtime, ids)
        )
    except ClientError as exc:
        return _aws_refused(exc)
    rows = [letter.as_dict() for letter in letters]
    if args.json:
        _print_document({"approximate_count": total, "messages": rows})
        return 0
    print(f"about {total} message(s) in the intake DLQ; {len(rows)} shown")
    if rows:
        print_table(rows, ("message_id", "receive_count", "app", "reason", "body"))
        if not all(letter.reason for letter in letters):
            print(
                "a reason not shown is in the intake log ('task message rejected', under "
                "the message id)"
            )
    return 0


def _dlq_redrive(args: argparse.Namespace) -> int:
    from botocore.exceptions import ClientError

    from baton.dead_letters import RedriveProgress, intake_queue_urls, redrive
    from baton.runtime import get_runtime

    dlq_url, queue_url = intake_queue_urls(get_runtime().settings, redrive=True)
    assert queue_url is not None
    shown: list[tuple[str, int]] = []

    def show(progress: RedriveProgress) -> None:
        if shown and shown[-1] == (progress.status, progress.moved):
            return
        shown.append((progress.status, progress.moved))
        of = f" of {progress.to_move}" if progress.to_move is not None else ""
        # Progress is for people: with --json it goes to stderr, beside the document.
        print(
            f"{progress.status.lower()}: {progress.moved}{of} moved ({progress.method})",
            file=sys.stderr if args.json else sys.stdout,
        )

    try:
        report = redrive(
            _sqs_client(),
            dlq_url,
            queue_url,
            method=args.method.replace("-", "_"),
            on_progress=show,
            poll_seconds=args.poll_seconds,
        )
    except ClientError as exc:
        return _aws_refused(exc)
    if args.json:
        _print_document(report.as_dict())
    elif report.failure_reason:
        print(f"not all moved: {report.failure_reason}")
    return 0 if report.status == "COMPLETED" else _REFUSED_EXIT


def _aws_refused(exc: ClientError) -> int:
    error = exc.response.get("Error", {})
    print(f"baton: SQS refused: {error.get('Code')}: {error.get('Message')}", file=sys.stderr)
    return _REFUSED_EXIT


def _add_retry_and_redrive_commands(commands: _Commands, task_commands: _Commands) -> _Commands:
    """Returns the ``tasks`` subcommands, for the views to join."""
    operator = [_operator_options()]
    retry = task_commands.add_parser(
        "retry",
        help="give a final task a new outcome (back to pending, fresh attempts)",
        parents=operator,
    )
    retry.add_argument("task_id", nargs="?", help="or --app and --key")
    retry.add_argument("--app", help="with --key: the task of this app ...")
    retry.add_argument("--key", help="... with this idempotency key")
    retry.add_argument("--json", action="store_true", help="one JSON document")
    retry.set_defaults(run=_task_retry, needs="runtime")

    tasks = commands.add_parser("tasks", help="act on many tasks at once")
    tasks_commands = tasks.add_subparsers(dest="tasks", required=True)
    bulk = tasks_commands.add_parser(
        "retry",
        help="retry the final tasks that match, in batches (see --dry-run)",
        parents=operator,
    )
    bulk.add_argument("--status", required=True, choices=("failed", "timed_out", "cancelled"))
    bulk.add_argument("--app")
    bulk.add_argument("--algorithm")
    bulk.add_argument("--error-code", help="the final error.code, e.g. dispatch_failed")
    bulk.add_argument(
        "--since", help="ended at or after this time (ISO 8601 with an offset)", metavar="TIME"
    )
    bulk.add_argument("--limit", type=int, help="retry at most this many, oldest ended first")
    bulk.add_argument("--dry-run", action="store_true", help="count and show them; change nothing")
    bulk.add_argument("--json", action="store_true", help="one JSON document")
    bulk.set_defaults(run=_tasks_retry, needs="runtime")

    dlq = commands.add_parser("dlq", help="the intake queue's dead-letter queue")
    dlq_commands = dlq.add_subparsers(dest="dlq", required=True)
    listing = dlq_commands.add_parser(
        "list", help="the messages waiting there (none deleted)", parents=operator
    )
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="one JSON document")
    listing.set_defaults(run=_dlq_list, needs="runtime")
    redrive = dlq_commands.add_parser(
        "redrive", help="move them back to the intake queue", parents=operator
    )
    redrive.add_argument(
        "--method",
        choices=("auto", "move-task", "receive-send"),
        default="auto",
        help="move-task: SQS moves them (StartMessageMoveTask); receive-send: by hand, ten "
        "at a time, each sent again under your identity; auto (default): the move task, "
        "by hand where SQS cannot run one",
    )
    redrive.add_argument("--poll-seconds", type=float, default=2.0, help=argparse.SUPPRESS)
    redrive.add_argument("--json", action="store_true", help="one JSON document")
    redrive.set_defaults(run=_dlq_redrive, needs="runtime")
    return tasks_commands


# -- end of retry and redrive -------------------------------------------------------------


# -- the views: operators read the newest tasks and each algorithm's numbers --------------


def _tasks_list(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from baton.runtime import get_runtime
    from baton.stats import LIST_COLUMNS, TaskFilter, list_tasks

    try:
        request = TaskFilter(
            app=args.app,
            algorithm=args.algorithm,
            status=args.status,
            since=args.since,
            limit=args.limit,
        )
    except ValidationError as exc:
        return _invalid(exc)
    tasks = list_tasks(get_runtime(), request)
    if args.json:
        _print_document(tasks)
        return 0
    print(f"{len(tasks)} task(s), newest first")
    if tasks:
        print_table(tasks, LIST_COLUMNS)
    return 0


def _stats(args: argparse.Namespace) -> int:
    from baton.runtime import get_runtime
    from baton.stats import STATS_COLUMNS, algorithm_stats

    report = algorithm_stats(get_runtime())
    if args.json:
        _print_document(report.as_dict())
        return 0
    print(report.heading())
    print_table(report.rows(), STATS_COLUMNS)
    return 0


def _add_view_commands(commands: _Commands, tasks_commands: _Commands) -> None:
    operator = [_operator_options()]
    listing = tasks_commands.add_parser(
        "list", help="the newest tasks that match, newest first", parents=operator
    )
    listing.add_argument("--app")
    listing.add_argument("--algorithm")
    listing.add_argument(
        "--status",
        choices=("pending", "queued", "running", "succeeded", "failed", "timed_out", "cancelled"),
    )
    listing.add_argument(
        "--since", help="created at or after this time (ISO 8601 with an offset)", metavar="TIME"
    )
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.add_argument("--json", action="store_true", help="one JSON document (an array)")
    listing.set_defaults(run=_tasks_list, needs="runtime")

    stats = commands.add_parser(
        "stats",
        help="per algorithm: pending, queued, running/cap, oldest pending age, queue wait "
        "and run time p50/p95, timeouts in the last hour",
        parents=operator,
    )
    stats.add_argument("--json", action="store_true", help="one JSON document, keyed by algorithm")
    stats.set_defaults(run=_stats, needs="runtime")


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


def _log_to_stderr() -> Callable[[], None]:
    """A command's output is stdout's alone, so that a script can parse it; the
    package's log lines (such as the cold start's open-mode warning) go to stderr, as
    lines for a person to read rather than the functions' JSON. Returns what puts the
    JSON back (the logger is the process's: a caller in-process keeps its format)."""
    import logging

    from baton.observability import logger

    handler = logger.registered_handler
    if not isinstance(handler, logging.StreamHandler):
        return lambda: None
    handler.setStream(_CurrentStderr())
    structured = handler.formatter
    handler.setFormatter(logging.Formatter("baton: %(levelname)s: %(message)s"))
    return lambda: handler.setFormatter(structured)


class _CurrentStderr:
    """Whatever ``sys.stderr`` is when a line is written (a caller may replace it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _add_task_ref(command: argparse.ArgumentParser) -> None:
    command.add_argument("task_id", nargs="?", help="or --app and --key")
    command.add_argument("--app", help="with --key: the task of this app ...")
    command.add_argument("--key", help="... with this idempotency key")
    command.set_defaults(via_api=True)


def _operator_options() -> argparse.ArgumentParser:
    """``--local`` and ``--state-dir``, shared by every command that reaches a stack."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--local",
        action="store_true",
        help="against the stack `baton local` runs here (reads its env file)",
    )
    options.add_argument(
        "--state-dir",
        default=LOCAL_STATE_DIR,
        help=f"the state directory of `baton local` (default {LOCAL_STATE_DIR})",
    )
    options.add_argument(
        "--api-url",
        help="through the signed status API at this URL (stack output StatusApiUrl; default "
        "BATON_STATUS_API_URL), with your AWS credentials, from outside the VPC: task "
        "show, why and cancel (the other commands need the database)",
    )
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="baton", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    operator = [_operator_options()]

    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db", required=True)
    upgrade = db.add_parser("upgrade", help="apply the Alembic migrations", parents=operator)
    upgrade.add_argument("--database-url", help="default: BATON_DATABASE_URL or the secret")
    upgrade.add_argument("--revision", default="head")
    upgrade.set_defaults(run=_db_upgrade, needs="database")

    task = commands.add_parser("task", help="inspect or cancel one task")
    task_commands = task.add_subparsers(dest="task", required=True)
    show = task_commands.add_parser(
        "show", help="a task and its attempts as JSON", parents=operator
    )
    _add_task_ref(show)
    show.set_defaults(run=_task_show, needs="runtime")
    why = task_commands.add_parser(
        "why", help="why a pending or queued task waits", parents=operator
    )
    _add_task_ref(why)
    why.add_argument("--json", action="store_true", help="the waiting object, as JSON")
    why.set_defaults(run=_task_why, needs="runtime")
    cancel = task_commands.add_parser(
        "cancel", help="cancel a task that has not finished", parents=operator
    )
    _add_task_ref(cancel)
    cancel.add_argument("--reason", default="cancelled by operator")
    cancel.add_argument("--json", action="store_true", help="one JSON document")
    cancel.set_defaults(run=_task_cancel, needs="runtime")

    algorithm = commands.add_parser(
        "algorithm", help="pause or resume one algorithm, or print its signing secret"
    )
    algorithm_commands = algorithm.add_subparsers(dest="algorithm", required=True)
    pause = algorithm_commands.add_parser(
        "pause", help="admit no more of its tasks (running attempts finish)", parents=operator
    )
    pause.add_argument("name")
    pause.add_argument("--reason", default="paused by operator")
    pause.set_defaults(run=_algorithm_pause, needs="runtime")
    resume = algorithm_commands.add_parser("resume", help="admit its tasks again", parents=operator)
    resume.add_argument("name")
    resume.set_defaults(run=_algorithm_resume, needs="runtime")
    secret = algorithm_commands.add_parser(
        "secret",
        help="print the whsec_... secret its service verifies dispatch requests with "
        "(during a rotation, then each key's, with its key id)",
        parents=operator,
    )
    secret.add_argument("name")
    secret.add_argument("--json", action="store_true", help="one JSON document")
    secret.set_defaults(run=_algorithm_secret)

    reconcile = commands.add_parser(
        "reconcile", help="rebuild Redis state from the database", parents=operator
    )
    reconcile.set_defaults(run=_reconcile, needs="runtime")

    openapi = commands.add_parser("openapi", help="print the callback API's OpenAPI document")
    openapi.set_defaults(run=_openapi)

    # retry and redrive (task retry, tasks retry, dlq list|redrive)
    tasks_commands = _add_retry_and_redrive_commands(commands, task_commands)
    # the views (tasks list, stats)
    _add_view_commands(commands, tasks_commands)

    _add_plugin_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    # parse_args, except that a command that is not installed takes any flags, so that it
    # can say what is missing instead of what it does not recognise.
    if unknown and not getattr(args, "accepts_any_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    restore_logs = _log_to_stderr()
    try:
        if getattr(args, "local", False):
            _use_local(args.state_dir)
        _check_settings(args)
        return int(args.run(args))
    except ApiError as exc:  # not found, or refused (a task that has finished)
        print(f"baton: {exc}", file=sys.stderr)
        return 1
    except BatonSdkError as exc:  # the same, answered by the status API (--api-url)
        print(f"baton: {exc}", file=sys.stderr)
        return 1
    except SettingsError as exc:
        print(f"baton: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        unreachable = _unreachable(exc)
        if unreachable is None:
            raise
        print(f"baton: {unreachable}", file=sys.stderr)
        return 2
    finally:
        restore_logs()


def _unreachable(exc: Exception) -> str | None:
    """One line for a database or a Redis that the settings point at and that does not
    answer (a wrong address, a local stack that is gone); None for anything else, which
    is a bug to see whole. Their modules are loaded by then: a command that reached one
    imported it."""
    database = sys.modules.get("sqlalchemy.exc")
    if database is not None and isinstance(exc, database.OperationalError):
        first = str(exc.orig).splitlines()[0] if exc.orig is not None else type(exc).__name__
        return f"the database does not answer (BATON_DATABASE_URL or its secret): {first}"
    cache = sys.modules.get("redis.exceptions")
    if cache is not None and isinstance(exc, cache.ConnectionError | cache.TimeoutError):
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"Redis does not answer (BATON_REDIS_URL): {first}"
    return None


if __name__ == "__main__":
    raise SystemExit(main())
