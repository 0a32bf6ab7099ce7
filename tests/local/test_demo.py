"""``baton demo``: the sample algorithms' work on the shipped documents, the services'
HTTP behaviour, and one whole small run on the real emulator with its report."""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import urllib3
from baton_local.demo.algorithms import (
    AlgorithmService,
    EmptyDocument,
    EndpointSpec,
    RateLimitSpec,
    ServiceSpec,
    classify,
    keywords,
    load_corpus,
    pages,
    review,
    text_stats,
    tokenize,
)
from baton_local.demo.app import BULK, PORTAL, TROUBLE, Ledger, plan_tasks
from baton_local.demo.report import (
    MIN_BACKLOG_SECONDS,
    SHARE_TOLERANCE,
    UTILIZATION_TARGET,
    AttemptSpan,
    Timeline,
    build_report,
    busy_while_waiting,
    fair_shares,
    found_free_slot,
    percentile,
    rate_held,
    utilization,
    window_tasks,
)
from baton_local.demo.run import DemoOptions, DemoResult, run_demo
from baton_sdk import derive_secret
from baton_sdk.signing import cancel_webhook_id, dispatch_webhook_id, sign_headers
from PIL import Image
from rich.console import Console

from tests.support.waiting import wait_for

CORPUS = load_corpus()
KINDS = {"contract", "invoice", "form", "letter"}
REGULAR = sorted(name for name in CORPUS if name.split("-", 1)[0] in KINDS)


# -- the work on the documents ------------------------------------------------------------


def test_the_corpus_has_a_dozen_documents_of_four_kinds_and_two_bad_ones() -> None:
    assert len(REGULAR) >= 12
    assert {name.split("-", 1)[0] for name in REGULAR} == KINDS
    assert all(1000 < len(CORPUS[name]) < 5000 for name in REGULAR)
    assert tokenize(CORPUS["scan-0193-blank.txt"]) == []
    assert "fax-0417-garbled.txt" in CORPUS


@pytest.mark.parametrize("name", REGULAR)
def test_classify_tells_each_document_kind_from_its_words_and_layout(name: str) -> None:
    found = classify(CORPUS[name])
    assert found.label == name.split("-", 1)[0]
    assert 0.5 <= found.confidence <= 1
    assert max(found.scores, key=lambda label: found.scores[label]) == found.label


def test_classify_gives_up_on_the_garbled_fax_and_refuses_the_blank_scan() -> None:
    fax = classify(CORPUS["fax-0417-garbled.txt"])
    assert fax.label is None
    with pytest.raises(EmptyDocument):
        classify(CORPUS["scan-0193-blank.txt"])


