"""Event sources: SQS pollers that behave like Lambda's event source mapping, and
timers for Schedule / ScheduleV2 events (``rate(...)`` and ``cron(...)``) on a clock
where one minute lasts ``tick`` seconds."""

from __future__ import annotations

import base64
import calendar
import contextlib
import functools
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from baton_local.emulator.lambdas import FunctionPool, Invocation, PoolStopped
from baton_local.emulator.template import TemplateError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

# -- SQS --------------------------------------------------------------------------------


def sqs_record(message: MessageTypeDef, queue_arn: str, region: str) -> dict[str, Any]:
    """One record of a Lambda SQS event, from a ReceiveMessage answer."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _message_attribute(value)
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def _message_attribute(value: Any) -> dict[str, Any]:
    attribute: dict[str, Any] = {
        "stringListValues": list(value.get("StringListValues", [])),
        "binaryListValues": [
            base64.b64encode(v).decode() for v in value.get("BinaryListValues", [])
        ],
        "dataType": value["DataType"],
    }
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    return attribute


def failed_message_ids(invocation: Invocation, batch: list[dict[str, Any]]) -> set[str] | None:
    """The records to keep after a ReportBatchItemFailures answer, or None when the whole
    batch counts as failed (a malformed answer, as Lambda treats it)."""
    answer = invocation.result
    if answer is None or answer == {}:
        return set()
    if not isinstance(answer, dict):
        return None
    failures = answer.get("batchItemFailures")
    if failures is None or failures == []:
        return set()
    if not isinstance(failures, list):
        return None
    ids = {record["messageId"] for record in batch}
    failed: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier or identifier not in ids:
            return None
        failed.add(str(identifier))
    return failed


@dataclass
class SqsEventSource:
    """A function's SQS event: up to ``batch_size`` messages per invocation, gathered for
    at most ``batching_window`` seconds; on success the batch is deleted (with
    ReportBatchItemFailures, all but the reported records); on an error nothing is, so
    the messages come back after the visibility timeout and go to the DLQ after the
    queue's maxReceiveCount (moto moves them on receive, as SQS does).

    ``pollers`` batches are gathered and invoked at once, as the event source mapping
    runs concurrent batches up to the function's concurrency (or its ScalingConfig's
    MaximumConcurrency): each poller waits for its batch's invocation before it polls
    again, so no more batches are in flight than instances may run them."""

    name: str
    pool: FunctionPool
    sqs: SQSClient
    queue_url: str
    queue_arn: str
    region: str
    batch_size: int = 10
    batching_window: float = 0.0
    visibility_timeout: float = 30.0
    report_failures: bool = False
    pollers: int = 1
    enabled: bool = True
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        if not self.enabled:
            return
        for index in range(max(1, self.pollers)):
            thread = threading.Thread(
                target=self._poll, name=f"sqs-{self.name}-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Pollers leave after their current long poll (at most a second) or batch; a
        batch received meanwhile is not invoked and comes back after its visibility
        timeout, as when an event source mapping is disabled."""
        self._stop.set()
        for thread in self._threads:
            thread.join(0.1)

    def _receive(self, wait_seconds: int, most: int) -> list[MessageTypeDef]:
        answer = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(10, most)),
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(answer.get("Messages", []))

    def _gather(self) -> list[MessageTypeDef]:
        """Up to ``batch_size`` messages, waiting at most the batching window after the
        first one (never longer than half the visibility timeout: a message must not come
        back while its batch is still being gathered). A message received again meanwhile
        counts once, with its newest receipt handle."""
        first = self._receive(1, self.batch_size)
        if not first:
            return []
        batch: dict[str, MessageTypeDef] = {m["MessageId"]: m for m in first}
        window = min(self.batching_window, self.visibility_timeout / 2)
        window_ends = time.monotonic() + window
        while len(batch) < self.batch_size and not self._stop.is_set():
            left = window_ends - time.monotonic()
            if left <= 0:
                break
            more = self._receive(1 if left >= 1 else 0, self.batch_size - len(batch))
            if not more and left < 1:
                time.sleep(min(left, 0.05))
            batch.update({m["MessageId"]: m for m in more})
        return list(batch.values())

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                messages = self._gather()
            except (BotoCoreError, ClientError):  # moto going away at shutdown; else retry
                if self._stop.wait(0.5):
                    return
                continue
            if not messages or self._stop.is_set():
                continue
            batch = [sqs_record(message, self.queue_arn, self.region) for message in messages]
            try:
                invocation = self.pool.invoke(
                    {"Records": batch},
                    f"SQS {self.name.rpartition('.')[2]}",
                    kind="sqs",
                    describe=functools.partial(self._describe, batch=batch),
                )
            except PoolStopped:
                return
            self._settle(invocation, batch)

    def _kept(self, invocation: Invocation, batch: list[dict[str, Any]]) -> set[str] | None:
        """The records that stay in the queue; None: all of them."""
        if not invocation.ok:
            return None
        if not self.report_failures:
            return set()
        return failed_message_ids(invocation, batch)

    def _describe(self, invocation: Invocation, batch: list[dict[str, Any]]) -> str:
        kept = self._kept(invocation, batch)
        records = f"{len(batch)} record{'s' if len(batch) != 1 else ''}"
        if kept is None:
            why = "failed" if not invocation.ok else "malformed batchItemFailures"
            return f"{records}: all back to the queue ({why})"
        return f"{records}: {len(batch) - len(kept)} ok, {len(kept)} rejected"

    def _settle(self, invocation: Invocation, batch: list[dict[str, Any]]) -> None:
        keep = self._kept(invocation, batch)
        if keep is None:
            return
        done = [record for record in batch if record["messageId"] not in keep]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            with contextlib.suppress(BotoCoreError, ClientError):
                self.sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(n), "ReceiptHandle": record["receiptHandle"]}
                        for n, record in enumerate(chunk)
                    ],
                )


