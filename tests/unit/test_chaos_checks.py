"""The chaos run's checks of retries, cancels and the service's true load, on small
made-up records: each passes what the contract allows and fails what it forbids, so
that a run that passes means something."""

from __future__ import annotations

from typing import Any

from bench.chaos_checks import (
    CancelSent,
    ExecutionRow,
    Limits,
    Notice,
    Retries,
    TaskRow,
    check_cancels,
    check_notifications,
    check_true_load,
)
from bench.chaos_service import FLAKY, HONEST, Receipt

URL = "http://127.0.0.1:1/ocr"


def _task(status: str = "succeeded", notification_id: str = "n2", attempts: int = 2) -> TaskRow:
    return TaskRow("t", 0, "contracts", "k", "ocr", status, attempts, notification_id, 10.0, None)


def _notice(notification_id: str, status: str) -> Notice:
    return Notice("t", 0, notification_id, status, 1.0)


def test_a_retried_task_has_one_notification_id_per_outcome() -> None:
    # Given a task that failed, was retried once, and succeeded
    notices = [_notice("n1", "failed"), _notice("n1", "failed"), _notice("n2", "succeeded")]

    # Then one retry done explains its two ids; none, or a retry the task never had, does not
    retried, _duplicates = check_notifications(1, [_task()], notices, {"t": Retries(done=1)})
    assert retried.passed, retried.problems
    assert not check_notifications(1, [_task()], notices)[0].passed
    maybe = {"t": Retries(done=0, maybe=1)}
    assert check_notifications(1, [_task()], notices, maybe)[0].passed


def test_two_ids_for_one_outcome_or_a_succeeded_outcome_retried_fail() -> None:
    two = [_notice("n1", "succeeded"), _notice("n2", "succeeded")]
    # two ids and no retry: one outcome announced twice under different ids
    assert not check_notifications(1, [_task()], two)[0].passed
    # two ids after a retry, but the operator retries only failed and timed-out outcomes
    assert not check_notifications(1, [_task()], two, {"t": Retries(done=1)})[0].passed


def _limits(mode: str, grace: int = 3) -> Limits:
    return Limits(
        {"ocr": 1}, {URL: ("ocr", 1)}, {}, {"ocr": mode}, frozenset({URL}), {"ocr": grace}
    )


def _receipt(task_id: str, received: float, stopped: float) -> Receipt:
    receipt = Receipt(task_id, 1, "ocr", "silent", received, received + 1, URL, 1, 202)
    receipt.stopped = stopped
    return receipt


def _timed_out(task_id: str, created: float, finished: float, **drain: Any) -> ExecutionRow:
    return ExecutionRow(
        task_id,
        1,
        "ocr",
        "timed_out",
        created,
        finished,
        finished,
        202,
        "contracts",
        1,
        URL,
        "timeout",
        **drain,
    )


def test_the_true_load_of_an_attempt_past_its_grace_is_not_baton_s() -> None:
    # Given a cap of 1: attempt a times out at 2, its cancel refused; freed at the grace
    # (5); b is sent at 6 while the service still works on a until 8
    rows = {
        "a": [_timed_out("a", 0.0, 2.0, drained_at=5.0, cancel_tries=2, cancel_http_status=503)],
        "b": [_timed_out("b", 6.0, 9.0, drained_at=9.5, cancel_http_status=200)],
    }
    receipts = [_receipt("a", 0.1, 8.0), _receipt("b", 6.1, 9.0)]

    # Then a flaky service's true load is 2, Baton's part 1: the check passes
    flaky, load = check_true_load(_limits(FLAKY), rows, receipts, end=20.0)
    assert flaky.passed, flaky.problems
    assert (load.raw["alg:ocr"], load.accountable["alg:ocr"]) == (2, 1)
    # but not for a service that acknowledges every cancel, nor with a grace of 4 s
    assert not check_true_load(_limits(HONEST), rows, receipts, end=20.0)[0].passed
    assert not check_true_load(_limits(FLAKY, grace=4), rows, receipts, end=20.0)[0].passed


def test_a_slot_freed_while_the_service_still_works_on_an_acknowledged_cancel_fails() -> None:
    # Given attempt a acknowledged at 3 (drained), though the service worked on until 8
    rows = {
        "a": [_timed_out("a", 0.0, 2.0, drained_at=3.0, cancel_http_status=200)],
        "b": [_timed_out("b", 4.0, 9.0, drained_at=9.5, cancel_http_status=200)],
    }
    receipts = [_receipt("a", 0.1, 8.0), _receipt("b", 4.1, 9.0)]

    # Then the load Baton answers for is over the cap, whatever the service's kind
    assert not check_true_load(_limits(FLAKY), rows, receipts, end=20.0)[0].passed


def test_a_task_cancelled_before_it_arrived_must_never_be_dispatched() -> None:
    cancelled = TaskRow("t", 0, "contracts", "k", "ocr", "cancelled", 0, "n1", 1.0, None)
    cancelled = TaskRow(**{**cancelled.__dict__, "error_code": "cancelled"})
    early = {0: CancelSent(0, "before", "key", 0.5, kept_first=True)}
    assert check_cancels([cancelled], {}, [], early)[0].passed
    dispatched = [_receipt("t", 1.0, 2.0)]
    assert not check_cancels([cancelled], {}, dispatched, early)[0].passed
    # and a task no cancel named must not end cancelled
    assert not check_cancels([cancelled], {}, [], {})[0].passed
