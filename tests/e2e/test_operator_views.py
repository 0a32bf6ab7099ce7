"""``baton tasks list`` and ``baton stats`` over a known history: tasks of two apps and
two algorithms in every state, their attempts at known moments, a frozen clock, and
the cost in flight in Redis. The tables and the JSON documents are compared whole."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from baton.runtime import Runtime, set_runtime

from tests.support.clock import FrozenClock
from tests.support.console import baton
from tests.support.runtime import TOKEN_SECRET, RuntimeFactory
from tests.support.services import REDIS_URL

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def at(clock: str) -> datetime:
    """A moment of NOW's day, ``HH:MM:SS``."""
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return NOW.replace(hour=hours, minute=minutes, second=seconds)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


def attempt(
    number: int, status: str, dispatched: datetime, finished: datetime | None, deadline: datetime
) -> dict[str, Any]:
    return {
        "attempt": number,
        "status": status,
        "created_at": dispatched,
        "finished_at": finished,
        "deadline": deadline,
    }


# id -> (app, algorithm, status, created, not_before, updated, error_code, attempts)
TASKS: dict[str, tuple[str, str, str, datetime, datetime, datetime, str | None, list[Any]]] = {
    "t-old": (
        "contracts",
        "ocr",
        "succeeded",
        NOW - timedelta(days=2),
        NOW - timedelta(days=2),
        NOW - timedelta(days=2, seconds=-60),
        None,
        [
            attempt(
                1,
                "succeeded",
                NOW - timedelta(days=2, seconds=-20),
                NOW - timedelta(days=2, seconds=-60),
                NOW - timedelta(days=2, seconds=-320),
            )
        ],
    ),
    "n3": (
        "contracts",
        "nlp",
        "pending",
        at("10:00:00"),
        at("11:50:00"),  # its retry's backoff
        at("10:30:30"),
        "timeout",
        [attempt(1, "timed_out", at("10:00:20"), at("10:30:30"), at("10:30:00"))],
    ),
    "t1": (
        "contracts",
        "ocr",
        "succeeded",
        at("11:00:00"),
        at("11:00:00"),
        at("11:01:40"),
        None,
        [attempt(1, "succeeded", at("11:00:10"), at("11:01:40"), at("11:10:10"))],
    ),
    "t2": (
        "contracts",
        "ocr",
        "failed",
        at("11:20:00"),
        at("11:20:00"),
        at("11:21:00"),
        "unreadable",
        [attempt(1, "failed", at("11:20:30"), at("11:21:00"), at("11:30:30"))],
    ),
    "t3": (
        "billing",
        "ocr",
        "timed_out",
        at("11:30:00"),
        at("11:30:00"),
        at("11:31:35"),
        "timeout",
        [attempt(1, "timed_out", at("11:30:05"), at("11:31:35"), at("11:31:05"))],
    ),
    "n1": (
        "contracts",
        "nlp",
        "succeeded",
        at("11:40:00"),
        at("11:40:00"),
        at("11:40:50"),
        None,
        [
            attempt(1, "dispatch_failed", at("11:40:01"), at("11:40:02"), at("11:50:01")),
            attempt(2, "succeeded", at("11:40:20"), at("11:40:50"), at("11:50:20")),
        ],
    ),
    "n2": (
        "billing",
        "nlp",
        "cancelled",
        at("11:45:00"),
        at("11:45:00"),
        at("11:46:00"),
        "cancelled",
        [],
    ),
    "t4": (
        "billing",
        "ocr",
        "running",
        at("11:50:00"),
        at("11:50:00"),
        at("11:52:00"),
        None,
        [attempt(1, "running", at("11:52:00"), None, at("12:02:00"))],
    ),
    "t5": (
        "contracts",
        "ocr",
        "pending",
        at("11:55:00"),
        at("11:55:00"),
        at("11:55:00"),
        None,
        [],
    ),
    "t6": (
        "contracts",
        "ocr",
        "queued",
        at("11:58:00"),
        at("11:58:00"),
        at("11:58:30"),
        None,
        [],
    ),
    "t7": (
        "billing",
        "ocr",
        "pending",
        at("11:59:00"),
        at("13:00:00"),  # asked to start later: not due yet
        at("11:59:00"),
        None,
        [],
    ),
}
NEWEST_FIRST = ["t7", "t6", "t5", "t4", "n2", "n1", "t3", "t2", "t1", "n3", "t-old"]