def test_text_stats_count_words_sentences_and_reading_time() -> None:
    stats = text_stats("Dear Ann,\n\nThe parcel arrived today. It was late! Was it lost?\n")
    assert stats["words"] == 12
    assert stats["sentences"] == 3
    assert stats["lines"] == 2
    assert stats["reading_seconds"] == 4  # 12 words at 230 a minute, rounded up

    nda = text_stats(CORPUS["contract-mutual-nda.txt"])
    assert 400 < nda["words"] < 500
    assert 10 < nda["sentences"] < 30
    assert nda["reading_seconds"] == -(-nda["words"] * 60 // 230)
    with pytest.raises(EmptyDocument):
        text_stats(CORPUS["scan-0193-blank.txt"])


def test_keywords_rank_what_sets_a_document_apart_from_the_corpus() -> None:
    lease = [k["term"] for k in keywords(CORPUS["contract-office-lease.txt"], CORPUS, top=6)]
    assert {"tenant", "landlord", "rent"} <= set(lease)
    nda = [k["term"] for k in keywords(CORPUS["contract-mutual-nda.txt"], CORPUS, top=6)]
    assert "confidential" in nda
    scores = [k["score"] for k in keywords(CORPUS["invoice-consulting-q2.txt"], CORPUS)]
    assert scores == sorted(scores, reverse=True)
    assert len(scores) == 8
    assert not {"the", "and", "shall"} & set(lease)
    with pytest.raises(EmptyDocument):
        keywords(CORPUS["scan-0193-blank.txt"], CORPUS)


def test_review_picks_telling_sentences_obligations_and_amounts() -> None:
    found = review(CORPUS["invoice-consulting-q2.txt"], CORPUS)
    assert len(found["summary"]) == 2
    assert found["amounts"]
    assert review(CORPUS["contract-mutual-nda.txt"], CORPUS)["obligations"] > 0
    with pytest.raises(EmptyDocument):
        review(CORPUS["scan-0193-blank.txt"], CORPUS)
    assert pages(CORPUS["scan-0193-blank.txt"]) == 1
    assert pages(CORPUS["contract-master-services-agreement.txt"]) == 4


def test_a_small_plan_still_has_a_timeout_and_a_failure_and_is_reproducible() -> None:
    algorithms = ["text-stats", "keywords", "classify", "llm-review"]
    plan = plan_tasks(5, seed=3, documents=sorted(CORPUS), algorithms=algorithms)
    assert set(TROUBLE) <= {(task.algorithm, task.document) for task in plan}
    assert plan == plan_tasks(5, seed=3, documents=sorted(CORPUS), algorithms=algorithms)

    costs = {("text-stats", name): pages(text) for name, text in CORPUS.items()}
    big = plan_tasks(200, seed=3, documents=sorted(CORPUS), algorithms=algorithms, costs=costs)
    bulk = [t for t in big if t.app == BULK]
    portal = [t for t in big if t.app == PORTAL]
    per_algorithm = {a: sum(t.algorithm == a for t in bulk) for a in algorithms}
    assert max(per_algorithm.values()) - min(per_algorithm.values()) <= 5
    assert len({t.ref for t in big}) == 200
    assert {t.timeout_seconds for t in big if t.algorithm == "classify"} == {6}
    assert len({t.priority for t in big}) >= 3
    # The import sends far more, at once; the portal a steady stream, never to keywords
    assert len(bulk) > 1.5 * len(portal)
    assert {t.at for t in bulk} == {0.0}
    ats = sorted(t.at for t in portal)
    assert ats[0] == 0.0
    assert len({round(b - a, 6) for a, b in itertools.pairwise(ats)}) == 1
    assert "keywords" not in {t.algorithm for t in portal}
    assert {t.cost for t in big if t.algorithm == "text-stats"} > {1}
    assert {t.cost for t in big if t.algorithm != "text-stats"} == {1}
    assert all(t.message("r")["cost"] == t.cost for t in big if t.cost > 1)


def test_shares_are_measured_only_while_both_apps_wait_in_windows_of_whole_tasks() -> None:
    weights = {PORTAL: 4.0, BULK: 1.0}
    assert window_tasks(weights) == 20  # the import's 20 % is then 4 whole tasks
    # Given both apps waiting from 0 to 100 s, and one dispatch a second, four of every
    # five to the portal; then the import alone
    waiting = {PORTAL: [(0.0, 100.0)], BULK: [(0.0, 200.0)]}
    dispatches = [(float(n), BULK if n % 5 == 4 else PORTAL, 1) for n in range(100)]
    dispatches += [(100.0 + n, BULK, 1) for n in range(50)]
    shares = fair_shares(dispatches, waiting, weights)
    # Then only the contended hundred count, in five windows, each on the weights
    assert shares["contended_tasks"] == 100
    assert [w["tasks"] for w in shares["windows"]] == [20] * 5
    assert shares["contended_shares"] == {BULK: 0.2, PORTAL: 0.8}
    assert shares["passed"] is True

    # A window where the import got twice its share breaks it
    skewed = [(float(n), BULK if n % 5 >= 3 else PORTAL, 1) for n in range(40)]
    broken = fair_shares(skewed, waiting, weights)
    assert broken["windows"][0]["deviation"] > SHARE_TOLERANCE
    assert broken["passed"] is False

    # Too little contention is not measured, and says so
    few = fair_shares(dispatches[:10], waiting, weights)
    assert (few["measured"], few["windows"], few["contended_tasks"]) == (False, [], 10)


def test_the_rate_bound_holds_for_every_interval_with_a_stated_jitter() -> None:
    limit = RateLimitSpec(requests=4, per_seconds=1, burst=2)
    assert limit.bound(1.0) == 6
    steady = [0.0, 0.0] + [0.25 * n for n in range(1, 40)]
    held = rate_held(steady, limit)
    assert held["passed"] is True
    assert held["stretch_seconds"] == 0.0
    assert held["max_per_window"] <= limit.bound(1.0)
    # Five at once is three more than the burst: 0.75 s early
    flood = rate_held([0.0] * 5, limit)
    assert flood["passed"] is False
    assert flood["stretch_seconds"] == 0.75


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile(list(map(float, range(101))), 95) == 95.0


UTILIZATION_CHECK = "every cap kept busy while its tasks waited (>= 90% each)"


def _span(start: float, end: float, cost: int = 1, status: str = "succeeded") -> AttemptSpan:
    return AttemptSpan("r", "text-stats", 1, cost, start, end, status)


def test_utilization_is_the_cost_in_flight_over_the_cap_while_some_task_waited() -> None:
    # Given a cap of 2: one slot busy from 0 to 30 s, the other from 0 to 15 s and from
    # 16 s to 30 s, and tasks waiting from 0 to 28 s (two waits that overlap)
    spans = [_span(0, 30), _span(0, 15), _span(16, 30)]
    waits = [(0.0, 20.0), (10.0, 28.0)]

    # When its utilization is measured
    queued, busy = busy_while_waiting([(s.start, s.end, s.cost) for s in spans], waits)
    use = utilization(spans, waits, cap=2)

    # Then it counts the 28 s with a task waiting, and the one idle second in them
    assert (queued, busy) == (28.0, 55.0)
    assert use["utilization"] == round(55 / 56, 3)
    assert (use["measured"], use["passed"], use["mean_in_flight"]) == (True, True, 1.96)

    # And an idle second in every four is below the target
    gappy = [_span(0, 30), *(_span(n, n + 3) for n in range(0, 28, 4))]
    below = utilization(gappy, waits, cap=2)
    assert below["utilization"] is not None
    assert below["utilization"] < UTILIZATION_TARGET
    assert below["passed"] is False

    # And a backlog shorter than MIN_BACKLOG_SECONDS is reported, not judged
    short = utilization(gappy, [(0.0, MIN_BACKLOG_SECONDS - 1)], cap=2)
    assert (short["measured"], short["passed"]) == (False, True)
    assert short["utilization"] is not None


def test_a_task_found_a_free_slot_when_what_ran_and_waited_before_it_left_room() -> None:
    spans = [_span(0, 10, cost=2), _span(5, 10, cost=1)]
    waits = [(4.0, 12.0, 1), (6.0, 12.0, 2)]
    assert found_free_slot(1.0, 2, spans, waits, cap=4)  # 2 in flight, room for 2
    assert not found_free_slot(1.0, 3, spans, waits, cap=4)  # too costly for the room
    assert not found_free_slot(5.5, 1, spans, waits, cap=4)  # 3 in flight, 1 waits ahead
    assert found_free_slot(11.0, 1, spans, waits, cap=4)  # the two ahead fill 3 of 4


def _notification(ref: str, notification_id: str, status: str = "succeeded") -> dict[str, Any]:
    return {
        "notification_id": notification_id,
        "task_id": f"id-{ref}",
        "status": status,
        "attempts": 1,
        "metadata": {"ref": ref},
    }


def test_the_verdict_fails_on_a_repeated_or_missing_notification_or_a_broken_cap() -> None:
    # Given three tasks: one notified twice with the same id, one never, a service that
    # once had more cost in flight than its cap, and one whose small endpoint did
    plan = plan_tasks(3, seed=1, documents=sorted(CORPUS), algorithms=["text-stats"])
    ledger = Ledger(plan)
    ledger.submitted([task.ref for task in plan], at=0.0)
    first, second, _ = (task.ref for task in plan)
    assert ledger.notified(_notification(first, "n1", "failed"), at=1.0) is not None
    assert ledger.notified(_notification(first, "n1", "failed"), at=1.5) is None
    assert ledger.notified(_notification(second, "n2", "timed_out"), at=2.0) is not None
    service = AlgorithmService(ServiceSpec("text-stats", 2, (0.0, 0.0), 5, 1), CORPUS)
    service.max_in_flight = 3
    endpoints = (EndpointSpec("large", 3), EndpointSpec("small", 1))
    fleet = AlgorithmService(
        ServiceSpec("classify", 4, (0.0, 0.0), 5, 1, endpoints=endpoints), CORPUS
    )
    fleet.max_in_flight = 3
    fleet.endpoint_states[1].max_in_flight = 2

    # When the report is built
    report = build_report(
        ledger=ledger,
        services=[service, fleet],
        timeline=Timeline(),
        run={},
        send_failures=[],
        emulator={},
    )

    # Then each broken promise fails its own check
    failed = {check["name"] for check in report["checks"] if not check["passed"]}
    assert failed == {
        "every task reached a terminal state",
        "exactly one notification per task",
        "no algorithm above its cap (cost units)",
        "no endpoint above its cap (cost units)",
        UTILIZATION_CHECK,  # without Baton's attempt records there is nothing to measure
    }
    details = {check["name"]: check["detail"] for check in report["checks"]}
    assert "classify/small 2/1" in details["no endpoint above its cap (cost units)"]
    # ...and what could not be measured says so instead of passing in silence
    shares = next(name for name in details if name.startswith("weighted shares"))
    assert details[shares].startswith("NOTHING MEASURED")
    assert details[UTILIZATION_CHECK].startswith("NOT MEASURED: no attempt records")
    rate = next(name for name in details if name.startswith("rate limit held"))
    assert details[rate] == "not measured: no algorithm has a rate limit"
    assert report["passed"] is False
    assert report["notifications"]["repeated_ids"] == 1
    assert report["notifications"]["missing"] == [plan[2].ref]
    assert report["statuses"] == {"succeeded": 0, "failed": 1, "timed_out": 1, "cancelled": 0}


# -- one service on loopback, against a fake Baton ---------------------------------------

SECRET = derive_secret("a signing key of the tests, 32 characters+", "classify")
"""What ``baton algorithm secret classify`` would print under that key."""


class FakeBaton:
    """Takes result uploads and callbacks on loopback, and writes (and signs) dispatch
    and cancel requests."""

    def __init__(self) -> None:
        fake = self
        self.uploads: dict[str, bytes] = {}
        self.upload_checksums: dict[str, str] = {}
        self.callbacks: list[tuple[str, str, dict[str, Any]]] = []
        self.arrived = threading.Condition()

        class Handler(BaseHTTPRequestHandler):
            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_PUT(self) -> None:
                fake.uploads[self.path] = self._body()
                fake.upload_checksums[self.path] = self.headers.get("x-amz-checksum-sha256", "")
                self._answer({})

            def do_POST(self) -> None:
                body = json.loads(self._body())
                with fake.arrived:
                    fake.callbacks.append((self.path, self.headers["Authorization"], body))
                    fake.arrived.notify_all()
                task_id = self.path.split("/")[2]
                self._answer({**body, "task_id": task_id, "applied": True})

            def _answer(self, answer: dict[str, Any]) -> None:
                payload = json.dumps({k: v for k, v in answer.items() if k != "error"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def request(self, n: int, document: str, timeout: float = 30) -> dict[str, Any]:
        deadline = datetime.now(UTC) + timedelta(seconds=timeout)
        return {
            "task_id": f"t{n}",
            "attempt": 1,
            "algorithm": "classify",
            "input": {"document": document, "ref": f"ref-{n}"},
            "deadline": deadline.isoformat().replace("+00:00", "Z"),
            "result": {
                "bucket": "b",
                "key": f"k{n}",
                "upload_url": f"{self.base}/up/{n}",
                "expires_at": (deadline + timedelta(hours=1)).isoformat(),
            },
            "callback": {"url": f"{self.base}/tasks/t{n}/callback", "token": f"token-{n}"},
        }

    def wait_callbacks(self, count: int, timeout: float = 10) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.callbacks) >= count, timeout)


@pytest.fixture
def fake_baton() -> Iterator[FakeBaton]:
    fake = FakeBaton()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def _post(
    url: str, request: dict[str, Any], webhook_id: str | None = None, secret: str = SECRET
) -> urllib3.BaseHTTPResponse:
    """POST ``request`` signed as Baton signs it (``webhook_id`` None: a dispatch)."""
    body = json.dumps(request).encode()
    webhook_id = webhook_id or dispatch_webhook_id(request["task_id"], request["attempt"])
    headers = {"Content-Type": "application/json", **sign_headers(secret, webhook_id, body)}
    return urllib3.request("POST", url, body=body, headers=headers)


def _dispatch(service: AlgorithmService, request: dict[str, Any], url: str | None = None) -> int:
    return _post(url or service.endpoint, request).status


def _cancel(
    service: AlgorithmService, task_id: str, attempt: int = 1, secret: str = SECRET
) -> urllib3.BaseHTTPResponse:
    request = {
        "task_id": task_id,
        "attempt": attempt,
        "algorithm": "classify",
        "reason": "timed_out",
    }
    return _post(service.cancel_url, request, cancel_webhook_id(task_id, attempt), secret)


def _classify(**given: Any) -> AlgorithmService:
    spec = ServiceSpec(**{"name": "classify", "timeout_seconds": 5, "max_attempts": 1, **given})
    service = AlgorithmService(spec, CORPUS).start()
    service.use_secrets([SECRET])
    return service


def test_a_service_works_uploads_then_calls_back_and_says_429_when_busy(
    fake_baton: FakeBaton,
) -> None:
    service = _classify(max_concurrency=2, latency=(0.3, 0.3), workers=1)
    try:
        assert _dispatch(service, fake_baton.request(1, "invoice-consulting-q2.txt")) == 202
        assert _dispatch(service, fake_baton.request(2, "letter-offer-of-employment.txt")) == 429
        assert _dispatch(service, fake_baton.request(3, "no-such-document.txt")) == 422
        assert _dispatch(service, fake_baton.request(4, "scan-0193-blank.txt")) == 429
        fake_baton.wait_callbacks(1)
        assert _dispatch(service, fake_baton.request(5, "scan-0193-blank.txt")) == 202
        fake_baton.wait_callbacks(2)
    finally:
        service.stop()

    (path, authorization, body), (_, _, failed) = fake_baton.callbacks
    assert (path, authorization) == ("/tasks/t1/callback", "Bearer token-1")
    assert body == {"attempt": 1, "status": "succeeded"}
    uploaded = fake_baton.uploads["/up/1"]
    assert json.loads(uploaded)["label"] == "invoice"
    digest = base64.b64encode(hashlib.sha256(uploaded).digest()).decode()
    assert fake_baton.upload_checksums["/up/1"] == digest
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "empty_document"
    assert "/up/5" not in fake_baton.uploads
    assert (service.accepted, service.refused_busy, service.rejected) == (2, 2, 1)
    assert service.max_in_flight == 2  # a refused request counts while it is answered
    assert service.in_flight == 0
    assert [(c.ref, c.status, c.applied) for c in service.callbacks] == [
        ("ref-1", "succeeded", True),
        ("ref-5", "failed", True),
    ]


def test_a_forged_altered_or_unsigned_request_is_refused_401_and_never_worked_on(
    fake_baton: FakeBaton,
) -> None:
    # Given a service that verifies with its algorithm's secret
    service = _classify(max_concurrency=2, latency=(0.05, 0.05))
    try:
        # When requests come signed with another algorithm's secret, unsigned, or
        # altered after signing
        other = derive_secret("a signing key of the tests, 32 characters+", "keywords")
        forged = _post(
            service.endpoint, fake_baton.request(1, "form-expense-claim.txt"), None, other
        )
        request = fake_baton.request(2, "form-expense-claim.txt")
        unsigned = urllib3.request("POST", service.endpoint, json=request)
        body = json.dumps(request).encode()
        headers = sign_headers(SECRET, dispatch_webhook_id("t2", 1), body)
        altered = urllib3.request(
            "POST", service.endpoint, body=body.replace(b"t2", b"t9"), headers=headers
        )
        # ...and a signed one for another attempt's webhook id
        replayed = urllib3.request(
            "POST",
            service.endpoint,
            body=body,
            headers=sign_headers(SECRET, dispatch_webhook_id("t2", 2), body),
        )
        forged_cancel = _cancel(service, "t2", secret=other)

        # Then each is refused 401 with a JSON error, and none counts or runs
        for answer in (forged, unsigned, altered, replayed, forged_cancel):
            assert answer.status == 401
            assert json.loads(answer.data)["error"]["code"] == "invalid_signature"
        assert (service.requests, service.accepted, service.refused_unsigned) == (0, 0, 5)
        assert service.max_in_flight == 0

        # And the real one, signed with the secret, still goes through to its callback
        assert _dispatch(service, fake_baton.request(3, "form-expense-claim.txt")) == 202
        fake_baton.wait_callbacks(1)
    finally:
        service.stop()
    assert [path for path, _, _ in fake_baton.callbacks] == ["/tasks/t3/callback"]
    assert sorted(fake_baton.uploads) == ["/up/3"]


def test_a_service_without_its_secret_yet_says_come_back_later(fake_baton: FakeBaton) -> None:
    spec = ServiceSpec("classify", 1, (0.05, 0.05), 5, 1)
    service = AlgorithmService(spec, CORPUS).start()
    try:
        answer = _post(service.endpoint, fake_baton.request(1, "form-expense-claim.txt"))
        assert (answer.status, answer.headers["Retry-After"]) == (503, "1")
        service.use_secrets([SECRET])
        assert _dispatch(service, fake_baton.request(2, "form-expense-claim.txt")) == 202
        fake_baton.wait_callbacks(1)
    finally:
        service.stop()


def test_a_cancel_stops_the_attempt_at_work_and_a_dispatch_after_its_cancel_is_refused(
    fake_baton: FakeBaton,
) -> None:
    # Given an attempt at work for a few seconds
    service = _classify(max_concurrency=2, latency=(3.0, 3.0))
    try:
        assert _dispatch(service, fake_baton.request(1, "invoice-consulting-q2.txt")) == 202
        assert service.snapshot() == (1, 1)

        # When Baton cancels it (and an attempt the service never saw)
        stopped = _cancel(service, "t1")
        unknown = _cancel(service, "t2")

        # Then the running one stops (2xx), its cost leaves, and no callback or upload
        # follows; the unknown one is 404
        assert stopped.status == 200
        assert json.loads(stopped.data) == {"task_id": "t1", "attempt": 1, "stopped": True}
        assert unknown.status == 404
        wait_for(lambda: service.snapshot()[0] == 0 or None, timeout=2, interval=0.02)
        # And the dispatch of the attempt cancelled before it arrived is not worked on
        late = _post(service.endpoint, fake_baton.request(2, "invoice-consulting-q2.txt"))
        assert late.status == 409
        assert json.loads(late.data)["error"]["code"] == "attempt_cancelled"
        # ...nor is a repeat of the cancelled one
        assert _dispatch(service, fake_baton.request(1, "invoice-consulting-q2.txt")) == 409
        time.sleep(0.3)
    finally:
        service.stop()
    assert fake_baton.callbacks == []
    assert fake_baton.uploads == {}
    assert (service.cancel_requests, service.cancels_stopped, service.late_dispatches) == (2, 1, 2)
    assert service.running == {}
    assert service.cancelled == {"t1:1", "t2:1"}
    assert service.cancel_url.endswith("/v1/cancel")
    assert service.endpoint.endswith("/v1/tasks")


def test_each_endpoint_counts_its_own_cost_in_flight_within_its_cap(
    fake_baton: FakeBaton,
) -> None:
    endpoints = (EndpointSpec("large", 3), EndpointSpec("small", 1))
    service = _classify(max_concurrency=4, latency=(0.3, 0.3), endpoints=endpoints)
    try:
        large, small = service.endpoints
        assert service.cancel_urls == [
            url.replace("/v1/tasks", "/v1/cancel") for url in (large, small)
        ]
        costly = fake_baton.request(1, "invoice-consulting-q2.txt") | {"cost": 3}
        assert _dispatch(service, costly, large) == 202
        assert _dispatch(service, fake_baton.request(2, "form-expense-claim.txt"), small) == 202
        over = fake_baton.request(3, "letter-offer-of-employment.txt")
        assert _dispatch(service, over, small) == 429
        # A refused request counts while it is answered (Baton holds its slot until then)
        assert service.snapshot() == (4, 5)
        fake_baton.wait_callbacks(2)
    finally:
        service.stop()
    assert [(e.max_in_flight, e.accepted) for e in service.endpoint_states] == [(3, 1), (2, 1)]
    assert [(r.endpoint, r.cost, r.status) for r in service.received] == [
        ("large", 3, 202),
        ("small", 1, 202),
        ("small", 1, 429),
    ]


def test_a_stalled_attempt_stays_silent_and_in_flight_until_its_deadline(
    fake_baton: FakeBaton,
) -> None:
    service = _classify(max_concurrency=1, latency=(0.01, 0.01), timeout_seconds=1)
    try:
        request = fake_baton.request(1, "fax-0417-garbled.txt", timeout=1.5)
        assert _dispatch(service, request) == 202
        time.sleep(0.5)
        assert service.snapshot() == (1, 1)
        time.sleep(1.0)  # it lets go half a second before the deadline
        assert service.snapshot() == (0, 1)
    finally:
        service.stop()
    assert fake_baton.callbacks == []
    assert service.stalled == 1


# -- the whole demo on the emulator ------------------------------------------------------


def test_a_small_demo_run_keeps_every_promise(tmp_path: Path) -> None:
    # Given a small plan (it always holds a blank scan and a fax that classify cannot place)
    output = io.StringIO()
    options = DemoOptions(tasks=30, seed=11, reports=tmp_path / "reports", live=False, timeout=180)

    # When docs-portal runs it through the emulated stack
    result = run_demo(options, console=Console(file=output, width=140))

    # Then every task ended once, with one notification, and no cap was exceeded
    report = result.report
    assert result.exit_code == 0, output.getvalue()
    assert all(check["passed"] for check in report["checks"]), report["checks"]
    assert sum(report["statuses"].values()) == 30
    assert report["notifications"]["tasks_notified"] == 30
    assert report["notifications"]["missing"] == []
    assert report["notifications"]["repeated_ids"] == 0
    assert report["statuses"]["succeeded"] > 0
    assert report["statuses"]["failed"] > 0
    assert report["statuses"]["timed_out"] > 0
    for name, figures in report["algorithms"].items():
        assert 1 <= figures["max_in_flight"] <= figures["max_concurrency"], name
        # every request verified with the secret the stack's keyring derives for it
        assert figures["refused_unsigned_401"] == 0, name
        for endpoint in figures["endpoints"]:
            assert endpoint["max_in_flight"] <= endpoint["max_concurrency"], (name, endpoint)

    # And the fleet's new promises were each checked and held: two apps registered with
    # the SenderId the local SQS records, both endpoints of classify used within their
    # caps, pages billed as cost, the rate bound kept, and the shares reported
    checks = {check["name"]: check for check in report["checks"]}
    for name in (
        "each app sends as one of its registered senders",
        "no endpoint above its cap (cost units)",
        "rate limit held (requests <= burst + rate x (T + jitter) for every T)",
    ):
        assert checks[name]["passed"], checks[name]
    shares = next(check for name, check in checks.items() if name.startswith("weighted shares"))
    assert shares["passed"], shares
    assert "classify" in shares["detail"]
    for name, app in report["apps"].items():
        assert app["sender_seen"] in app["senders"], name
    assert {app["weight"] for app in report["apps"].values()} == {4.0, 1.0}
    classify_endpoints = report["algorithms"]["classify"]["endpoints"]
    assert [e["name"] for e in classify_endpoints] == ["gpu-large", "gpu-small"]
    assert sum(e["accepted"] for e in classify_endpoints) >= 1
    assert max(report["algorithms"]["text-stats"]["cost_per_task"]) > 1
    rate = report["algorithms"]["llm-review"]["rate"]
    assert rate["requests"] >= 1
    assert rate["max_per_window"] <= rate["window_bound"]
    assert rate["stretch_seconds"] <= rate["jitter_seconds"]
    assert {row["app"] for row in report["tasks"]} == {PORTAL, BULK}
    rows = report["tasks"]
    assert len({row["task_id"] for row in rows}) == 30
    timed_out = [row for row in rows if row["status"] == "timed_out"]
    assert {(row["algorithm"], row["document"]) for row in timed_out} == {
        ("classify", "fax-0417-garbled.txt")
    }
    assert all(row["result_ok"] for row in rows if row["status"] == "succeeded")
    assert report["results"]["read_ok"] == report["statuses"]["succeeded"]
    latency = report["latency_ms"]
    assert 0 < latency["submit_to_dispatch"]["p50"] <= latency["submit_to_notify"]["p50"]
    assert report["throughput_tasks_per_second"] > 0

    # And an operator's views of the run: baton stats at the end, one algorithm a row,
    # and baton task why of a task while it waited (with 30 tasks on caps of 5 and 6,
    # some wait), naming one of the documented rules
    operator = report["operator"]
    assert operator["stats"].splitlines()[1].split()[:3] == ["algorithm", "pending", "queued"]
    for name in report["algorithms"]:
        assert any(line.startswith(name) for line in operator["stats"].splitlines()), name
    if operator["task_why"] is not None:
        assert operator["task_why"]["waiting"]["reason"] in {
            "not_before",
            "backoff",
            "capacity",
            "app_limit",
            "rate_limit",
            "cooling_down",
            "paused",
            "recovering",
        }

    # And the JSON report and the PNG timeline were written
    assert json.loads(result.json_path.read_text())["passed"] is True
    with Image.open(result.png_path) as image:
        image.verify()
    with Image.open(result.png_path) as image:
        assert image.format == "PNG"
        assert image.size[0] > 600
        assert image.size[1] > 600
    assert "PASS" in output.getvalue()


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoResult, str]:
    """The demo as ``make demo`` runs it (embedded Redis and SQLite, 200 tasks), once."""
    output = io.StringIO()
    options = DemoOptions(reports=tmp_path_factory.mktemp("reports"), live=False, timeout=280)
    return run_demo(options, console=Console(file=output, width=140)), output.getvalue()


