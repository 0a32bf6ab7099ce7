"""Races against the real MariaDB and Redis, with real threads and real processes
('spawn' context: children get URLs and the key prefix, never live objects).

1. concurrent deliveries of one task message -> one row, one creator;
2. concurrent promoters -> every PENDING task claimed exactly once (SKIP LOCKED);
3. concurrent admission/dispatch loops -> the concurrency cap holds at every sample,
   every task runs exactly once;
4. two actors ending the same attempt -> one winner, one notification;
5. (3) with Redis flushed in the middle and restored from the database.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest
import redis
import sqlalchemy as sa
from baton.errors import RedisStateLost
from baton.policy import PolicyWriter
from baton.queue import SlotConfirmation, TaskQueue
from baton.records import AttemptOutcome, ExecutionStatus, NewTask, Slot, TaskStatus
from baton.registries import Registries, RegistrySource
from baton.registry import parse_algorithm_registry
from baton.repository import Repository

from tests.support.admission import ENDPOINT, arm, members
from tests.support.database import (
    ALGORITHM,
    NewTaskFactory,
    build_repository,
    count_rows,
    seed_tasks,
    stored_execution,
    stored_task,
    utcnow,
)
from tests.support.services import REDIS_URL, flush_prefix

CTX = multiprocessing.get_context("spawn")
CAP = 3
WAIT = 60  # seconds any single wait may take before the test gives up
SUCCEEDED = AttemptOutcome(ExecutionStatus.SUCCEEDED, TaskStatus.SUCCEEDED)
TIMED_OUT = AttemptOutcome(ExecutionStatus.TIMED_OUT, TaskStatus.TIMED_OUT, "timed_out", "late")

Shared = dict[str, Any]
Worker = Callable[[Repository, redis.Redis, str, Shared, str], None]


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


# -- workers: run as threads here and as threads inside spawned processes ---------------


def _add_worker(
    repository: Repository, _client: redis.Redis, _prefix: str, shared: Shared, who: str
) -> None:
    """One delivery of the same task message: same (app, key), a fresh id each time."""
    now = utcnow()
    new = NewTask(
        id=str(uuid.uuid4()),
        app="contracts",
        algorithm=ALGORITHM,
        idempotency_key=shared["key"],
        priority=0,
        input={"from": who},
        metadata={},
        timeout_seconds=30,
        max_attempts=3,
        not_before=now,
        created_at=now,
    )
    shared["barrier"].wait(WAIT)
    task, created = repository.add_task(new)
    shared["results"].put({"who": who, "task_id": task.id, "created": created})


def _claim_worker(
    repository: Repository, _client: redis.Redis, _prefix: str, shared: Shared, who: str
) -> None:
    """A promoter: claim small batches until nothing eligible is left."""
    claimed: list[str] = []
    shared["barrier"].wait(WAIT)
    empty_rounds = 0
    while empty_rounds < 3:
        batch = repository.queue_pending_tasks(ALGORITHM, utcnow(), shared["batch"])
        if batch:
            empty_rounds = 0
            claimed += [queued.task_id for queued in batch]
            assert all(queued.attempt == 1 for queued in batch)
        else:
            empty_rounds += 1
            time.sleep(0.005)
    shared["results"].put({"who": who, "claimed": claimed})


def _admission_worker(
    repository: Repository, client: redis.Redis, prefix: str, shared: Shared, who: str
) -> None:
    """What dispatch does, with the algorithm call replaced by a short sleep:
    admit -> start_attempt -> confirm_slot -> run -> finish_attempt -> release.

    When Redis has no state (RedisStateLost, LOST) the worker waits for the test's
    reconcile instead of reconciling itself. Promotes when the ready queue is empty.
    """
    queue = TaskQueue(client, prefix)
    done, stop, in_flight, peak = (
        shared["done"],
        shared["stop"],
        shared["in_flight"],
        shared["peak"],
    )
    summary: dict[str, Any] = {
        "who": who,
        "starts": [],
        "dispatched": [],
        "undone": 0,
        "dropped": 0,
        "lost": 0,
        "error": None,
    }

    def confirm(slot: Slot, deadline: Any) -> SlotConfirmation:
        answer = queue.confirm_slot(ALGORITHM, slot, deadline)
        give_up = time.monotonic() + WAIT
        while answer is SlotConfirmation.LOST and time.monotonic() < give_up:
            summary["lost"] += 1
            _count(shared["lost_seen"])
            time.sleep(0.002)
            answer = queue.confirm_slot(ALGORITHM, slot, deadline)
        return answer

    try:
        shared["barrier"].wait(WAIT)
        while not stop.is_set() and done.value < shared["total"]:
            now = utcnow()
            try:
                # The cap is the policy's: written by the test's reconcile (and lost with
                # the rest of Redis's data, so admission waits for that reconcile).
                admitted = queue.admit(ALGORITHM, now + timedelta(seconds=60), 1).slots
            except RedisStateLost:
                summary["lost"] += 1
                _count(shared["lost_seen"])
                time.sleep(0.002)
                continue
            if not admitted:
                if queue.ready_count(ALGORITHM) == 0:
                    queue.enqueue(ALGORITHM, repository.queue_pending_tasks(ALGORITHM, now, 5))
                time.sleep(0.001)
                continue
            (slot,) = admitted
            task_id, attempt = slot.task_id, slot.attempt
            time.sleep(shared["admit_delay"])  # a slow worker: the lease is held meanwhile
            started = repository.start_attempt(
                task_id, attempt, now, f"results/{task_id}/{attempt}", 3600, endpoint=slot.endpoint
            )
            if started is None:
                # Another worker owns (or ended) this attempt: free the slot only when
                # no active execution holds it (as scheduling._drop_lost_admission).
                execution = repository.get_execution(task_id, attempt)
                if execution is None or not execution.status.is_active:
                    queue.release(ALGORITHM, task_id, attempt)
                summary["dropped"] += 1
                continue
            summary["starts"].append((task_id, attempt))
            if confirm(slot, started.deadline) is not SlotConfirmation.OK:
                assert repository.abandon_attempt(task_id, attempt, utcnow())
                queue.release(ALGORITHM, task_id, attempt)
                summary["undone"] += 1
                continue
            # The request is "sent": from here until the outcome is recorded the
            # attempt counts against the cap.
            with in_flight.get_lock():
                in_flight.value += 1
                peak.value = max(peak.value, in_flight.value)
            summary["dispatched"].append((task_id, attempt))
            time.sleep(shared["work_seconds"])
            with in_flight.get_lock():
                in_flight.value -= 1
            finished = repository.finish_attempt(task_id, attempt, utcnow(), SUCCEEDED)
            assert finished is not None, f"{task_id}:{attempt} was ended by someone else"
            assert finished.terminal
            queue.release(ALGORITHM, task_id, attempt)
            with done.get_lock():
                done.value += 1
    except BaseException:
        summary["error"] = traceback.format_exc()
        stop.set()
        shared["barrier"].abort()
    finally:
        shared["results"].put(summary)


def _count(counter: Any) -> None:
    with counter.get_lock():
        counter.value += 1


WORKERS: dict[str, Worker] = {
    "add": _add_worker,
    "claim": _claim_worker,
    "admit": _admission_worker,
}


def _run_threads(
    kind: str, count: int, repository: Repository, client: redis.Redis, prefix: str, shared: Shared
) -> list[threading.Thread]:
    label = f"pid{os.getpid()}"
    threads = [
        threading.Thread(
            target=_guarded,
            args=(WORKERS[kind], repository, client, prefix, shared, f"{label}-t{index}"),
            daemon=True,
        )
        for index in range(count)
    ]
    for thread in threads:
        thread.start()
    return threads


def _guarded(
    worker: Worker,
    repository: Repository,
    client: redis.Redis,
    prefix: str,
    shared: Shared,
    who: str,
) -> None:
    try:
        worker(repository, client, prefix, shared, who)
    except BaseException:
        if worker is not _admission_worker:  # that one reports its own errors
            shared["results"].put({"who": who, "error": traceback.format_exc()})
            shared["barrier"].abort()


def _process_main(
    kind: str, threads: int, database_url: str, redis_url: str, prefix: str, shared: Shared
) -> None:
    """Entry point of a spawned process: its own engine, Redis client and threads."""
    repository, engine = build_repository(database_url, pool_size=max(1, threads))
    client = redis.Redis.from_url(redis_url)
    try:
        for thread in _run_threads(kind, threads, repository, client, prefix, shared):
            thread.join()
    finally:
        client.close()
        engine.dispose()


@dataclass
class Crew:
    """Threads in this process plus spawned processes, all running one worker kind."""

    kind: str
    database_url: str
    redis_url: str
    prefix: str
    shared: Shared
    processes: list[Any] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    _own: tuple[sa.Engine, redis.Redis] | None = None

    def start(
        self, *, threads: int, processes: int, threads_per_process: int = 1
    ) -> tuple[Repository, sa.Engine, redis.Redis]:
        for _ in range(processes):
            process = CTX.Process(
                target=_process_main,
                args=(
                    self.kind,
                    threads_per_process,
                    self.database_url,
                    self.redis_url,
                    self.prefix,
                    self.shared,
                ),
                daemon=True,
            )
            process.start()
            self.processes.append(process)
        repository, engine = build_repository(self.database_url, pool_size=max(1, threads))
        client = redis.Redis.from_url(self.redis_url)
        self.threads = _run_threads(
            self.kind, threads, repository, client, self.prefix, self.shared
        )
        self._own = (engine, client)
        return repository, engine, client

    def results(self, count: int, timeout: float = WAIT) -> list[dict[str, Any]]:
        collected: list[dict[str, Any]] = []
        give_up = time.monotonic() + timeout
        while len(collected) < count:
            remaining = give_up - time.monotonic()
            assert remaining > 0, f"only {len(collected)} of {count} workers reported"
            collected.append(self.shared["results"].get(timeout=remaining))
        errors = [r["error"] for r in collected if r.get("error")]
        assert not errors, "\n".join(errors)
        return collected

    def stop(self) -> None:
        if "stop" in self.shared:
            self.shared["stop"].set()
        for thread in self.threads:
            thread.join(timeout=WAIT)
        for process in self.processes:
            process.join(timeout=WAIT)
            if process.is_alive():
                process.kill()
                process.join()
        if self._own is not None:
            engine, client = self._own
            self._own = None
            client.close()
            engine.dispose()
        assert all(process.exitcode == 0 for process in self.processes), [
            process.exitcode for process in self.processes
        ]


@pytest.fixture
def crew(clean_database: str, redis_url: str, key_prefix: str) -> Iterator[Callable[..., Crew]]:
    crews: list[Crew] = []

    def factory(kind: str, **shared: Any) -> Crew:
        made = Crew(kind, clean_database, redis_url, key_prefix, {"results": CTX.Queue(), **shared})
        crews.append(made)
        return made

    yield factory
    for made in crews:
        if made.processes or made.threads:
            with contextlib.suppress(AssertionError):  # the test already failed
                made.stop()


# -- 1. idempotent intake ---------------------------------------------------------------


def test_concurrent_deliveries_of_one_message_make_one_task(
    crew: Callable[..., Crew], engine: sa.Engine, repository: Repository
) -> None:
    threads, processes, per_process = 30, 2, 10
    callers = threads + processes * per_process
    team = crew("add", key=f"dup-{uuid.uuid4().hex}", barrier=CTX.Barrier(callers))
    team.start(threads=threads, processes=processes, threads_per_process=per_process)

    results = team.results(callers)
    team.stop()

    assert len(results) == 50
    assert sum(1 for r in results if r["created"]) == 1
    assert count_rows(engine, "task") == 1
    (stored_id,) = {r["task_id"] for r in results}
    stored = repository.get_task(stored_id)
    assert stored is not None
    assert stored.status == TaskStatus.PENDING
    (creator,) = [r["who"] for r in results if r["created"]]
    assert stored.input == {"from": creator}


# -- 2. concurrent promotion ------------------------------------------------------------


def test_concurrent_promoters_claim_every_task_exactly_once(
    crew: Callable[..., Crew], engine: sa.Engine
) -> None:
    ids = seed_tasks(engine, 300)
    seed_tasks(engine, 20, algorithm="nlp")  # another algorithm: never claimed
    team = crew("claim", barrier=CTX.Barrier(8), batch=7)
    team.start(threads=4, processes=4)

    results = team.results(8)
    team.stop()

    claimed = [task_id for r in results for task_id in r["claimed"]]
    duplicates = [task_id for task_id, n in Counter(claimed).items() if n > 1]
    assert duplicates == []
    assert set(claimed) == set(ids)
    assert count_rows(engine, "task", "algorithm = 'ocr' AND status = 'queued'") == 300
    assert count_rows(engine, "task", "algorithm = 'ocr' AND status = 'pending'") == 0
    assert count_rows(engine, "task", "algorithm = 'nlp' AND status = 'pending'") == 20
    # More than one worker took part (the claims were really concurrent).
    assert sum(1 for r in results if r["claimed"]) > 1


# -- 3 and 5. the concurrency cap under concurrent dispatch ------------------------------


@dataclass
class Sampler:
    """Samples the running set (and the epoch marker, atomically) as fast as it can."""

    client: redis.Redis
    queue: TaskQueue
    in_flight: Any
    samples: int = 0
    max_running: int = 0
    max_inflight_cost: int = 0
    max_in_flight: int = 0
    running_without_epoch: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def run(self) -> None:
        keys = self.queue.keys(ALGORITHM)
        while not self._stop.is_set():
            pipe = self.client.pipeline(transaction=True)
            pipe.exists(keys.epoch)
            pipe.zcard(keys.running)
            pipe.hget(keys.counts, "inflight")
            has_epoch, running, inflight_cost = pipe.execute()
            self.samples += 1
            self.max_running = max(self.max_running, running)
            self.max_inflight_cost = max(self.max_inflight_cost, int(inflight_cost or 0))
            self.max_in_flight = max(self.max_in_flight, self.in_flight.value)
            if not has_epoch and running:
                self.running_without_epoch.append(running)

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=WAIT)


def _reconcile(repository: Repository, queue: TaskQueue, cap: int = CAP) -> None:
    """The package's reconcile of one algorithm (write the policy from the registry,
    restore from the database's active attempts and QUEUED tasks, then release slots
    whose attempt has ended), with a registry of one endpoint capped at ``cap``."""
    from baton.repair import repair_algorithm_state

    registry = json.dumps({ALGORITHM: {"endpoint": ENDPOINT, "max_concurrency": cap}})
    registries = Registries(
        RegistrySource.fixed("BATON_ALGORITHMS", parse_algorithm_registry, registry)
    )
    config = SimpleNamespace(registry=registries.algorithms, apps=None, registries=registries)
    runtime = SimpleNamespace(
        repository=repository,
        queue=queue,
        config=config,
        policy=PolicyWriter(queue, 0.0),
        clock=utcnow,
    )
    repair_algorithm_state(cast(Any, runtime), ALGORITHM)


def _run_capped_dispatch(
    crew: Callable[..., Crew],
    engine: sa.Engine,
    redis_client: redis.Redis,
    key_prefix: str,
    *,
    flush_after: int | None,
) -> tuple[list[dict[str, Any]], Sampler, float]:
    import baton.reconcile  # noqa: F401  (imported now: reconcile must be quick later)

    total = 200
    ids = seed_tasks(engine, total)
    queue = TaskQueue(redis_client, key_prefix)
    arm(queue, ALGORITHM, CAP)  # a fresh Redis, reconciled
    threads, processes = 8, 4
    team = crew(
        "admit",
        barrier=CTX.Barrier(threads + processes + 1),
        total=total,
        work_seconds=0.004,
        admit_delay=0.01,
        lost_seen=CTX.Value("i", 0),
        done=CTX.Value("i", 0),
        in_flight=CTX.Value("i", 0),
        peak=CTX.Value("i", 0),
        stop=CTX.Event(),
    )
    repository, _, _ = team.start(threads=threads, processes=processes)
    shared = team.shared
    flushed_at_done = -1.0
    with Sampler(redis_client, queue, shared["in_flight"]) as sampler:
        shared["barrier"].wait(WAIT)
        if flush_after is not None:
            give_up = time.monotonic() + WAIT
            while shared["done"].value < flush_after and not shared["stop"].is_set():
                assert time.monotonic() < give_up, "workers made no progress"
                time.sleep(0.001)
            assert flush_prefix(redis_client, key_prefix) > 0
            flushed_at_done = shared["done"].value
            # Reconcile as soon as a worker was refused for the missing state, while
            # other workers still hold admissions they have not started.
            while shared["lost_seen"].value == 0 and not shared["stop"].is_set():
                assert time.monotonic() < give_up, "no worker noticed the lost state"
                time.sleep(0.0005)
            assert not queue.has_state(ALGORITHM)
            _reconcile(repository, queue)
        results = team.results(threads + processes)
    team.stop()

    _assert_every_task_ran_once(engine, ids, results)
    assert sampler.samples > 100, sampler.samples
    assert sampler.max_running <= CAP, f"running set reached {sampler.max_running}"
    assert sampler.max_inflight_cost <= CAP, f"in-flight cost reached {sampler.max_inflight_cost}"
    assert sampler.max_in_flight <= CAP
    assert shared["peak"].value <= CAP, f"{shared['peak'].value} attempts in flight at once"
    assert sampler.running_without_epoch == []
    assert shared["done"].value == total
    # Both the threads here and the spawned processes did real work.
    own = f"pid{os.getpid()}-"
    assert any(r["dispatched"] for r in results if r["who"].startswith(own))
    assert any(r["dispatched"] for r in results if not r["who"].startswith(own))
    return results, sampler, flushed_at_done


def _assert_every_task_ran_once(
    engine: sa.Engine, ids: list[str], results: list[dict[str, Any]]
) -> None:
    dispatched = [tuple(d) for r in results for d in r["dispatched"]]
    twice = [member for member, n in Counter(dispatched).items() if n > 1]
    assert twice == [], f"attempts dispatched twice: {twice}"
    # One attempt sent per task; an attempt whose slot could not be confirmed was
    # abandoned unsent (and its number never reused), so the sent one may be later.
    assert sorted(task_id for task_id, _ in dispatched) == sorted(ids)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT t.id, t.status, t.attempts,"
                " SUM(e.status = 'succeeded') AS ok,"
                " SUM(e.status NOT IN ('succeeded', 'abandoned')) AS other"
                " FROM task t LEFT JOIN task_execution e ON e.task_id = t.id"
                " GROUP BY t.id, t.status, t.attempts"
            )
        ).all()
    assert len(rows) == len(ids)
    wrong = [row for row in rows if (row.status, row.ok, row.other) != ("succeeded", 1, 0)]
    assert wrong == []
    sent = dict(dispatched)
    assert all(row.attempts == sent[row.id] for row in rows)
    abandoned = count_rows(engine, "task_execution") - len(ids)
    assert abandoned == sum(r["undone"] for r in results)
    assert count_rows(engine, "notification_outbox") == len(ids)


def test_concurrent_dispatch_never_exceeds_the_cap(
    crew: Callable[..., Crew], engine: sa.Engine, redis_client: redis.Redis, key_prefix: str
) -> None:
    results, sampler, _ = _run_capped_dispatch(
        crew, engine, redis_client, key_prefix, flush_after=None
    )

    starts = [tuple(s) for r in results for s in r["starts"]]
    assert len(starts) == len(set(starts)) == 200  # no attempt started twice
    assert sum(r["undone"] for r in results) == 0
    assert sum(r["lost"] for r in results) == 0
    # The cap was actually reached (the sampler saw a full running set).
    assert sampler.max_running == CAP
    assert TaskQueue(redis_client, key_prefix).running_count(ALGORITHM) == 0
    assert TaskQueue(redis_client, key_prefix).inflight_cost(ALGORITHM) == 0


def test_redis_flush_mid_run_keeps_the_cap_and_loses_nothing(
    crew: Callable[..., Crew],
    engine: sa.Engine,
    repository: Repository,
    redis_client: redis.Redis,
    key_prefix: str,
) -> None:
    results, _, flushed_at = _run_capped_dispatch(
        crew, engine, redis_client, key_prefix, flush_after=70
    )

    assert 70 <= flushed_at < 200, "the flush did not land in the middle of the run"
    # Admission (or confirmation) was refused while the epoch marker was missing.
    assert sum(r["lost"] for r in results) > 0
    starts = [tuple(s) for r in results for s in r["starts"]]
    undone = sum(r["undone"] for r in results)
    dispatched = sum(len(r["dispatched"]) for r in results)
    assert len(starts) == dispatched + undone
    queue = TaskQueue(redis_client, key_prefix)
    assert queue.has_state(ALGORITHM)
    # No slot leaks once a reconcile has looked again.
    _reconcile(repository, queue)
    assert queue.running(ALGORITHM) == {}
    assert queue.inflight_cost(ALGORITHM) == 0


# -- 4. two actors ending the same attempt ----------------------------------------------


def test_two_actors_ending_the_same_attempt_one_wins(
    repository: Repository, new_task: NewTaskFactory, engine: sa.Engine
) -> None:
    rounds = 25
    now = utcnow()
    tasks = []
    for _ in range(rounds):
        task, created = repository.add_task(new_task())
        assert created
        tasks.append(task)
    repository.queue_pending_tasks(ALGORITHM, now, rounds)
    for task in tasks:
        assert repository.start_attempt(
            task.id, 1, now, f"results/{task.id}/1", 3600, endpoint=ENDPOINT
        )

    outcomes: dict[tuple[str, str], Any] = {}
    errors: list[str] = []

    def finisher(name: str, outcome: AttemptOutcome, barrier: threading.Barrier) -> None:
        try:
            for task in tasks:
                barrier.wait(WAIT)
                outcomes[(task.id, name)] = repository.finish_attempt(task.id, 1, utcnow(), outcome)
        except BaseException:
            errors.append(traceback.format_exc())
            barrier.abort()

    barrier = threading.Barrier(2)
    actors = [
        threading.Thread(target=finisher, args=("callback", SUCCEEDED, barrier)),
        threading.Thread(target=finisher, args=("sweep", TIMED_OUT, barrier)),
    ]
    for actor in actors:
        actor.start()
    for actor in actors:
        actor.join(WAIT)

    assert errors == []
    for task in tasks:
        by_callback, by_sweep = outcomes[(task.id, "callback")], outcomes[(task.id, "sweep")]
        assert (by_callback is None) != (by_sweep is None), task.id
        winner = "callback" if by_sweep is None else "sweep"
        expected = TaskStatus.SUCCEEDED if winner == "callback" else TaskStatus.TIMED_OUT
        stored = stored_task(repository, task.id)
        assert stored.status == expected
        execution = stored_execution(repository, task.id, 1)
        assert execution.status == ExecutionStatus(expected.value)
        won = by_callback or by_sweep
        assert won.terminal
        assert stored.notification_id == won.task.notification_id
        assert count_rows(engine, "notification_outbox", "task_id = :id", id=task.id) == 1
    assert count_rows(engine, "notification_outbox") == rounds
    assert count_rows(engine, "task_execution") == rounds


# -- deterministic interleavings --------------------------------------------------------


def test_reconcile_between_start_and_confirm_grants_no_slot_over_the_cap(
    repository: Repository,
    new_task: NewTaskFactory,
    redis_client: redis.Redis,
    key_prefix: str,
) -> None:
    cap = 1
    queue = TaskQueue(redis_client, key_prefix)
    now = utcnow()
    lease = now + timedelta(seconds=60)
    slow, _ = repository.add_task(new_task(priority=0))
    arm(queue, ALGORITHM, cap)
    queue.enqueue(ALGORITHM, repository.queue_pending_tasks(ALGORITHM, now, 10))
    # Worker W1 admits `slow` (a lease on the only slot)...
    (slow_slot,) = queue.admit(ALGORITHM, lease, 1).slots
    assert members([slow_slot]) == [(slow.id, 1)]
    other, _ = repository.add_task(new_task(priority=5))
    assert len(repository.queue_pending_tasks(ALGORITHM, now, 10)) == 1
    # Redis loses its data while W1 is between admission and start_attempt.
    flush_prefix(redis_client, key_prefix)
    # Another dispatcher reconciles (both tasks are QUEUED), admits and sends `other`.
    _reconcile(repository, queue, cap)
    (other_slot,) = queue.admit(ALGORITHM, lease, 1).slots
    assert members([other_slot]) == [(other.id, 1)]
    started_other = repository.start_attempt(
        other.id, 1, now, "k-other", 3600, endpoint=other_slot.endpoint
    )
    assert started_other is not None
    assert queue.confirm_slot(ALGORITHM, other_slot, started_other.deadline) is SlotConfirmation.OK
    # W1 resumes: its start_attempt wins (the task is still QUEUED)...
    started_slow = repository.start_attempt(
        slow.id, 1, now, "k-slow", 3600, endpoint=slow_slot.endpoint
    )
    assert started_slow is not None
    # ... and a reconcile (the scheduled one, or a dispatcher that saw the state lost)
    # runs before W1 confirms its slot.
    _reconcile(repository, queue, cap)

    confirmation = queue.confirm_slot(ALGORITHM, slow_slot, started_slow.deadline)

    # `other` is in flight and holds the only slot: W1 must not send.
    assert confirmation is SlotConfirmation.FULL
    assert queue.running_count(ALGORITHM) <= cap
    assert queue.inflight_cost(ALGORITHM) <= cap


def test_reconcile_does_not_resurrect_an_attempt_that_ended_during_it(
    repository: Repository,
    new_task: NewTaskFactory,
    redis_client: redis.Redis,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = TaskQueue(redis_client, key_prefix)
    now = utcnow()
    task, _ = repository.add_task(new_task(timeout_seconds=3600))
    arm(queue, ALGORITHM, CAP)
    queue.enqueue(ALGORITHM, repository.queue_pending_tasks(ALGORITHM, now, 10))
    (slot,) = queue.admit(ALGORITHM, now + timedelta(seconds=60), 1).slots
    assert members([slot]) == [(task.id, 1)]
    started = repository.start_attempt(task.id, 1, now, "k", 3600, endpoint=slot.endpoint)
    assert started is not None
    assert queue.confirm_slot(ALGORITHM, slot, started.deadline) is SlotConfirmation.OK
    flush_prefix(redis_client, key_prefix)  # Redis loses its data while the attempt runs
    snapshot = repository.active_attempts

    def snapshot_then_callback(algorithm: str) -> Any:
        active = snapshot(algorithm)
        # The callback arrives right after reconcile read the database: the attempt
        # ends and its worker releases the slot (nothing to release yet).
        assert repository.finish_attempt(task.id, 1, utcnow(), SUCCEEDED) is not None
        assert queue.release(ALGORITHM, task.id, 1) is False
        return active

    monkeypatch.setattr(repository, "active_attempts", snapshot_then_callback)

    _reconcile(repository, queue)

    assert stored_task(repository, task.id).status == TaskStatus.SUCCEEDED
    # Nothing runs, so no slot may be held (this one would block a slot for an hour).
    assert queue.running(ALGORITHM) == {}
    assert queue.inflight_cost(ALGORITHM) == 0
