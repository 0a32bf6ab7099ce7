"""Test helpers: a scripted HTTP server on loopback, a SigV4 check made with botocore,
and factories of contract documents."""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from baton_sdk.contracts import DispatchRequest


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


DROP = Reply(-1)
"""Close the connection without answering."""

Handler = Callable[[Seen], Reply]


@dataclass
class Loopback:
    """An HTTP server on 127.0.0.1 that answers each request with ``handler``."""

    handler: Handler
    seen: list[Seen] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Loopback:
        loopback = self

        class RequestHandler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                request = Seen(
                    self.command,
                    self.path,
                    {name.lower(): value for name, value in self.headers.items()},
                    self.rfile.read(length),
                )
                loopback.seen.append(request)
                reply = loopback.handler(request)
                if reply is DROP:
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            # The names http.server calls:
            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def do_PUT(self) -> None:
                self._serve()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@contextmanager
def loopback(handler: Handler) -> Iterator[Loopback]:
    server = Loopback(handler).start()
    try:
        yield server
    finally:
        server.stop()


def sigv4_valid(request: Seen, credentials: Credentials, region: str, service: str) -> bool:
    """Whether ``request`` carries a SigV4 signature of these credentials, recomputed by
    botocore from what arrived on the wire (only the headers it says it signed)."""
    authorization = request.headers.get("authorization", "")
    algorithm, _, rest = authorization.partition(" ")
    if algorithm != "AWS4-HMAC-SHA256":
        return False
    fields = dict(part.strip().split("=", 1) for part in rest.split(","))
    scope = fields["Credential"].split("/")
    if scope[0] != credentials.access_key or scope[2:4] != [region, service]:
        return False
    signed = fields["SignedHeaders"].split(";")
    wire = AWSRequest(
        method=request.method,
        url=f"http://{request.headers['host']}{request.path}",
        data=request.body,
        headers={name: request.headers[name] for name in signed if name in request.headers},
    )
    wire.context["timestamp"] = request.headers["x-amz-date"]
    auth = SigV4Auth(credentials, service, region)
    expected = auth.signature(auth.string_to_sign(wire, auth.canonical_request(wire)), wire)
    return hmac.compare_digest(expected, fields["Signature"])


def dispatch_request(
    callback_url: str = "https://api.example.com/prod/tasks/t-1/callback",
    *,
    upload_url: str = "https://results.example.com/put",
    upload_expires_in: timedelta = timedelta(hours=1),
    task_id: str = "t-1",
    attempt: int = 1,
) -> DispatchRequest:
    now = datetime.now(UTC)
    return DispatchRequest.model_validate(
        {
            "task_id": task_id,
            "attempt": attempt,
            "algorithm": "ocr",
            "input": {"document": "s3://docs/contract-17.pdf", "pages": 3},
            "cost": 2,
            "deadline": (now + timedelta(minutes=15)).isoformat(),
            "result": {
                "bucket": "baton-results",
                "key": f"results/ocr/{task_id}/{attempt}/result",
                "upload_url": upload_url,
                "expires_at": (now + upload_expires_in).isoformat(),
            },
            "callback": {"url": callback_url, "token": "bt1.k1.cGF5bG9hZA.bWFj"},
        }
    )