@pytest.mark.slow
def test_under_its_backlog_every_algorithm_keeps_its_cap_busy(
    default_run: tuple[DemoResult, str],
) -> None:
    # Given the default run: the import's backlog at once, the portal's steady stream
    result, output = default_run
    report = result.report

    # Then the demo's own check passed: each algorithm had a backlog long enough to
    # measure, and kept at least 90% of its cap in flight (Baton's attempt records)
    # while its tasks waited
    check = next(check for check in report["checks"] if check["name"] == UTILIZATION_CHECK)
    assert check["passed"], check["detail"]
    for name, figures in report["algorithms"].items():
        use = figures["utilization"]
        assert use["measured"], (name, use)
        assert use["queued_seconds"] >= MIN_BACKLOG_SECONDS, (name, use)
        assert use["utilization"] >= UTILIZATION_TARGET, (name, use)
        assert figures["max_in_flight"] == figures["max_concurrency"], name
    # ...measured on the attempts Baton recorded, every one of them
    attempts = {(row["ref"], row["attempt"]) for row in report["attempts"]}
    assert len(attempts) == len(report["attempts"])
    assert len(attempts) >= sum(report["statuses"].values())

    # And the run says what bounded it, and how fast a task with a free slot went out
    assert "What bounds throughput here: the caps, once saturated" in output
    assert "Caps in use while tasks waited" in output
    free = report["latency_ms"]["submit_to_dispatch_free_slot"]
    assert free["count"] >= 1
    assert free["p50"] is not None
    with Image.open(result.png_path) as image:
        assert image.format == "PNG"