def naive(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC).replace(tzinfo=None)


def seed(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    metadata = sa.MetaData()
    task = sa.Table("task", metadata, autoload_with=engine)
    execution = sa.Table("task_execution", metadata, autoload_with=engine)
    with engine.begin() as connection:
        for task_id, (
            app,
            algorithm,
            status,
            created,
            not_before,
            updated,
            error,
            attempts,
        ) in TASKS.items():
            final = status in ("succeeded", "failed", "timed_out", "cancelled")
            connection.execute(
                task.insert().values(
                    id=task_id,
                    app=app,
                    algorithm=algorithm,
                    idempotency_key=f"key-{task_id}",
                    priority=0,
                    input="{}",
                    metadata="{}",
                    timeout_seconds=600,
                    max_attempts=3,
                    cost=1,
                    status=status,
                    attempts=len(attempts),
                    not_before=naive(not_before),
                    created_at=naive(created),
                    updated_at=naive(updated),
                    first_dispatched_at=naive(attempts[0]["created_at"]) if attempts else None,
                    finished_at=naive(updated) if final else None,
                    error_code=error,
                )
            )
            for one in attempts:
                connection.execute(
                    execution.insert().values(
                        task_id=task_id,
                        algorithm=algorithm,
                        app=app,
                        cost=1,
                        result_key="k",
                        upload_expires_at=naive(one["deadline"]),
                        **{
                            key: naive(value) if isinstance(value, datetime) else value
                            for key, value in one.items()
                        },
                    )
                )
    engine.dispose()


@pytest.fixture
def history(
    make_runtime: RuntimeFactory, clean_database: str, redis_client: redis.Redis
) -> Runtime:
    runtime = make_runtime()
    seed(clean_database)
    # t4 is in flight: what admission counted when it took the slot
    redis_client.hset(runtime.queue.keys("ocr").counts, "inflight", 1)
    return runtime


def summary(task_id: str) -> dict[str, Any]:
    app, algorithm, status, created, _, updated, error, attempts = TASKS[task_id]
    final = status in ("succeeded", "failed", "timed_out", "cancelled")
    return {
        "task_id": task_id,
        "app": app,
        "algorithm": algorithm,
        "idempotency_key": f"key-{task_id}",
        "status": status,
        "created_at": created.isoformat(),
        "attempts": len(attempts),
        "max_attempts": 3,
        "error_code": error,
        "finished_at": updated.isoformat() if final else None,
    }


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], NEWEST_FIRST),
        (["--app", "billing"], ["t7", "t4", "n2", "t3"]),
        (["--algorithm", "nlp"], ["n2", "n1", "n3"]),
        (["--status", "pending"], ["t7", "t5", "n3"]),
        (["--since", "2026-11-27T12:30:00+01:00"], ["t7", "t6", "t5", "t4", "n2", "n1", "t3"]),
        (["--since", "2026-11-25T00:00:00Z", "--status", "succeeded"], ["n1", "t1", "t-old"]),
        (["--limit", "3"], ["t7", "t6", "t5"]),
        (["--limit", "10"], NEWEST_FIRST[:10]),
        (
            ["--app", "contracts", "--algorithm", "ocr", "--status", "succeeded"],
            ["t1", "t-old"],
        ),
        (["--app", "nobody"], []),
    ],
)
def test_tasks_list_json_is_the_newest_that_match_newest_first(
    history: Runtime, capsys: pytest.CaptureFixture[str], flags: list[str], expected: list[str]
) -> None:
    code, out, err = baton(capsys, "tasks", "list", *flags, "--json")
    assert code == 0, err
    assert json.loads(out) == [summary(task_id) for task_id in expected]


