"""Schedules on the emulator's clock: with a tick of 0.2 s a minute lasts 0.2 s, so
rate(1 minute) and cron(* * * * ? *) fire several times a second."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from baton_local.emulator.events import Cron, parse_schedule
from baton_local.emulator.template import TemplateError

from tests.local.conftest import StartCloud, records
from tests.support.waiting import wait_for


def test_schedules_fire_on_the_tick(start_cloud: StartCloud) -> None:
    # Given a minute that lasts 0.2 s
    cloud = start_cloud("schedules.yaml", tick_seconds=0.2)

    # When a couple of seconds pass
    def fired() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        events = [record["event"] for record in records(cloud, "TimerFunction")]
        rate = [e for e in events if e == {"timer": "rate"}]
        cron = [e for e in events if e.get("detail-type") == "Scheduled Event"]
        return rate, cron

    rate, cron = wait_for(lambda: all(len(found) >= 3 for found in fired()) and fired(), timeout=8)

    # Then rate(1 minute) delivered its Input and cron(* * * * ? *) the scheduled event
    assert rate[0] == {"timer": "rate"}
    assert cron[0]["source"] == "aws.scheduler"
    assert cron[0]["resources"][0].startswith("arn:aws:scheduler:eu-west-1:123456789012:schedule/")
    assert cron[0]["account"] == "123456789012"
    assert cron[0]["detail"] == {}
    # And the disabled schedule and the hourly one (12 s here) did not fire
    events = [record["event"] for record in records(cloud, "TimerFunction")]
    assert {"timer": "disabled"} not in events
    assert cloud.scheduler.fired.get("TimerFunction.Hourly", 0) == 0
    assert "TimerFunction event Switched (Schedule): disabled in the template" in cloud.notes


def test_rate_schedules_keep_their_period() -> None:
    assert parse_schedule("rate(1 minute)", "x") == 1
    assert parse_schedule("rate(5 minutes)", "x") == 5
    assert parse_schedule("rate(2 hours)", "x") == 120
    assert parse_schedule("rate(1 day)", "x") == 1440


def test_cron_finds_the_next_matching_minute() -> None:
    weekdays_at_8 = Cron.parse("cron(0 8 ? * MON-FRI *)")
    friday_evening = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)  # a Friday
    assert weekdays_at_8.next_after(friday_evening) == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    quarter_hours = Cron.parse("cron(0/15 * * * ? *)")
    assert quarter_hours.next_after(datetime(2026, 1, 1, 10, 7, tzinfo=UTC)) == datetime(
        2026, 1, 1, 10, 15, tzinfo=UTC
    )
    first_of_month = Cron.parse("cron(30 6 1 * ? *)")
    assert first_of_month.next_after(datetime(2026, 1, 1, 7, 0, tzinfo=UTC)) == datetime(
        2026, 2, 1, 6, 30, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("cron(0 18 L * ? *)", "'L' is not emulated"),
        ("cron(0 18 ? * 6#3 *)", "'6#3' is not emulated"),
        ("cron(0 18 * * MON *)", "one of day-of-month and day-of-week must be '?'"),
        ("cron(0 18 * *)", "a cron() expression has 6 fields"),
        ("at(2026-12-01T08:00:00)", "is not emulated"),
        ("rate(0 minutes)", "the rate must be positive"),
    ],
)
def test_schedules_that_cannot_run_fail_clearly(expression: str, problem: str) -> None:
    with pytest.raises(TemplateError, match="where") as failure:
        parse_schedule(expression, "where")
    assert problem in str(failure.value)


def test_a_template_with_an_unsupported_cron_fails_at_start(start_cloud: StartCloud) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateError) as failure:
        start_cloud("bad_cron.yaml")
    message = str(failure.value)
    assert "MonthEndFunction event LastDayOfMonth (Schedule)" in message
    assert "cron day-of-month value 'L' is not emulated" in message
    assert time.monotonic() - started < 2  # refused before anything started
