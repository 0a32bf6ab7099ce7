"""The demo's algorithm services: small, real work on the sample documents, served
the way a real algorithm service talks to Baton (see the README, "For algorithm
services"), through the client SDK (``baton_sdk``).

The work itself is a set of pure functions (``text_stats``, ``keywords``,
``classify``, ``review``) over the documents shipped in ``baton_local/demo/documents``.
Each ``AlgorithmService`` wraps one of them in HTTP servers on loopback, one per
endpoint. A dispatch request is verified and parsed with ``Dispatch.from_request`` and
the algorithm's signing secrets (a forged, altered or replayed one is answered 401),
accepted with 202, and worked on in a background thread for the task's latency
(seconds, as real OCR or model calls take: long enough that the emulated stack's own
overhead per task does not decide how busy the caps are); then
``upload_result`` PUTs its JSON result with its SHA-256 checksum and ``succeed()`` or
``fail()`` calls back. Each endpoint also takes Baton's cancel request
(``POST /v1/cancel`` beside ``POST /v1/tasks``, verified with
``parse_cancel_request``): the attempt's work stops, and a dispatch of a cancelled
attempt that arrives late is not worked on.

The secrets are the algorithm's own (what ``baton algorithm secret <name>`` prints),
handed to the service by whoever starts it, once the stack that signs is up
(``use_secrets``); until then the service answers 503 with ``Retry-After``.

The fleet, as Baton's registry sees it:

- ``text-stats`` bills by the page: a task costs its document's pages, one worker a
  page, all of them at once;
- ``classify`` runs on two servers of different sizes (``gpu-large``, cap 4, and the
  slower ``gpu-small``, cap 2): two endpoints of one algorithm;
- ``llm-review`` stands for a paid LLM API: a request-rate limit in the registry, and
  the service records the moment of every request it receives.

How the services misbehave, on purpose:

- an empty document (``scan-0193-blank.txt``) fails: callback ``failed`` with the
  error code ``empty_document``;
- ``classify`` cannot place a document its rules do not recognise (the garbled
  fax): it hands it to a "slow model" that never answers, so the service stays
  silent and Baton times the attempt out;
- ``keywords`` shares its workers with a periodic index rebuild: while the rebuild
  holds a worker, a request beyond its free workers is answered 429 and Baton
  retries it with backoff;
- an unknown document is refused with 422 (Baton fails the task for good).

Every service counts the cost in flight, per endpoint and in all, from receiving the
request until it sends the callback (for a silent attempt, until just before the
attempt's deadline, after which Baton owns the timeout), and remembers the highest
counts: the demo checks them against the endpoints' and the algorithm's
``max_concurrency``. The count never runs ahead of Baton's own (a slot is taken before
the request and freed after the callback), so a count above a cap is a broken promise,
not a measuring artefact.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

from baton_sdk import Attempt, BatonError, Dispatch, InvalidSignature, parse_cancel_request
from baton_sdk.contracts import CallbackAnswer

DOCUMENTS_DIR = Path(__file__).resolve().parent / "documents"
DISPATCH_PATH = "/v1/tasks"
CANCEL_PATH = "/v1/cancel"
READING_WORDS_PER_MINUTE = 230
STALL_MARGIN_SECONDS = 0.5
STOP_WAIT_SECONDS = 5.0
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
CHECKBOX = re.compile(r"\[[ xX]\]")
MONEY = re.compile(r"\b\d{1,3}(?:,\d{3})*\.\d{2}\b")
SALUTATION = re.compile(r"^Dear [^\n]+,$", re.MULTILINE)
CLOSING = re.compile(r"^(?:Yours (?:sincerely|faithfully)|Kind regards),?$", re.MULTILINE)
_STOPWORD_TEXT = """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each
    few for from further had has have having he her here hers herself him himself his how
    i if in into is it its itself just me more most my myself no nor not now of off on
    once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves per within shall may must us any"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


class EmptyDocument(ValueError):
    """The document has no words (a blank scan)."""

    code = "empty_document"


# -- the corpus ----------------------------------------------------------------------------


def load_corpus(directory: Path = DOCUMENTS_DIR) -> dict[str, str]:
    """The sample documents by file name."""
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(directory.glob("*.txt"))}


