"""How an algorithm service's HTTP answer to a dispatch request is read: 2xx accepts,
4xx other than 408/429 rejects for good, anything else is retried."""

from __future__ import annotations

import pytest
from baton.dispatch_client import DispatchVerdict, classify


@pytest.mark.parametrize("status", [200, 201, 202, 204, 206, 299])
def test_2xx_is_accepted(status: int) -> None:
    assert classify(status) is DispatchVerdict.ACCEPTED


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 410, 413, 415, 422, 451, 499])
def test_4xx_other_than_408_and_429_is_rejected_for_good(status: int) -> None:
    assert classify(status) is DispatchVerdict.REJECTED


@pytest.mark.parametrize(
    "status",
    [408, 429, 500, 501, 502, 503, 504, 599, 300, 301, 302, 303, 304, 307, 308],
)
def test_timeouts_throttling_server_errors_and_redirects_are_retried(status: int) -> None:
    assert classify(status) is DispatchVerdict.RETRY


@pytest.mark.parametrize("status", [0, 100, 101, 199, 600, 999, -1])
def test_answers_outside_the_known_classes_are_retried(status: int) -> None:
    assert classify(status) is DispatchVerdict.RETRY


def test_every_status_code_follows_the_contract() -> None:
    for status in range(100, 600):
        if 200 <= status < 300:
            expected = DispatchVerdict.ACCEPTED
        elif 400 <= status < 500 and status not in (408, 429):
            expected = DispatchVerdict.REJECTED
        else:
            expected = DispatchVerdict.RETRY
        assert classify(status) is expected, status


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("30", 30.0),
        (" 5 ", 5.0),
        ("999999", 3600.0),  # capped: a confused service cannot park an algorithm for days
        ("Fri, 27 Nov 2026 12:01:00 GMT", 60.0),
        ("Fri, 27 Nov 2026 11:00:00 GMT", 0.0),  # in the past
        ("soon", None),
        ("-5", None),
    ],
)
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    from datetime import UTC, datetime

    from baton.dispatch_client import parse_retry_after

    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert parse_retry_after(header, now) == seconds