# -- schedules --------------------------------------------------------------------------

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_MINUTES = {"minute": 1, "hour": 60, "day": 1440}
_MONTHS = {name: n for n, name in enumerate(calendar.month_abbr) if name}
_WEEKDAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}


def rate_minutes(expression: str) -> int | None:
    """Minutes between firings of ``rate(N unit)``; None if it is not a rate."""
    match = _RATE.match(expression.strip())
    if match is None:
        return None
    value = int(match.group(1))
    if value <= 0:
        raise TemplateError(f"{expression}: the rate must be positive")
    return value * _UNIT_MINUTES[match.group(2).rstrip("s")]


def _cron_field(text: str, low: int, high: int, names: dict[str, int], what: str) -> set[int]:
    values: set[int] = set()
    for part in text.upper().split(","):
        if part in ("*", "?"):
            values |= set(range(low, high + 1))
            continue
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first_text, _, last_text = base.partition("-")
            first, last = _cron_value(first_text, names, what), _cron_value(last_text, names, what)
        else:
            first = _cron_value(base, names, what)
            last = high if step_text else first
        if not (low <= first <= high and low <= last <= high) or step < 1:
            raise TemplateError(f"cron {what} field {text!r} is out of range")
        values |= set(range(first, last + 1, step))
    return values


def _cron_value(text: str, names: dict[str, int], what: str) -> int:
    if text in names:
        return names[text]
    if not text.isdigit():
        raise TemplateError(
            f"cron {what} value {text!r} is not emulated (supported: numbers, names, * ? , - /)"
        )
    return int(text)