def test_tasks_list_table(history: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = baton(capsys, "tasks", "list", "--app", "billing")
    assert code == 0, err
    assert out.splitlines() == [
        "4 task(s), newest first",
        "task_id  app      algorithm  idempotency_key  status     attempts  error_code  "
        "created_at                 finished_at",
        "-------  -------  ---------  ---------------  ---------  --------  ----------  "
        "-------------------------  -------------------------",
        "t7       billing  ocr        key-t7           pending    0         -           "
        "2026-11-27T11:59:00+00:00  -",
        "t4       billing  ocr        key-t4           running    1         -           "
        "2026-11-27T11:50:00+00:00  -",
        "n2       billing  nlp        key-n2           cancelled  0         cancelled   "
        "2026-11-27T11:45:00+00:00  2026-11-27T11:46:00+00:00",
        "t3       billing  ocr        key-t3           timed_out  1         timeout     "
        "2026-11-27T11:30:00+00:00  2026-11-27T11:31:35+00:00",
    ]
    code, out, _ = baton(capsys, "tasks", "list", "--app", "nobody")
    assert (code, out) == (0, "0 task(s), newest first\n")


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (["--since", "2026-11-27T12:00:00"], "--since: "),
        (["--limit", "0"], "--limit: "),
        (["--app", "no spaces"], "--app: "),
    ],
)
def test_tasks_list_refuses_bad_flags_by_name(
    history: Runtime, capsys: pytest.CaptureFixture[str], flags: list[str], problem: str
) -> None:
    code, out, err = baton(capsys, "tasks", "list", *flags)
    assert (code, out) == (2, "")
    assert err.startswith(f"baton: {problem}"), err


EXPECTED_STATS = {
    "ocr": {
        "registered": True,
        "pending": 2,  # t5, and t7 that is not due yet
        "queued": 1,
        "running": 1,
        "max_concurrency": 2,
        "oldest_pending_age_seconds": 300.0,  # t5, due at 11:55 (t7 is not due)
        # first dispatches in the last hour: t1 10 s, t2 30 s, t3 5 s, t4 120 s
        "queue_wait_p50_seconds": 10.0,
        "queue_wait_p95_seconds": 120.0,
        # attempts the algorithm ended in the last hour: t1 90 s, t2 30 s
        "run_time_p50_seconds": 30.0,
        "run_time_p95_seconds": 90.0,
        "timeouts_last_hour": 1,
        "window_seconds": 3600,
        "sampled_attempts": 4,
    },
    "nlp": {
        "registered": True,
        "pending": 1,
        "queued": 0,
        "running": 0,
        "max_concurrency": 3,
        "oldest_pending_age_seconds": 600.0,  # n3, due again at 11:50 after its backoff
        "queue_wait_p50_seconds": 1.0,  # n1's first attempt (n3's was two hours ago)
        "queue_wait_p95_seconds": 1.0,
        "run_time_p50_seconds": 30.0,  # n1's second attempt (the first never ran)
        "run_time_p95_seconds": 30.0,
        "timeouts_last_hour": 0,  # n3's timeout was 90 minutes ago
        "window_seconds": 3600,
        "sampled_attempts": 2,
    },
}