def tokenize(text: str) -> list[str]:
    """Lower-case words of letters (an inner apostrophe allowed)."""
    return WORD.findall(text.lower())


def _content_words(text: str) -> list[str]:
    return [word for word in tokenize(text) if len(word) > 2 and word not in STOPWORDS]


# -- text-stats ----------------------------------------------------------------------------


def text_stats(text: str) -> dict[str, Any]:
    """Counts and reading time of a document."""
    words = tokenize(text)
    if not words:
        raise EmptyDocument("the document has no words")
    sentences = [part for part in SENTENCE_END.split(text) if WORD.search(part.lower()) is not None]
    lines = [line for line in text.splitlines() if line.strip()]
    return {
        "words": len(words),
        "unique_words": len(set(words)),
        "sentences": len(sentences),
        "lines": len(lines),
        "characters": len(text),
        "average_words_per_sentence": round(len(words) / max(1, len(sentences)), 1),
        "reading_seconds": math.ceil(len(words) * 60 / READING_WORDS_PER_MINUTE),
    }


# -- keywords -----------------------------------------------------------------------------


def keywords(text: str, corpus: Mapping[str, str], top: int = 8) -> list[dict[str, Any]]:
    """The document's most distinctive terms: term frequency times a smoothed inverse
    document frequency over the corpus, highest first (ties by the term)."""
    terms = _content_words(text)
    if not terms:
        raise EmptyDocument("the document has no words")
    documents = [set(_content_words(other)) for other in corpus.values()]
    counts = Counter(terms)
    scores = {}
    for term, count in counts.items():
        frequency = sum(1 for words in documents if term in words)
        idf = math.log((1 + len(documents)) / (1 + frequency)) + 1
        scores[term] = count / len(terms) * idf
    ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:top]
    return [{"term": term, "score": round(score, 4)} for term, score in ranked]


# -- classify -----------------------------------------------------------------------------

CLASS_RULES: dict[str, dict[str, float]] = {
    "contract": {
        "agreement": 3, "parties": 3, "party": 2, "clause": 2, "shall": 1, "term": 1,
        "termination": 2, "terminate": 2, "governing": 2, "law": 1, "liability": 2,
        "lease": 2, "landlord": 1, "tenant": 1, "witness": 2, "whereof": 3,
        "jurisdiction": 2, "confidential": 1,
    },
    "invoice": {
        "invoice": 3, "subtotal": 4, "total": 2, "vat": 2, "due": 1, "amount": 1,
        "iban": 2, "bic": 2, "qty": 3, "rate": 1, "bill": 2, "charges": 2, "payable": 1,
        "usage": 1,
    },
    "form": {
        "form": 4, "section": 1, "part": 1, "tick": 3, "signature": 2, "declaration": 2,
        "complete": 1, "completed": 1, "block": 1, "capitals": 2, "use": 1, "only": 1,
        "checked": 1,
    },
    "letter": {
        "dear": 3, "sincerely": 3, "faithfully": 3, "yours": 2, "writing": 2, "enc": 2,
        "regards": 3, "grateful": 2, "please": 1, "hesitate": 2, "look": 1, "forward": 1,
    },
}  # fmt: skip
"""Weights of the words that vote for each document class."""

PATTERN_RULES: tuple[tuple[str, re.Pattern[str], float], ...] = (
    ("form", CHECKBOX, 1.5),
    ("invoice", MONEY, 0.5),
    ("letter", SALUTATION, 10),
    ("letter", CLOSING, 10),
)
"""Layout features: tick boxes make forms, amounts with cents make invoices, a
salutation and a complimentary close make letters."""

MIN_EVIDENCE = 12.0
"""Below this much evidence the rules give up (and the service escalates)."""


@dataclass(frozen=True)
class Classification:
    label: str | None
    """None: the rules cannot place the document."""
    confidence: float
    scores: dict[str, float]


def classify(text: str) -> Classification:
    """Contract, invoice, form or letter, by weighted keyword and layout rules; the
    confidence is the winning share of all the evidence."""
    words = Counter(tokenize(text))
    if not words:
        raise EmptyDocument("the document has no words")
    scores = {
        label: float(sum(weight * words[word] for word, weight in rules.items()))
        for label, rules in CLASS_RULES.items()
    }
    for label, pattern, weight in PATTERN_RULES:
        scores[label] += weight * len(pattern.findall(text))
    total = sum(scores.values())
    best = max(sorted(scores), key=lambda label: scores[label])
    rounded = {label: round(score, 1) for label, score in scores.items()}
    if total < MIN_EVIDENCE:
        return Classification(None, round(scores[best] / total, 2) if total else 0.0, rounded)
    return Classification(best, round(scores[best] / total, 2), rounded)


# -- review (the LLM-like one) ---------------------------------------------------------

PAGE_CHARACTERS = 1000
"""A page of the sample documents, for what a task costs (text-stats bills by the page)."""
OBLIGATION = re.compile(r"\b(?:shall|must|agrees? to|is required to)\b", re.IGNORECASE)


def pages(text: str) -> int:
    """Pages of a document (at least one: a blank scan is still a page to look at)."""
    return max(1, math.ceil(len(text.strip()) / PAGE_CHARACTERS))


def review(text: str, corpus: Mapping[str, str], sentences: int = 2) -> dict[str, Any]:
    """What a reviewer wants first: the document's most telling sentences (scored by its
    distinctive terms, kept in reading order), its obligations and its amounts."""
    terms = {k["term"]: k["score"] for k in keywords(text, corpus, top=12)}
    parts = [part.strip() for part in SENTENCE_END.split(text) if WORD.search(part.lower())]
    scored = [
        (sum(terms.get(word, 0.0) for word in tokenize(part)), n) for n, part in enumerate(parts)
    ]
    best = sorted(n for _, n in sorted(scored, key=lambda item: (-item[0], item[1]))[:sentences])
    return {
        "summary": [" ".join(parts[n].split()) for n in best],
        "obligations": sum(1 for part in parts if OBLIGATION.search(part)),
        "amounts": MONEY.findall(text),
    }


# -- the services -------------------------------------------------------------------------


class Stall(Exception):
    """The work never finishes: the service stays silent until the deadline."""


Json = dict[str, Any]

Work = Callable[[str, str, Mapping[str, str]], dict[str, Any]]
"""(document name, text, corpus) -> the JSON result; raises EmptyDocument or Stall."""


def _text_stats_work(name: str, text: str, _corpus: Mapping[str, str]) -> dict[str, Any]:
    return {"document": name, **text_stats(text)}


def _keywords_work(name: str, text: str, corpus: Mapping[str, str]) -> dict[str, Any]:
    return {"document": name, "keywords": keywords(text, corpus)}


def _classify_work(name: str, text: str, _corpus: Mapping[str, str]) -> dict[str, Any]:
    found = classify(text)
    if found.label is None:
        raise Stall("no rule matches; escalated to the slow model")
    return {
        "document": name,
        "label": found.label,
        "confidence": found.confidence,
        "scores": found.scores,
    }


def _review_work(name: str, text: str, corpus: Mapping[str, str]) -> dict[str, Any]:
    return {"document": name, **review(text, corpus)}


WORK: dict[str, Work] = {
    "text-stats": _text_stats_work,
    "keywords": _keywords_work,
    "classify": _classify_work,
    "llm-review": _review_work,
}


@dataclass(frozen=True)
class EndpointSpec:
    """One server of an algorithm, with its own cap (in cost units)."""

    name: str
    max_concurrency: int
    slowdown: float = 1.0
    """A smaller server takes this many times longer over the same work."""


@dataclass(frozen=True)
class RateLimitSpec:
    """The algorithm's request-rate limit, as the registry takes it."""

    requests: int
    per_seconds: float
    burst: int

    def bound(self, seconds: float) -> float:
        """The most requests invariant 8 lets arrive in an interval this long."""
        return self.burst + self.requests * seconds / self.per_seconds

    def registry_entry(self) -> dict[str, Any]:
        return {"requests": self.requests, "per_seconds": self.per_seconds, "burst": self.burst}