@dataclass(frozen=True)
class Cron:
    """An EventBridge ``cron(minutes hours day-of-month month day-of-week year)``
    without L, W and # (those fail clearly)."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    years: frozenset[int]
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str) -> Cron:
        match = re.fullmatch(r"cron\((.*)\)", expression.strip())
        fields = match.group(1).split() if match else []
        if len(fields) != 6:
            raise TemplateError(f"{expression}: a cron() expression has 6 fields")
        minute, hour, day, month, weekday, year = fields
        if day != "?" and weekday != "?":
            raise TemplateError(f"{expression}: one of day-of-month and day-of-week must be '?'")
        return cls(
            minutes=frozenset(_cron_field(minute, 0, 59, {}, "minutes")),
            hours=frozenset(_cron_field(hour, 0, 23, {}, "hours")),
            days=frozenset(_cron_field(day, 1, 31, {}, "day-of-month")),
            months=frozenset(
                _cron_field(month, 1, 12, {k.upper(): v for k, v in _MONTHS.items()}, "month")
            ),
            weekdays=frozenset(_cron_field(weekday, 1, 7, _WEEKDAYS, "day-of-week")),
            years=frozenset(_cron_field(year, 1970, 2199, {}, "year")),
            any_weekday=weekday in ("*", "?"),
        )

    def _day_matches(self, moment: datetime) -> bool:
        weekday = moment.isoweekday() % 7 + 1  # SUN=1 .. SAT=7
        if moment.month not in self.months or moment.year not in self.years:
            return False
        if self.any_weekday:
            return moment.day in self.days
        return weekday in self.weekdays

    def next_after(self, moment: datetime) -> datetime | None:
        """The first matching minute after ``moment`` (within ten years)."""
        candidate = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = candidate + timedelta(days=3660)
        while candidate < limit:
            if not self._day_matches(candidate):
                candidate = candidate.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if candidate.hour in self.hours and candidate.minute in self.minutes:
                return candidate
            candidate += timedelta(minutes=1)
        return None


def parse_schedule(expression: str, where: str) -> int | Cron:
    """Minutes between firings of a rate, or the Cron; anything else fails clearly."""
    try:
        minutes = rate_minutes(expression)
        if minutes is not None:
            return minutes
        if expression.strip().startswith("cron("):
            return Cron.parse(expression)
    except TemplateError as exc:
        raise TemplateError(f"{where}: {exc}") from None
    raise TemplateError(
        f"{where}: schedule {expression!r} is not emulated (rate(N minute|minutes|hour|hours|"
        "day|days) and cron(...) are)"
    )


@dataclass
class Schedule:
    """One schedule of one function."""

    name: str
    pool: FunctionPool
    expression: str
    rule: int | Cron
    event: Callable[[], Any]
    next_due: float = 0.0
    cursor: datetime | None = None


class VirtualClock:
    """Local time where a minute lasts ``tick`` seconds, starting at the real time now."""

    def __init__(self, tick_seconds: float) -> None:
        self.factor = 60.0 / tick_seconds
        self.origin_real = time.monotonic()
        self.origin = datetime.now(UTC)

    def now(self) -> datetime:
        return self.at(time.monotonic())

    def at(self, monotonic: float) -> datetime:
        return self.origin + timedelta(seconds=(monotonic - self.origin_real) * self.factor)

    def monotonic_at(self, moment: datetime) -> float:
        return self.origin_real + (moment - self.origin).total_seconds() / self.factor


class Scheduler:
    """Fires schedules as asynchronous invocations: a ``rate`` every N local minutes
    (the first one N minutes after start, as EventBridge does), a ``cron`` at each
    matching minute of the local clock. A schedule that falls behind skips ahead rather
    than firing a burst."""

    def __init__(self, tick_seconds: float) -> None:
        self.tick = tick_seconds
        self.clock = VirtualClock(tick_seconds)
        self.schedules: list[Schedule] = []
        self.fired: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, schedule: Schedule) -> None:
        now = time.monotonic()
        if isinstance(schedule.rule, int):
            schedule.next_due = now + schedule.rule * self.tick
        else:
            schedule.cursor = self.clock.at(now)
            self._advance_cron(schedule, schedule.rule)
        self.schedules.append(schedule)

    def _advance_cron(self, schedule: Schedule, rule: Cron) -> None:
        assert schedule.cursor is not None
        following = rule.next_after(schedule.cursor)
        if following is None:
            schedule.next_due = float("inf")
            return
        schedule.cursor = following
        schedule.next_due = self.clock.monotonic_at(following)

    def _advance(self, schedule: Schedule, now: float) -> None:
        if isinstance(schedule.rule, int):
            period = schedule.rule * self.tick
            schedule.next_due += period
            if schedule.next_due <= now:
                schedule.next_due = now + period
            return
        self._advance_cron(schedule, schedule.rule)
        if schedule.next_due <= now:
            schedule.cursor = self.clock.at(now)
            self._advance_cron(schedule, schedule.rule)

    def start(self) -> None:
        if self.schedules:
            self._thread = threading.Thread(target=self._run, name="schedules", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for schedule in self.schedules:
                if schedule.next_due <= now:
                    schedule.pool.invoke_async(
                        schedule.event(),
                        f"schedule {schedule.name}",
                        key=schedule.name,
                        kind="schedule",
                    )
                    self.fired[schedule.name] = self.fired.get(schedule.name, 0) + 1
                    self._advance(schedule, now)
            upcoming = min((s.next_due for s in self.schedules), default=now + 1)
            self._stop.wait(min(1.0, max(0.005, upcoming - time.monotonic())))


def scheduled_event(
    rule_arn: str, region: str, account: str, source: str = "aws.events"
) -> dict[str, Any]:
    """The EventBridge 'Scheduled Event' a schedule delivers when it has no Input."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": source,
        "account": account,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }
