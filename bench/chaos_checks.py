"""The invariants the chaos run checks, as pure functions over what it collected: the
database rows (the source of truth), the algorithm service's own records, the
notifications the business app received, and Redis samples taken during the run.

Times are epoch seconds of the one system clock every process on this machine reads.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bench.chaos_service import AFTER_CANCEL, HONEST, CallbackResult, Receipt

TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}
ACTIVE = {"dispatching", "running"}
RETRIED = {"failed", "timed_out"}  # the outcomes the run's operator retries
ENDED_BY_BATON = {"cancelled", "deadline_exceeded", "queue_timeout"}
"""Error codes of an attempt Baton ended before its deadline, on its own."""


@dataclass(frozen=True)
class TaskRow:
    id: str
    index: int  # the chaos run's own number for the logical task (metadata.chaos)
    app: str
    idempotency_key: str
    algorithm: str
    status: str
    attempts: int
    notification_id: str | None
    finished_at: float | None
    result_key: str | None
    cost: int = 1
    error_code: str | None = None
    created_at: float = 0.0
    queue_deadline: float | None = None
    total_deadline: float | None = None
    first_accepted_at: float | None = None


@dataclass(frozen=True)
class ExecutionRow:
    task_id: str
    attempt: int
    algorithm: str
    status: str
    created_at: float
    deadline: float
    finished_at: float | None
    http_status: int | None
    app: str = ""
    cost: int = 1
    endpoint: str = ""
    error_code: str | None = None
    drain_until: float | None = None  # still draining (its slot held) when read
    drained_at: float | None = None  # its slot given back: acknowledged, or at the grace
    cancel_tries: int = 0
    cancel_http_status: int | None = None

    @property
    def released(self) -> float | None:
        """When Baton gave the attempt's slot back: at its end, or once it drained."""
        if self.drain_until is not None or self.finished_at is None:
            return None
        return max(self.finished_at, self.drained_at or self.finished_at)

    @property
    def drained_at_grace(self) -> bool:
        """Its slot was freed at the grace, the cancel never acknowledged."""
        return self.drained_at is not None and not acknowledges(self.cancel_http_status)


def acknowledges(status: int | None) -> bool:
    """A cancel answer that frees the slot: 2xx, or 404 (the service does not have it)."""
    return status is not None and (200 <= status < 300 or status == 404)


@dataclass(frozen=True)
class Notice:
    """One notification as the business app's queue delivered it."""

    task_id: str
    index: int
    notification_id: str
    status: str
    received: float
    error_code: str | None = None
    app: str = ""
    algorithm: str = ""
    idempotency_key: str = ""


@dataclass
class CancelSent:
    """A cancel message the business app sent: ``before`` its task message (which went
    out only once the cancel was kept, ``kept_first``), or ``after`` it; by key or id."""

    index: int
    kind: str
    by: str
    sent: float
    kept_first: bool = False


@dataclass
class Retries:
    """The operator's retries of one task: those surely done, and those that may have
    been (the retry died or failed where its commit is unknown)."""

    done: int = 0
    maybe: int = 0


@dataclass(frozen=True)
class SampledSlot:
    """One member of a running set, with what its attempts hash entry says of it."""

    task_id: str
    attempt: int
    app: str
    cost: int
    endpoint: str

    @property
    def key(self) -> tuple[str, int]:
        return self.task_id, self.attempt


@dataclass(frozen=True)
class RunningSample:
    """A running set read together with its epoch marker, over the algorithm's cap, an
    endpoint's or an app's quota (in cost units)."""

    at: float
    algorithm: str
    members: tuple[SampledSlot, ...]


@dataclass(frozen=True)
class Limits:
    """What the registries allow in flight, in cost units."""

    algorithms: dict[str, int]  # algorithm -> max_concurrency
    endpoints: dict[str, tuple[str, int]]  # endpoint URL -> (algorithm, max_concurrency)
    quotas: dict[tuple[str, str], int]  # (app, algorithm) -> max_in_flight
    cancel_modes: dict[str, str] = field(default_factory=dict)  # algorithm -> honest/flaky
    draining: frozenset[str] = frozenset()  # endpoint URLs with a cancel URL
    graces: dict[str, int] = field(default_factory=dict)  # algorithm -> cancel grace

    def over(self, algorithm: str, slots: Iterable[SampledSlot]) -> list[tuple[str, str]]:
        """Which limits ``slots`` (all of ``algorithm``) exceed together: (kind, what),
        kind one of ``algorithm``, ``endpoint``, ``quota``."""
        slots = list(slots)
        found = []
        total = sum(slot.cost for slot in slots)
        if total > self.algorithms[algorithm]:
            found.append(("algorithm", f"{algorithm} {total} (cap {self.algorithms[algorithm]})"))
        per_endpoint: Counter[str] = Counter()
        per_app: Counter[str] = Counter()
        for slot in slots:
            per_endpoint[slot.endpoint] += slot.cost
            per_app[slot.app] += slot.cost
        for endpoint, cost in sorted(per_endpoint.items()):
            limit = self.endpoints.get(endpoint)
            if limit is not None and cost > limit[1]:
                found.append(("endpoint", f"{short(endpoint)} {cost} (cap {limit[1]})"))
        for app, cost in sorted(per_app.items()):
            quota = self.quotas.get((app, algorithm))
            if quota is not None and cost > quota:
                found.append(("quota", f"{app} {cost} (quota {quota})"))
        return found


@dataclass
class Check:
    name: str
    passed: bool
    detail: str
    problems: list[str] = field(default_factory=list)


def max_overlap(intervals: Iterable[tuple[float, float]]) -> tuple[int, float]:
    """Most intervals open at one instant, and when. An interval ending where another
    starts does not overlap it."""
    events: list[tuple[float, int]] = []
    for start, end in intervals:
        events.append((start, 1))
        events.append((end, -1))
    events.sort()  # at equal times, -1 (an end) sorts before +1 (a start)
    best, when, now = 0, 0.0, 0
    for moment, step in events:
        now += step
        if now > best:
            best, when = now, moment
    return best, when


def max_load(intervals: Iterable[tuple[float, float, int]]) -> tuple[int, float]:
    """Most cost open at one instant, and when: ``max_overlap`` with a weight each."""
    events: list[tuple[float, int]] = []
    for start, end, cost in intervals:
        events.append((start, cost))
        events.append((end, -cost))
    events.sort()  # at equal times, ends (negative) sort before starts
    best, when, now = 0, 0.0, 0
    for moment, step in events:
        now += step
        if now > best:
            best, when = now, moment
    return best, when


def _examples(problems: list[str], limit: int = 5) -> str:
    if not problems:
        return ""
    more = f" (+{len(problems) - limit} more)" if len(problems) > limit else ""
    return "; ".join(problems[:limit]) + more


# -- 1. every task reaches exactly one terminal state -----------------------------------


def check_terminal(
    expected: int,
    tasks: list[TaskRow],
    executions: dict[str, list[ExecutionRow]],
    last_submit: float,
    deadline_seconds: float,
) -> tuple[Check, float]:
    problems = []
    by_index = {task.index: task for task in tasks}
    missing = [n for n in range(expected) if n not in by_index]
    problems += [f"task #{n} was never stored" for n in missing[:20]]
    stuck = [task for task in tasks if task.status not in TERMINAL]
    problems += [f"{t.id} (#{t.index}) stuck in {t.status}, attempt {t.attempts}" for t in stuck]
    for task in tasks:
        runs = executions.get(task.id, [])
        active = [e for e in runs if e.status in ACTIVE or e.finished_at is None]
        if active:
            problems.append(f"{task.id}: attempt {active[0].attempt} still {active[0].status}")
        if task.status not in TERMINAL:
            continue
        if task.finished_at is None:
            problems.append(f"{task.id}: {task.status} without finished_at")
        winners = [e for e in runs if e.status == "succeeded"]
        if task.status == "succeeded" and (len(winners) != 1 or runs[-1].status != "succeeded"):
            problems.append(f"{task.id}: succeeded, but attempts say {[e.status for e in runs]}")
        if task.status != "succeeded" and winners:
            problems.append(f"{task.id}: {task.status}, but attempt {winners[0].attempt} succeeded")
        if (
            task.status == "timed_out"
            and task.error_code not in ENDED_BY_BATON
            and (not runs or runs[-1].status != "timed_out")
        ):
            problems.append(f"{task.id}: timed_out, but attempts say {[e.status for e in runs]}")
        draining = [e for e in runs if e.drain_until is not None]
        if draining:
            problems.append(f"{task.id}: attempt {draining[0].attempt} still draining")
    finished = [t.finished_at for t in tasks if t.finished_at is not None]
    settle = (max(finished) - last_submit) if finished else math.inf
    if settle > deadline_seconds:
        problems.append(f"the last task finished {settle:.1f} s after the last submit")
    detail = (
        f"{len(tasks) - len(stuck)}/{expected} terminal; last one "
        f"{max(settle, 0.0):.1f} s after the last submit (deadline {deadline_seconds:.0f} s)"
    )
    return Check("1 one terminal state each, none stuck", not problems, detail, problems), settle


# -- 2. exactly one notification per outcome ----------------------------------------------


def check_notifications(
    expected: int,
    tasks: list[TaskRow],
    notices: list[Notice],
    retries: dict[str, Retries] | None = None,
) -> tuple[Check, int]:
    """One notification id per outcome: a task the operator retried ``n`` times has
    ``n + 1`` outcomes, each with its own id and one status; the last is the one the
    database holds, each earlier one an outcome the operator retries."""
    retries = retries or {}
    problems = []
    by_index: dict[int, list[Notice]] = defaultdict(list)
    for notice in notices:
        by_index[notice.index].append(notice)
    stored = {task.index: task for task in tasks}
    duplicates = outcomes = 0
    for n in range(expected):
        got = by_index.get(n, [])
        if not got:
            problems.append(f"task #{n} got no notification")
            continue
        statuses: dict[str, set[str]] = defaultdict(set)
        for notice in got:
            statuses[notice.notification_id].add(notice.status)
        duplicates += len(got) - len(statuses)
        outcomes += len(statuses)
        task = stored.get(n)
        if task is None:
            continue
        retried = retries.get(task.id, Retries())
        low, high = 1 + retried.done, 1 + retried.done + retried.maybe
        if not low <= len(statuses) <= high:
            problems.append(
                f"{task.id} (#{n}): {len(statuses)} distinct notification ids for "
                + (f"{low} outcomes" if low == high else f"{low}-{high} outcomes")
            )
        for notification_id, said in statuses.items():
            if len(said) != 1:
                problems.append(f"{task.id}: notification {notification_id} said {sorted(said)}")
        last = statuses.get(task.notification_id or "")
        if last is None:
            problems.append(
                f"{task.id}: notified {sorted(statuses)}, stored {task.notification_id}"
            )
        elif last != {task.status}:
            problems.append(f"{task.id}: notified {sorted(last)}, database says {task.status}")
        earlier = {
            status
            for key, said in statuses.items()
            if key != task.notification_id
            for status in said
        }
        if earlier - RETRIED:
            problems.append(
                f"{task.id}: an outcome {sorted(earlier - RETRIED)} was followed by another"
            )
    strays = set(by_index) - set(range(expected))
    problems += [f"a notification for unknown task #{n}" for n in sorted(strays)]
    detail = (
        f"{sum(1 for n in range(expected) if by_index.get(n))}/{expected} notified, "
        f"{outcomes} outcomes ({sum(r.done for r in retries.values())} retries), "
        f"1 distinct id each; {duplicates} duplicate publishes (same id)"
    )
    return Check(
        "2 exactly one notification per outcome", not problems, detail, problems
    ), duplicates


# -- 3. no algorithm, endpoint or app above its limit, in cost units ---------------------


@dataclass
class SampledMax:
    """The most cost the running sets held (with their epoch marker) during the run."""

    algorithms: Counter[str] = field(default_factory=Counter)
    endpoints: Counter[str] = field(default_factory=Counter)
    quotas: Counter[tuple[str, str]] = field(default_factory=Counter)
    samples: int = 0

    def add(self, algorithm: str, slots: Iterable[SampledSlot]) -> None:
        total = 0
        endpoints: Counter[str] = Counter()
        apps: Counter[str] = Counter()
        for slot in slots:
            total += slot.cost
            endpoints[slot.endpoint] += slot.cost
            apps[slot.app] += slot.cost
        self.samples += 1
        self.algorithms[algorithm] = max(self.algorithms[algorithm], total)
        for endpoint, cost in endpoints.items():
            self.endpoints[endpoint] = max(self.endpoints[endpoint], cost)
        for app, cost in apps.items():
            key = (app, algorithm)
            self.quotas[key] = max(self.quotas[key], cost)


def short(endpoint: str) -> str:
    """An endpoint URL by its path (``vision/1``): the host is the same for all."""
    return endpoint.split("/", 3)[-1]


def check_cap(
    limits: Limits,
    executions: dict[str, list[ExecutionRow]],
    receipts: list[Receipt],
    samples: list[RunningSample],
    sampled: SampledMax,
    end: float,
) -> tuple[list[Check], dict[str, Any]]:
    """Cost dispatched and in flight never above a limit, for every algorithm (its
    ``max_concurrency``), every endpoint (its own) and every app with a quota on an
    algorithm (its ``max_in_flight``), three ways:

    - database: [created_at, released] of every attempt the algorithm received,
      weighted by the attempt's cost (the attempt row is written before the request is
      sent, the end recorded after its callback, timeout or dispatch failure; an
      attempt that drains is released when its cancel was acknowledged or its grace
      passed, ``drained_at``: a superset of what the invariant counts); attempts never
      sent (abandoned, or their worker died first) hold no dispatch;
    - the service: from receiving a request until it reported, refused it or stopped
      its work, counted only while Baton still held the attempt's slot (until
      released), by the cost and the endpoint the request itself carried;
    - sampled during the run: a running set over a limit while its epoch marker exists,
      resolved against which of its members were really sent and not yet finished.

    Each request went to the endpoint and carried the cost its attempt row records.
    """
    rows = {(e.task_id, e.attempt): e for runs in executions.values() for e in runs}
    received = {(r.task_id, r.attempt) for r in receipts}
    db: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    service: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    app_of = {e.task_id: e.app for e in rows.values()}

    def keys(algorithm: str, endpoint: str, app: str) -> list[str]:
        found = [f"alg:{algorithm}", f"ep:{endpoint}"]
        if (app, algorithm) in limits.quotas:
            found.append(f"app:{app}:{algorithm}")
        return found

    for key, sent in rows.items():
        if key not in received:
            continue
        ended = sent.released if sent.released is not None else end
        for name in keys(sent.algorithm, sent.endpoint, sent.app):
            db[name].append((sent.created_at, ended, sent.cost))
    mismatched: list[str] = []
    for receipt in receipts:
        row = rows.get((receipt.task_id, receipt.attempt))
        if row is not None and (row.endpoint, row.cost) != (receipt.endpoint, receipt.cost):
            mismatched.append(
                f"{receipt.task_id} attempt {receipt.attempt}: sent to "
                f"{short(receipt.endpoint)} with cost {receipt.cost}, the row says "
                f"{short(row.endpoint)} with cost {row.cost}"
            )
        ends = [end if row is None or row.released is None else row.released]
        if receipt.answer >= 300:
            ends.append(receipt.answered)
        if receipt.reported is not None:
            ends.append(receipt.reported)
        if receipt.stopped is not None:
            ends.append(receipt.stopped)
        span = (receipt.received, max(receipt.received, min(ends)), receipt.cost)
        app = row.app if row is not None else app_of.get(receipt.task_id, "")
        for name in keys(receipt.algorithm, receipt.endpoint, app):
            service[name].append(span)

    figures: dict[str, Any] = {"db": {}, "service": {}}
    for name, spans in db.items():
        figures["db"][name] = max_load(spans)[0]
    for name, spans in service.items():
        figures["service"][name] = max_load(spans)[0]

    def measured(name: str, what: str, limit: int) -> tuple[list[str], str]:
        problems = []
        for source, grouped in (("the database", db), ("the service", service)):
            most, when = max_load(grouped.get(name, []))
            if most > limit:
                problems.append(f"{what}: {most} in flight at {when:.3f} by {source} (cap {limit})")
        return problems, (f"{figures['db'].get(name, 0)}/{figures['service'].get(name, 0)}")

    # Samples: a running set over a limit is explained if the attempts in it that were
    # really sent and not yet finished keep every limit.
    explained = 0
    sample_problems: dict[str, list[str]] = defaultdict(list)
    for sample in samples:
        live = [
            slot
            for slot in sample.members
            if slot.key in received
            and (found := rows.get(slot.key)) is not None
            and found.created_at <= sample.at
            and (found.released is None or found.released > sample.at)
        ]
        truth = [
            SampledSlot(
                s.task_id, s.attempt, rows[s.key].app, rows[s.key].cost, rows[s.key].endpoint
            )
            for s in live
        ]
        over = limits.over(sample.algorithm, truth)
        for kind, what in over:
            sample_problems[kind].append(
                f"{sample.algorithm}: running set of {len(sample.members)} at "
                f"{sample.at:.3f}, dispatched and unfinished: {what}"
            )
        if not over:
            explained += 1
    figures["over_cap_samples"] = len(samples)
    figures["over_cap_samples_unsent"] = explained
    figures["sampled"] = {
        "algorithms": dict(sampled.algorithms),
        "endpoints": dict(sampled.endpoints),
        "quotas": {f"{app}/{alg}": cost for (app, alg), cost in sampled.quotas.items()},
    }

    checks = []
    problems: list[str] = []
    parts = []
    for algorithm, cap in limits.algorithms.items():
        over_limit, figure = measured(f"alg:{algorithm}", algorithm, cap)
        problems += over_limit
        parts.append(f"{algorithm} {figure}/{sampled.algorithms.get(algorithm, 0)} (cap {cap})")
    problems += sample_problems["algorithm"]
    detail = "max cost db/service/sampled: " + ", ".join(parts)
    if samples:
        detail += (
            f"; {explained} running-set samples over a limit held only attempts "
            "never sent (given up at confirmation)"
        )
    checks.append(Check("3 no algorithm above its cap", not problems, detail, problems))

    problems = list(mismatched)
    parts = []
    for endpoint, (_algorithm, cap) in limits.endpoints.items():
        over_limit, figure = measured(f"ep:{endpoint}", f"endpoint {short(endpoint)}", cap)
        problems += over_limit
        parts.append(f"{short(endpoint)} {figure}/{sampled.endpoints.get(endpoint, 0)} (cap {cap})")
    problems += sample_problems["endpoint"]
    unknown = {r.endpoint for r in receipts} - set(limits.endpoints)
    problems += [f"a request reached {short(e)}, which no registry names" for e in unknown]
    detail = "max cost db/service/sampled: " + ", ".join(parts)
    checks.append(Check("3a no endpoint above its cap", not problems, detail, problems))

    problems = []
    parts = []
    for (app, algorithm), quota in limits.quotas.items():
        over_limit, figure = measured(f"app:{app}:{algorithm}", f"{app} on {algorithm}", quota)
        problems += over_limit
        sampled_quota = sampled.quotas.get((app, algorithm), 0)
        parts.append(f"{app} on {algorithm} {figure}/{sampled_quota} (quota {quota})")
    problems += sample_problems["quota"]
    detail = "max cost db/service/sampled: " + (", ".join(parts) or "no quota")
    checks.append(Check("3b no app above its quota", not problems, detail, problems))
    return checks, figures


# -- 4. never running twice ---------------------------------------------------------------


def check_not_twice(executions: dict[str, list[ExecutionRow]], receipts: list[Receipt]) -> Check:
    problems = []
    for task_id, runs in executions.items():
        for before, after in itertools.pairwise(runs):
            if before.finished_at is None or after.created_at < before.finished_at:
                problems.append(
                    f"{task_id}: attempt {after.attempt} started before attempt "
                    f"{before.attempt} ended"
                )
    rows = {(e.task_id, e.attempt): e for runs in executions.values() for e in runs}
    by_task: dict[str, list[Receipt]] = defaultdict(list)
    for receipt in receipts:
        by_task[receipt.task_id].append(receipt)
    twice = Counter((r.task_id, r.attempt) for r in receipts)
    problems += [f"{t}: attempt {a} dispatched {n} times" for (t, a), n in twice.items() if n > 1]
    for task_id, got in by_task.items():
        got.sort(key=lambda r: r.received)
        for earlier, later in itertools.pairwise(got):
            if later.attempt <= earlier.attempt:
                problems.append(f"{task_id}: attempt {later.attempt} came after {earlier.attempt}")
                continue
            ended = [earlier.deadline]
            if earlier.answer >= 300:
                ended.append(earlier.answered)
            if earlier.reported is not None:
                ended.append(earlier.reported)
            row = rows.get((task_id, earlier.attempt))
            if row is not None and row.finished_at is not None and row.http_status is None:
                ended.append(row.finished_at)  # Baton never got the answer: a dispatch timeout
            if row is not None and row.finished_at is not None and row.error_code in ENDED_BY_BATON:
                ended.append(row.finished_at)  # cancelled, or past the task's total deadline
            if later.received < min(ended):
                problems.append(
                    f"{task_id}: attempt {later.attempt} received "
                    f"{min(ended) - later.received:.3f} s before attempt {earlier.attempt} ended"
                )
    detail = (
        f"{sum(len(r) for r in executions.values())} attempts of {len(executions)} tasks in "
        f"the database, {len(receipts)} dispatches received: no overlap"
        if not problems
        else f"{len(problems)} overlaps"
    )
    return Check("4 never running twice", not problems, detail, problems)


# -- 5. one row per (app, idempotency_key) -------------------------------------------------


def check_one_row(expected: int, tasks: list[TaskRow], messages_sent: int) -> Check:
    problems = []
    per_key = Counter((t.app, t.idempotency_key) for t in tasks)
    problems += [f"{key}: {n} rows" for key, n in per_key.items() if n > 1]
    per_index = Counter(t.index for t in tasks)
    problems += [f"task #{n}: {count} rows" for n, count in per_index.items() if count > 1]
    if len(tasks) != expected:
        problems.append(f"{len(tasks)} rows for {expected} tasks")
    detail = f"{len(tasks)} rows for {expected} tasks from {messages_sent} messages"
    return Check("5 one row per (app, idempotency_key)", not problems, detail, problems)


# -- callbacks: late ones change nothing ---------------------------------------------------


def check_callbacks(
    callbacks: list[CallbackResult], executions: dict[str, list[ExecutionRow]]
) -> tuple[Check, dict[str, Any]]:
    problems = []
    rows = {(e.task_id, e.attempt): e for runs in executions.values() for e in runs}
    finals = Counter(c.final for c in callbacks)
    codes = Counter(c.code for c in callbacks if c.final == 409)
    unauthorized = sum(1 for c in callbacks for answer in c.answers if answer == 401)
    if unauthorized:
        problems.append(f"{unauthorized} answers were 401")
    late_409 = late_applied = early_409 = ended_409 = 0
    for callback in callbacks:
        row = rows.get((callback.task_id, callback.attempt))
        where = f"{callback.task_id} attempt {callback.attempt} ({callback.status})"
        if row is None:
            problems.append(f"{where}: a callback for an attempt that has no row")
            continue
        if callback.final == 409:
            if row.status == callback.status:
                problems.append(f"{where}: answered 409 but recorded as {row.status}")
            if callback.times and callback.times[-1] > callback.deadline:
                late_409 += 1
            elif row.status == "dispatch_failed" and row.http_status is None:
                early_409 += 1  # Baton never got the answer to its dispatch: it retried
            elif row.error_code in ENDED_BY_BATON:
                ended_409 += 1  # cancelled, or the task's total deadline passed
            else:
                problems.append(
                    f"{where}: refused before the deadline the algorithm was given, "
                    f"the attempt ended {row.status}"
                )
        elif callback.final == 200:
            if row.status != callback.status:
                problems.append(f"{where}: answered 200 but the attempt ended {row.status}")
            if callback.applied and callback.late:
                late_applied += 1
        elif callback.final != 0:
            problems.append(f"{where}: answered {callback.final}")
    figures = {
        "answers": dict(finals),
        "conflicts": dict(codes),
        "late_409": late_409,
        "late_applied": late_applied,
        "early_409": early_409,
        "ended_409": ended_409,
        "unauthorized": unauthorized,
        "gave_up": finals.get(0, 0) + sum(n for a, n in finals.items() if a >= 500),
    }
    detail = (
        f"{len(callbacks)} callbacks: {finals.get(200, 0)} x 200, {finals.get(409, 0)} x 409 "
        f"({late_409} answered after the deadline, {early_409} after a dispatch that got no "
        f"answer, {ended_409} after Baton cancelled the attempt), 401: {unauthorized}; every "
        "409 changed nothing, every 200 matches the recorded outcome"
    )
    return Check("6 late callbacks 409, change nothing", not problems, detail, problems), figures


# -- timeouts come after the deadline ---------------------------------------------------


def check_timeouts(executions: dict[str, list[ExecutionRow]], tasks: list[TaskRow]) -> Check:
    """An attempt is timed out only once its deadline, as heartbeats moved it, has passed:
    a heartbeat's answer promises the algorithm its new deadline. A task ends
    ``queue_timeout`` only past its queue deadline with no attempt accepted, and
    ``deadline_exceeded`` only past its total deadline."""
    timed_out = [
        e
        for runs in executions.values()
        for e in runs
        if e.status == "timed_out" and e.error_code not in ENDED_BY_BATON
    ]
    problems = [
        f"{e.task_id}: attempt {e.attempt} timed out {e.deadline - e.finished_at:.3f} s "
        "before its deadline"
        for e in timed_out
        if e.finished_at is not None and e.finished_at < e.deadline
    ]
    by_code: Counter[str] = Counter()
    for task in tasks:
        if task.status != "timed_out" or task.finished_at is None:
            continue
        by_code[task.error_code or ""] += 1
        if task.error_code == "queue_timeout":
            if task.queue_deadline is None or task.finished_at < task.queue_deadline:
                problems.append(f"{task.id}: queue_timeout before its queue deadline")
            if task.first_accepted_at is not None and task.first_accepted_at < task.finished_at:
                problems.append(f"{task.id}: queue_timeout after an attempt was accepted")
        elif task.error_code == "deadline_exceeded" and (
            task.total_deadline is None or task.finished_at < task.total_deadline
        ):
            problems.append(f"{task.id}: deadline_exceeded before its total deadline")
    detail = (
        f"{len(timed_out)} attempts timed out, each after its deadline; tasks timed out: "
        + ", ".join(f"{code} {n}" for code, n in sorted(by_code.items()))
        + " (queue and total timeouts after their deadlines)"
    )
    return Check("7 timeouts only after the deadline", not problems, detail, problems)


# -- 8. cancels -------------------------------------------------------------------------------


def check_cancels(
    tasks: list[TaskRow],
    executions: dict[str, list[ExecutionRow]],
    receipts: list[Receipt],
    cancels: dict[int, CancelSent],
) -> tuple[Check, dict[str, int]]:
    """A task whose cancel was kept before its message went out ends cancelled without
    an attempt, never dispatched; a task cancelled after it was sent ends once, cancelled
    (waiting or running then) or as it already had; no task ends cancelled unasked."""
    problems = []
    dispatched = Counter(r.task_id for r in receipts)
    figures: Counter[str] = Counter()
    for task in tasks:
        sent = cancels.get(task.index)
        runs = executions.get(task.id, [])
        if sent is None:
            if task.status == "cancelled":
                problems.append(f"{task.id} (#{task.index}): cancelled, and no cancel was sent")
            continue
        figures[f"{sent.kind} by {sent.by}"] += 1
        if task.status == "cancelled" and task.error_code != "cancelled":
            problems.append(f"{task.id}: cancelled with error code {task.error_code}")
        if sent.kind == "before":
            if not sent.kept_first:
                figures["before, not kept in time"] += 1
                continue
            if (task.status, task.attempts, len(runs), dispatched[task.id]) != (
                "cancelled",
                0,
                0,
                0,
            ):
                problems.append(
                    f"{task.id}: cancelled before it arrived, but {task.status} after "
                    f"{len(runs)} attempts, {dispatched[task.id]} dispatches"
                )
            else:
                figures["before: cancelled, never dispatched"] += 1
        elif task.status != "cancelled":
            figures["after: already final"] += 1
        elif runs and runs[-1].status == "cancelled":
            figures["after: cancelled while running"] += 1
            if runs[-1].endpoint:
                figures["after: cancelled while running, drained"] += int(
                    runs[-1].drained_at is not None
                )
        else:
            figures["after: cancelled while waiting"] += 1
    detail = ", ".join(f"{k} {v}" for k, v in sorted(figures.items())) or "no cancels"
    return Check(
        "8 cancels end their task once, early ones before any dispatch",
        not problems,
        detail,
        problems,
    ), dict(figures)


# -- 9. the service's true load -----------------------------------------------------------------


@dataclass
class TrueLoad:
    """Per algorithm or endpoint (``alg:``/``ep:`` keys): the most cost the service
    really worked on at once, and the most Baton answers for."""

    raw: dict[str, int] = field(default_factory=dict)
    accountable: dict[str, int] = field(default_factory=dict)
    excused: Counter[str] = field(default_factory=Counter)


def check_true_load(
    limits: Limits,
    executions: dict[str, list[ExecutionRow]],
    receipts: list[Receipt],
    end: float,
) -> tuple[Check, TrueLoad]:
    """The service's true load, from receiving a dispatch until its work stopped
    (done, refused, or cancelled: ``Receipt.stopped``), whatever Baton counted, against
    the caps of the algorithm and of each endpoint.

    What Baton answers for is that load cut where Baton gave the slot back without the
    service's word, as the design allows: an attempt freed at its grace with its cancel
    never acknowledged (from ``drained_at``; the drain records say which:
    ``drained_at`` set and ``cancel_http_status`` neither 2xx nor 404), an attempt Baton
    ended on an endpoint without a cancel URL (from ``finished_at``), a dispatch that
    got no answer in time (from ``finished_at``: Baton cannot know it was accepted).
    That load never exceeds a cap, for every algorithm. For an algorithm whose service
    acknowledges every cancel (``honest``), the true load itself, uncut, is held to the
    caps: the strict bound, where it must hold (each slot was held until the service
    had stopped; only a dispatch that got no answer could break it, and none may). A
    ``flaky`` service refuses cancels, and its true load may exceed a cap by exactly
    the attempts past their grace; one without cancel URLs by whatever Baton ended
    (both printed, not asserted). The accountable bound is computed from the drain
    records rather than by keeping those services honest, so that the grace itself
    is under test: a slot freed before the grace shows as load Baton answers for.
    """
    rows = {(e.task_id, e.attempt): e for runs in executions.values() for e in runs}
    raw: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    held: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    load = TrueLoad()
    problems = []
    for ended in rows.values():
        grace = limits.graces.get(ended.algorithm)
        if (
            ended.drained_at_grace
            and ended.drained_at is not None
            and ended.finished_at is not None
            and grace is not None
        ):
            early = ended.finished_at + grace - ended.drained_at
            if early > 0.001:  # the grace is counted from the end
                problems.append(
                    f"{ended.task_id} attempt {ended.attempt}: freed without an "
                    f"acknowledged cancel {early:.3f} s before its grace"
                )
    for receipt in receipts:
        if receipt.answer >= 300 or receipt.behaviour == AFTER_CANCEL:
            continue
        start = receipt.received
        stop = max(start, receipt.stopped if receipt.stopped is not None else end)
        row = rows.get(receipt.key)
        cut: float | None = None
        if row is not None and row.finished_at is not None:
            if row.drained_at_grace:
                cut, why = row.drained_at, "freed at the grace"
            elif row.status == "dispatch_failed" and row.http_status is None:
                cut, why = row.finished_at, "dispatch unanswered"
            elif (
                row.error_code in ENDED_BY_BATON | {"timeout"}
                and row.endpoint not in limits.draining
            ):
                cut, why = row.finished_at, "ended, no cancel URL"
            if cut is not None and cut < stop:
                load.excused[why] += 1
        for name in (f"alg:{receipt.algorithm}", f"ep:{receipt.endpoint}"):
            raw[name].append((start, stop, receipt.cost))
            held[name].append(
                (start, max(start, min(stop, cut if cut is not None else stop)), receipt.cost)
            )
    caps = {f"alg:{a}": (a, cap) for a, cap in limits.algorithms.items()}
    caps |= {f"ep:{url}": (a, cap) for url, (a, cap) in limits.endpoints.items()}
    for name, (algorithm, cap) in caps.items():
        most_raw, when_raw = max_load(raw.get(name, []))
        most, when = max_load(held.get(name, []))
        load.raw[name], load.accountable[name] = most_raw, most
        what = algorithm if name.startswith("alg:") else f"endpoint {short(name[3:])}"
        if most > cap:
            problems.append(
                f"{what}: {most} in flight at {when:.3f} that Baton answers for (cap {cap})"
            )
        if limits.cancel_modes.get(algorithm) == HONEST and most_raw > cap:
            problems.append(
                f"{what}: the service worked on {most_raw} at {when_raw:.3f} (cap {cap}), "
                "and it acknowledges every cancel"
            )
    parts = []
    for algorithm, cap in limits.algorithms.items():
        mode = limits.cancel_modes.get(algorithm, "no cancel URL")
        most_raw = load.raw.get(f"alg:{algorithm}", 0)
        most = load.accountable.get(f"alg:{algorithm}", 0)
        parts.append(f"{algorithm} {most_raw}/{most} (cap {cap}, {mode})")
    detail = "true max cost in flight/Baton's part: " + ", ".join(parts)
    if load.excused:
        detail += "; cut: " + ", ".join(f"{k} {v}" for k, v in sorted(load.excused.items()))
    return Check("9 the service's true load within the caps", not problems, detail, problems), load


def summarise(checks: list[Check]) -> list[str]:
    return [f"{c.name}: {_examples(c.problems)}" for c in checks if not c.passed]