def test_stats_json_per_algorithm(history: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = baton(capsys, "stats", "--json")
    assert code == 0, err
    assert json.loads(out) == EXPECTED_STATS


def test_stats_table(history: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = baton(capsys, "stats")
    assert code == 0, err
    assert out.splitlines() == [
        "at 2026-11-27T12:00:00+00:00; percentiles (nearest rank) and timeouts over the last "
        "60 minutes: 6 attempt(s)",
        "algorithm  pending  queued  running/cap  oldest pending  queue wait p50/p95  "
        "run time p50/p95  timeouts 1h",
        "---------  -------  ------  -----------  --------------  ------------------  "
        "----------------  -----------",
        "nlp        1        0       0/3          10m00s          1.0s / 1.0s         "
        "30s / 30s         0",
        "ocr        2        1       1/2          5m00s           10s / 2m00s         "
        "30s / 1m30s       1",
    ]


def test_stats_of_an_algorithm_gone_from_the_registry(
    make_runtime: RuntimeFactory, clean_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given tasks of nlp, and a registry that no longer has it
    make_runtime(algorithms={"ocr": {"endpoint": "http://127.0.0.1:9/ocr", "max_concurrency": 4}})
    seed(clean_database)
    code, out, err = baton(capsys, "stats", "--json")
    assert code == 0, err
    nlp = json.loads(out)["nlp"]
    assert (nlp["registered"], nlp["max_concurrency"], nlp["pending"]) == (False, None, 1)
    code, out, _ = baton(capsys, "stats")
    assert "nlp (unregistered)  1        0       0/-" in out


def test_one_task_commands_still_answer(
    history: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = baton(capsys, "task", "show", "t4")
    assert code == 0
    shown = json.loads(out)
    assert (shown["task_id"], shown["status"], shown["executions"][0]["status"]) == (
        "t4",
        "running",
        "running",
    )
    code, out, _ = baton(capsys, "task", "why", "t5", "--json")
    assert code == 0
    reason = json.loads(out)["reason"]
    assert reason in {"recovering", "capacity"}
    code, out, _ = baton(capsys, "task", "why", "t5")
    assert (code, out.splitlines()[0]) == (0, f"task t5 waits: {reason}")
    code, out, _ = baton(capsys, "task", "show", "--app", "billing", "--key", "key-t4")
    assert (code, json.loads(out)["task_id"]) == (0, "t4")
    code, out, _ = baton(capsys, "task", "why", "t1")
    assert (code, out) == (0, "task t1 is succeeded: it is not waiting\n")
    assert baton(capsys, "task", "show", "no-such-task")[0] == 1
    code, out, _ = baton(capsys, "algorithm", "secret", "ocr")
    assert code == 0
    assert out.startswith("whsec_")


@pytest.fixture
def environment(
    monkeypatch: pytest.MonkeyPatch, clean_database: str
) -> Iterator[Callable[..., None]]:
    """The settings of a deployment, as an operator's shell would hold them (no runtime
    built yet); keyword arguments replace some."""

    def use(**changes: str) -> None:
        values = {
            "BATON_DATABASE_URL": clean_database,
            "BATON_REDIS_URL": REDIS_URL,
            "BATON_RESULT_BUCKET": "results",
            "BATON_NOTIFICATION_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:baton",
            "BATON_CALLBACK_BASE_URL": "https://api.example.com/prod",
            "BATON_TOKEN_SECRET": TOKEN_SECRET,
            "BATON_ALGORITHMS": json.dumps(
                {"ocr": {"endpoint": "http://127.0.0.1:9/ocr", "max_concurrency": 2}}
            ),
        }
        values.update(changes)
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        set_runtime(None)

    yield use
    set_runtime(None)


@pytest.mark.parametrize(
    ("argv", "changes", "said"),
    [
        (["stats"], {"BATON_REDIS_URL": "redis://127.0.0.1:1/0"}, "Redis does not answer"),
        (
            ["tasks", "list"],
            {"BATON_DATABASE_URL": "mysql+pymysql://root@127.0.0.1:1/baton"},
            "the database does not answer",
        ),
    ],
)
def test_a_server_that_does_not_answer_is_one_line(
    environment: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    changes: dict[str, str],
    said: str,
) -> None:
    environment(**changes)
    code, out, err = baton(capsys, *argv)
    assert (code, out) == (2, "")
    # (after the cold start's warning of open mode)
    assert err.splitlines()[-1].startswith(f"baton: {said}"), err
    assert "Traceback" not in err


def test_a_command_that_needs_the_database_says_so_when_asked_through_the_api(
    history: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["stats"], ["tasks", "list"], ["tasks", "retry", "--status", "failed"]):
        code, out, err = baton(capsys, *command, "--api-url", "https://api.example/prod")
        assert (code, out) == (2, ""), command
        assert "reads the database and Redis" in err, command
        assert "task show, task why and task cancel" in err, command
