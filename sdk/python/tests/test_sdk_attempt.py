"""The algorithm's calls back to Baton, against a callback API on loopback: heartbeats
with a fresh upload URL and a 409, background heartbeats, and callbacks that retry
503s and dropped connections and are applied exactly once."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sdk_support import DROP, Reply, Seen, dispatch_request, loopback

from baton_sdk import (
    Attempt,
    AttemptEnded,
    Heartbeats,
    InvalidRequest,
    ResultMissing,
    TaskNotFound,
    Unauthorized,
    Unavailable,
)
from baton_sdk._http import RetryPolicy
from baton_sdk.contracts import CallbackBody, HeartbeatBody

TOKEN = "bt1.k1.cGF5bG9hZA.bWFj"


def error(status: int, code: str, message: str = "refused", **headers: str) -> Reply:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return Reply(status, body, {"Content-Type": "application/json", **headers})


class CallbackApi:
    """Baton's callback API as far as one attempt sees it: applies an outcome once,
    answers a repeat with applied false, and follows a script first: a ``Reply`` is
    answered as is (``DROP`` closes the connection before applying anything),
    ``"apply-then-drop"`` applies and then closes, anything else serves as usual."""

    def __init__(self, *script: Reply | str) -> None:
        self.script = list(script)
        self.applied: list[CallbackBody] = []
        self.beats: list[HeartbeatBody] = []
        self.fresh_url: str | None = None
        self.lock = threading.Lock()

    def __call__(self, request: Seen) -> Reply:
        with self.lock:
            step = self.script.pop(0) if self.script else None
        if isinstance(step, Reply):
            return step  # DROP included: the connection closes before anything is applied
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return error(401, "unauthorized")
        if request.path.endswith("/heartbeat"):
            return self._beat(request)
        body = CallbackBody.model_validate_json(request.body)  # strict, as Baton reads it
        with self.lock:
            applied = not self.applied
            if applied:
                self.applied.append(body)
        if step == "apply-then-drop":
            return DROP
        answer = {"task_id": "t-1", "attempt": body.attempt, "status": body.status}
        return Reply(200, json.dumps({**answer, "applied": applied}).encode())

    def _beat(self, request: Seen) -> Reply:
        body = HeartbeatBody.model_validate_json(request.body)
        self.beats.append(body)
        deadline = datetime.now(UTC) + timedelta(minutes=15 + len(self.beats))
        answer: dict[str, Any] = {"task_id": "t-1", "attempt": 1, "deadline": deadline.isoformat()}
        if self.fresh_url:
            answer["result"] = {
                "bucket": "baton-results",
                "key": "results/ocr/t-1/1/result",
                "upload_url": self.fresh_url,
                "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            }
        return Reply(200, json.dumps(answer).encode())


class Sleeps:
    def __init__(self) -> None:
        self.slept: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)


def attempt_at(url: str, sleeps: Sleeps | None = None, attempts: int = 8) -> Attempt:
    policy = RetryPolicy(attempts=attempts, base_seconds=0.01, sleep=sleeps or Sleeps())
    return Attempt(dispatch_request(f"{url}/tasks/t-1/callback"), retry=policy, timeout=5)


# -- heartbeats ------------------------------------------------------------------------


def test_heartbeat_takes_the_fresh_upload_url_and_the_new_deadline() -> None:
    api = CallbackApi()
    api.fresh_url = "https://results.example.com/put?fresh"
    with loopback(api) as server:
        attempt = attempt_at(server.url)
        before = attempt.deadline
        answer = attempt.heartbeat(progress=40, message="page 2 of 5")
    assert server.seen[0].path == "/tasks/t-1/heartbeat"
    assert api.beats == [HeartbeatBody(attempt=1, progress=40, message="page 2 of 5")]
    assert answer.result is not None
    assert attempt.result_target.upload_url == "https://results.example.com/put?fresh"
    assert attempt.deadline == answer.deadline > before


def test_heartbeat_without_a_fresh_url_keeps_the_old_one() -> None:
    with loopback(CallbackApi()) as server:
        attempt = attempt_at(server.url)
        old = attempt.result_target.upload_url
        attempt.heartbeat()
    assert attempt.result_target.upload_url == old
    assert json.loads(server.seen[0].body) == {"attempt": 1}


def test_heartbeat_409_says_stop() -> None:
    api = CallbackApi(error(409, "outcome_conflict", "attempt 1 already ended as timed_out"))
    with loopback(api) as server, pytest.raises(AttemptEnded, match="stop: this attempt ended"):
        attempt_at(server.url).heartbeat(progress=10)


def test_heartbeating_in_the_background_until_the_block_ends() -> None:
    api = CallbackApi()
    with loopback(api) as server:
        attempt = attempt_at(server.url)
        with attempt.heartbeating(every=0.02, progress=5) as beats:
            time.sleep(0.2)
            beats.report(progress=50)
            time.sleep(0.1)
        count = len(api.beats)
        time.sleep(0.1)
    assert count >= 3
    assert len(api.beats) == count  # stopped with the block
    assert api.beats[0].progress == 5
    assert api.beats[-1].progress == 50
    assert not beats.ended.is_set()


def test_heartbeating_surfaces_attempt_ended() -> None:
    api = CallbackApi("as-usual", error(409, "stale_attempt"))
    seen: list[Heartbeats] = []

    def work(attempt: Attempt) -> None:
        with attempt.heartbeating(every=0.02) as beats:
            seen.append(beats)
            assert beats.ended.wait(5)
            with pytest.raises(AttemptEnded):
                beats.raise_if_ended()

    with loopback(api) as server, pytest.raises(AttemptEnded):
        work(attempt_at(server.url))
    (beats,) = seen
    assert beats.beats == 1


def test_heartbeating_rides_out_a_failed_beat() -> None:
    api = CallbackApi(error(500, "internal"), error(500, "internal"), error(500, "internal"))
    with loopback(api) as server:
        attempt = attempt_at(server.url, attempts=1)
        with attempt.heartbeating(every=0.02) as beats:
            deadline = time.monotonic() + 5
            while beats.beats < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
    assert beats.beats >= 2


# -- callbacks -------------------------------------------------------------------------


def test_succeed_retries_503_honouring_retry_after_then_applies_once() -> None:
    busy = error(503, "unavailable", "database briefly unreachable", **{"Retry-After": "2"})
    api = CallbackApi(busy, busy)
    sleeps = Sleeps()
    with loopback(api) as server:
        answer = attempt_at(server.url, sleeps).succeed()
    assert answer.applied
    assert sleeps.slept == [2.0, 2.0]
    assert len(server.seen) == 3
    assert api.applied == [CallbackBody(attempt=1, status="succeeded")]
    assert server.seen[0].headers["content-type"] == "application/json"


@pytest.mark.parametrize("drop", ["apply-then-drop", "drop-before"])
def test_succeed_after_a_dropped_connection_is_applied_exactly_once(drop: str) -> None:
    api = CallbackApi(drop if drop == "apply-then-drop" else DROP)
    with loopback(api) as server:
        answer = attempt_at(server.url).succeed()
    assert len(server.seen) == 2
    assert len(api.applied) == 1
    # Applied by the first try when the answer was lost: the retry hears "already applied".
    assert answer.applied is (drop == "drop-before")


def test_fail_sends_the_algorithms_code() -> None:
    api = CallbackApi()
    with loopback(api) as server:
        attempt_at(server.url).fail("unreadable", "page 3 is blank")
    assert api.applied[0].model_dump() == {
        "attempt": 1,
        "status": "failed",
        "error": {"code": "unreadable", "message": "page 3 is blank"},
    }


def test_backoff_without_retry_after_grows_and_is_capped() -> None:
    api = CallbackApi(*[error(502, "bad_gateway")] * 5)
    sleeps = Sleeps()
    with loopback(api) as server:
        policy = RetryPolicy(attempts=8, base_seconds=1, max_seconds=4, sleep=sleeps)
        attempt = Attempt(dispatch_request(f"{server.url}/tasks/t-1/callback"), retry=policy)
        attempt.succeed()
    assert len(sleeps.slept) == 5
    ceilings = [1, 2, 4, 4, 4]
    assert all(c / 2 <= s <= c for s, c in zip(sleeps.slept, ceilings, strict=True))


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (error(409, "stale_attempt"), AttemptEnded),
        (error(409, "outcome_conflict"), AttemptEnded),
        (error(409, "result_missing"), ResultMissing),
        (error(401, "unauthorized"), Unauthorized),
        (error(404, "task_not_found"), TaskNotFound),
        (error(422, "invalid_body"), InvalidRequest),
        (error(413, "too_large"), InvalidRequest),
    ],
)
def test_refusals_raise_clear_errors(reply: Reply, kind: type[Exception]) -> None:
    with loopback(CallbackApi(reply)) as server, pytest.raises(kind) as caught:
        attempt_at(server.url).succeed()
    assert len(server.seen) == 1  # a refusal is not retried
    assert getattr(caught.value, "status", None) == reply.status


def test_result_missing_is_not_attempt_ended() -> None:
    assert not issubclass(ResultMissing, AttemptEnded)


def test_gives_up_after_the_policy_runs_out() -> None:
    with (
        loopback(lambda _: error(500, "internal")) as server,
        pytest.raises(Unavailable) as caught,
    ):
        attempt_at(server.url, attempts=3).succeed()
    assert len(server.seen) == 3
    assert caught.value.status == 500  # the last answer's


def test_giving_up_without_any_answer_has_no_status() -> None:
    with loopback(lambda _: DROP) as server, pytest.raises(Unavailable) as caught:
        attempt_at(server.url, attempts=2).succeed()
    assert len(server.seen) == 2
    assert caught.value.status is None