@dataclass(frozen=True)
class ServiceSpec:
    """One algorithm service and its registry entry."""

    name: str
    max_concurrency: int
    """The algorithm's cap in cost units (with several endpoints, at most their sum)."""
    latency: tuple[float, float]
    """Seconds of work per task, uniformly between the two."""
    timeout_seconds: int
    max_attempts: int
    workers: int | None = None
    """The service's own limit (default: ``max_concurrency``); one endpoint only."""
    rebuild_every: float = 0.0
    """Seconds between index rebuilds that hold one worker (0: never)."""
    rebuild_seconds: float = 0.0
    endpoints: tuple[EndpointSpec, ...] = ()
    """Several servers; none: one of ``max_concurrency``."""
    rate_limit: RateLimitSpec | None = None
    by_page: bool = False
    """A task costs its document's pages: a worker a page, all at once, so a long
    document takes more of the cap, not longer."""

    def endpoint_specs(self) -> tuple[EndpointSpec, ...]:
        return self.endpoints or (EndpointSpec("main", self.max_concurrency),)

    def registry_entry(
        self, urls: Sequence[str], cancel_urls: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """The registry entry for servers at ``urls``, each taking Baton's cancel
        requests at the matching ``cancel_urls`` (so work Baton gave up on stops)."""
        cancels = list(cancel_urls) if cancel_urls is not None else [None] * len(urls)
        entry: dict[str, Any] = {
            "max_concurrency": self.max_concurrency,
            "timeout_seconds": self.timeout_seconds,
            "max_timeout_seconds": max(self.timeout_seconds, 60),
            "max_attempts": self.max_attempts,
            "cancel_grace_seconds": 10,
        }
        if self.endpoints:
            entry["endpoints"] = [
                {"url": url, "max_concurrency": endpoint.max_concurrency}
                | ({"cancel_url": cancel} if cancel else {})
                for url, cancel, endpoint in zip(urls, cancels, self.endpoints, strict=True)
            ]
        else:
            entry["endpoint"] = urls[0]
            if cancels[0]:
                entry["cancel_url"] = cancels[0]
        if self.rate_limit is not None:
            entry["rate_limit"] = self.rate_limit.registry_entry()
        return entry


SERVICES = (
    ServiceSpec("text-stats", max_concurrency=24, latency=(5.0, 6.0), timeout_seconds=20,
                max_attempts=3, by_page=True),
    ServiceSpec("keywords", max_concurrency=5, latency=(4.0, 5.0), timeout_seconds=15,
                max_attempts=4, rebuild_every=15.0, rebuild_seconds=0.6),
    ServiceSpec("classify", max_concurrency=6, latency=(2.0, 2.6), timeout_seconds=10,
                max_attempts=3,
                endpoints=(EndpointSpec("gpu-large", 4), EndpointSpec("gpu-small", 2, 1.25))),
    ServiceSpec("llm-review", max_concurrency=8, latency=(4.5, 5.5), timeout_seconds=20,
                max_attempts=3, rate_limit=RateLimitSpec(requests=2, per_seconds=1, burst=4)),
)  # fmt: skip


class ServiceListener(Protocol):
    """Who wants to hear what a service does with each task (the demo's tracker)."""

    def dispatch_received(self, ref: str, algorithm: str, accepted: bool) -> None: ...

    def attempt_over(self, ref: str, algorithm: str, reported: bool) -> None: ...


@dataclass
class CallbackRecord:
    ref: str
    attempt: int
    status: str
    http_status: int
    """Baton's answer (200), or the refusal's; 0 when Baton could not be reached."""
    applied: bool | None = None
    error: str | None = None
    """The refusal's error code."""


@dataclass(frozen=True)
class Received:
    """One dispatch request as the service saw it arrive."""

    at: float
    """Monotonic seconds."""
    wall: float
    """Seconds since the epoch (to line up with Baton's timestamps)."""
    ref: str
    cost: int
    endpoint: str
    status: int


@dataclass
class RunningAttempt:
    """An attempt the service works on."""

    ref: str
    cost: int
    index: int
    """Its endpoint."""
    since: float = 0.0
    """When its request arrived, seconds since the epoch."""
    stop: threading.Event = field(default_factory=threading.Event)
    """Set by its cancel request, or when the service stops."""


@dataclass(frozen=True)
class Worked:
    """An attempt the service held, from its request until it let go (before its
    callback); seconds since the epoch."""

    ref: str
    cost: int
    since: float
    until: float


@dataclass
class EndpointState:
    """What one server of the service holds, in cost units."""

    spec: EndpointSpec
    server: ThreadingHTTPServer | None = None
    in_flight: int = 0
    max_in_flight: int = 0
    busy: int = 0
    requests: int = 0
    accepted: int = 0

    @property
    def base_url(self) -> str:
        assert self.server is not None, "the service is not started"
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def url(self) -> str:
        return self.base_url + DISPATCH_PATH

    @property
    def cancel_url(self) -> str:
        return self.base_url + CANCEL_PATH


@dataclass
class AlgorithmService:
    """One algorithm service, on one loopback port per endpoint.

    It verifies every request with ``secrets``, the whsec_ secrets of the algorithm it
    is registered as (``use_secrets``, from whoever started it and the stack)."""

    spec: ServiceSpec
    corpus: Mapping[str, str]
    listener: ServiceListener | None = None
    seed: int = 0
    secrets: list[str] = field(default_factory=list)
    in_flight: int = 0
    """Cost units in flight on all its endpoints."""
    max_in_flight: int = 0
    requests: int = 0
    accepted: int = 0
    refused_busy: int = 0
    rejected: int = 0
    refused_unsigned: int = 0
    """Requests refused 401: not signed with its secret (forged, altered, replayed)."""
    stalled: int = 0
    uploads_failed: int = 0
    cancel_requests: int = 0
    cancels_stopped: int = 0
    """Cancel requests that stopped an attempt at work."""
    late_dispatches: int = 0
    """Dispatch requests of an attempt cancelled before they arrived."""
    callbacks: list[CallbackRecord] = field(default_factory=list)
    first_request: dict[str, float] = field(default_factory=dict)
    """Monotonic time of the first dispatch request, by the task's ``input.ref``."""
    received: list[Received] = field(default_factory=list)
    running: dict[str, RunningAttempt] = field(default_factory=dict)
    """Attempts in flight, by ``<task_id>:<attempt>``."""
    worked: list[Worked] = field(default_factory=list)
    """Every accepted attempt that is over here."""
    cancelled: set[str] = field(default_factory=set)
    """Every attempt a cancel request named (``<task_id>:<attempt>``)."""
    endpoint_states: list[EndpointState] = field(default_factory=list)
    _rebuilding: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _random: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.endpoint_states = [EndpointState(spec) for spec in self.spec.endpoint_specs()]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def workers(self) -> int:
        return self.spec.workers or self.spec.max_concurrency

    @property
    def endpoint(self) -> str:
        """The first endpoint's URL."""
        return self.endpoint_states[0].url

    @property
    def endpoints(self) -> list[str]:
        return [state.url for state in self.endpoint_states]

    @property
    def cancel_url(self) -> str:
        """The first endpoint's cancel URL, beside its dispatch URL."""
        return self.endpoint_states[0].cancel_url

    @property
    def cancel_urls(self) -> list[str]:
        """Each endpoint's cancel URL, in the order of ``endpoints``."""
        return [state.cancel_url for state in self.endpoint_states]

    def registry_entry(self) -> dict[str, Any]:
        return self.spec.registry_entry(self.endpoints, self.cancel_urls)

    def use_secrets(self, secrets: Sequence[str]) -> None:
        """Verify requests with these from now on: the algorithm's secret under each key
        of Baton's signing keyring (several while a key rotates)."""
        if not secrets:
            raise ValueError("no signing secret given")
        with self._lock:
            self.secrets = list(secrets)

    def start(self) -> AlgorithmService:
        self._random.seed(f"{self.seed}:{self.spec.name}")
        for index, state in enumerate(self.endpoint_states):
            state.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(index))
            state.server.daemon_threads = True
            self._spawn(state.server.serve_forever)
        if self.spec.rebuild_every > 0:
            self._spawn(self._rebuild_index)
        return self

    def _handler(self, index: int) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = dict(self.headers.items())
                path = self.path.partition("?")[0]
                if path == DISPATCH_PATH:
                    status, answer = service._accept(body, headers, index)
                elif path == CANCEL_PATH:
                    status, answer = service._cancel(body, headers)
                else:
                    status, answer = 404, _error("not_found", f"no {path}")
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if status in (429, 503):
                    self.send_header("Retry-After", "1")
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def stop(self) -> None:
        self._stop.set()
        for state in self.endpoint_states:
            if state.server is not None:
                state.server.shutdown()
                state.server.server_close()
        with self._lock:
            for running in self.running.values():
                running.stop.set()
        # A call to Baton may be retrying into a stack that is gone: wait a little, not
        # for every retry (the threads are daemons).
        until = time.monotonic() + STOP_WAIT_SECONDS
        for thread in list(self._threads):
            thread.join(timeout=max(0.0, until - time.monotonic()))

    def snapshot(self) -> tuple[int, int]:
        """(cost in flight now, most ever in flight)."""
        with self._lock:
            return self.in_flight, self.max_in_flight

    def running_refs(self) -> list[tuple[str, int]]:
        """(ref, cost) of each attempt in flight now."""
        with self._lock:
            return [(running.ref, running.cost) for running in self.running.values()]

    # -- requests -------------------------------------------------------------------------

    def _verified(self, body: bytes, headers: Mapping[str, str]) -> Attempt | tuple[int, Json]:
        with self._lock:
            secrets = list(self.secrets)
        if not secrets:
            # Started before the stack that signs its requests: "busy, come back later"
            # keeps the task waiting without using up one of its attempts.
            return 503, _error("starting", "no signing secret yet")
        try:
            return Dispatch.from_request(body, headers, secrets)
        except InvalidSignature as exc:
            with self._lock:
                self.refused_unsigned += 1
            return 401, _error("invalid_signature", str(exc))
        except BatonError:
            return 422, _error("invalid_request", "not a dispatch request")

    def _accept(self, body: bytes, headers: Mapping[str, str], index: int = 0) -> tuple[int, Json]:
        received, wall = time.monotonic(), time.time()
        verified = self._verified(body, headers)
        if not isinstance(verified, Attempt):
            return verified
        attempt = verified
        document = attempt.input.get("document")
        if not isinstance(document, str):
            return 422, _error("invalid_request", "input.document is not a string")
        ref = str(attempt.input.get("ref", attempt.task_id))
        cost, key = attempt.cost, f"{attempt.task_id}:{attempt.number}"
        endpoint = self.endpoint_states[index]
        workers = self.workers if len(self.endpoint_states) == 1 else endpoint.spec.max_concurrency
        running: RunningAttempt | None = None
        with self._lock:
            self.requests += 1
            endpoint.requests += 1
            self.first_request.setdefault(ref, received)
            refusal: tuple[int, Json] | None
            if key in self.cancelled:
                # Baton ended the attempt and freed its slot before this request came in:
                # counting it in flight would run ahead of Baton's own count.
                self.late_dispatches += 1
                refusal = 409, _error("attempt_cancelled", "this attempt was cancelled")
            else:
                # In flight from the request until the callback, for a refusal too: Baton
                # holds the slot until it has read the answer.
                self.in_flight += cost
                endpoint.in_flight += cost
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                endpoint.max_in_flight = max(endpoint.max_in_flight, endpoint.in_flight)
                if document not in self.corpus:
                    self.rejected += 1
                    refusal = 422, _error("unknown_document", f"no document {document!r}")
                elif endpoint.busy + (self._rebuilding and index == 0) + cost > workers:
                    self.refused_busy += 1
                    refusal = 429, _error("busy", "all workers are busy; try again later")
                else:
                    endpoint.busy += cost
                    endpoint.accepted += 1
                    self.accepted += 1
                    running = self.running[key] = RunningAttempt(ref, cost, index, wall)
                    latency = self._random.uniform(*self.spec.latency) * endpoint.spec.slowdown
                    refusal = None
                if refusal is not None:
                    self.in_flight -= cost
                    endpoint.in_flight -= cost
            self.received.append(
                Received(
                    received, wall, ref, cost, endpoint.spec.name, refusal[0] if refusal else 202
                )
            )
        if self.listener is not None:
            self.listener.dispatch_received(ref, self.name, accepted=refusal is None)
        if refusal is not None or running is None:
            if self.listener is not None:
                self.listener.attempt_over(ref, self.name, reported=False)
            return refusal or (500, _error("internal", "no attempt"))
        self._spawn(self._work, attempt, key, running, document, latency)
        return 202, {"task_id": attempt.task_id, "attempt": attempt.number, "accepted": True}

    def _cancel(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, Json]:
        """Baton's cancel request for an attempt it ended: stop the attempt's work (200),
        or 404 for one the service is not working on; either way a dispatch of that
        attempt arriving later is not worked on."""
        with self._lock:
            secrets = list(self.secrets)
        if not secrets:
            return 503, _error("starting", "no signing secret yet")
        try:
            cancel = parse_cancel_request(body, headers, secrets)
        except InvalidSignature as exc:
            with self._lock:
                self.refused_unsigned += 1
            return 401, _error("invalid_signature", str(exc))
        except BatonError:
            return 422, _error("invalid_request", "not a cancel request")
        key = f"{cancel.task_id}:{cancel.attempt}"
        with self._lock:
            self.cancel_requests += 1
            self.cancelled.add(key)
            running = self.running.get(key)
            if running is not None and not running.stop.is_set():
                self.cancels_stopped += 1
            if running is not None:
                running.stop.set()
        if running is None:
            return 404, _error("unknown_attempt", f"no attempt {key} at work here")
        return 200, {"task_id": cancel.task_id, "attempt": cancel.attempt, "stopped": True}

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _end(self, key: str, running: RunningAttempt, reported: bool) -> None:
        with self._lock:
            self.running.pop(key, None)
            self.worked.append(Worked(running.ref, running.cost, running.since, time.time()))
            endpoint = self.endpoint_states[running.index]
            self.in_flight -= running.cost
            endpoint.in_flight -= running.cost
            endpoint.busy -= running.cost
        if self.listener is not None:
            self.listener.attempt_over(running.ref, self.name, reported=reported)

    def _work(
        self, attempt: Attempt, key: str, running: RunningAttempt, document: str, latency: float
    ) -> None:
        if self._stop.is_set():
            running.stop.set()
        if running.stop.wait(latency):  # cancelled, or the service stops
            self._end(key, running, reported=False)
            return
        try:
            result = WORK[self.name](document, self.corpus[document], self.corpus)
        except EmptyDocument as exc:
            code, message = exc.code, str(exc)
            self._end(key, running, reported=True)
            self._report(attempt, running.ref, "failed", lambda: attempt.fail(code, message))
            return
        except Stall:
            with self._lock:
                self.stalled += 1
            # Silent to the end (or to its cancel): it gives up a little before the
            # deadline, so that by the time Baton times the attempt out and sends
            # another, this one is gone.
            left = (attempt.deadline - datetime.now(UTC)).total_seconds()
            running.stop.wait(max(0.0, left - STALL_MARGIN_SECONDS))
            self._end(key, running, reported=False)
            return
        try:
            attempt.upload_result(json.dumps(result).encode(), "application/json")
        except BatonError as exc:
            with self._lock:
                self.uploads_failed += 1
            self._end(key, running, reported=True)
            message = str(exc)[:200]
            self._report(
                attempt, running.ref, "failed", lambda: attempt.fail("upload_failed", message)
            )
            return
        # The attempt leaves this service before its callback goes out: Baton frees the
        # slot only once it has the callback, so the count here never runs ahead of it.
        self._end(key, running, reported=True)
        self._report(attempt, running.ref, "succeeded", attempt.succeed)

    def _report(
        self, attempt: Attempt, ref: str, status: str, call: Callable[[], CallbackAnswer]
    ) -> None:
        try:
            answer = call()
        except BatonError as exc:
            record = CallbackRecord(
                ref, attempt.number, status, exc.status or 0, error=exc.code or type(exc).__name__
            )
        else:
            record = CallbackRecord(ref, attempt.number, status, 200, applied=answer.applied)
        with self._lock:
            self.callbacks.append(record)

    def _rebuild_index(self) -> None:
        """Hold one worker now and then, as a shared service's other duties do."""
        while not self._stop.wait(self.spec.rebuild_every * self._random.uniform(0.8, 1.2)):
            with self._lock:
                self._rebuilding = True
            self._stop.wait(self.spec.rebuild_seconds)
            with self._lock:
                self._rebuilding = False


def _error(code: str, message: str) -> Json:
    return {"error": {"code": code, "message": message}}
