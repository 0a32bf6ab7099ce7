"""Dispatch functions in processes of their own, as many Lambda instances dispatch at
once in production: each builds its runtime from the settings it is given and runs
promote-and-dispatch in a loop until its time is up."""

from __future__ import annotations

import os
import time
from typing import Any


def dispatch_for(
    environ: dict[str, str], algorithm: str, seconds: float, ready: Any, go: Any
) -> None:
    """Entry point of a spawned process: ``ready`` is set once the runtime is built
    and warm, then it waits for ``go`` and dispatches for ``seconds``."""
    os.environ.update(
        {
            "POWERTOOLS_TRACE_DISABLED": "1",
            "POWERTOOLS_METRICS_DISABLED": "1",
            "POWERTOOLS_LOG_LEVEL": "ERROR",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
    )
    # Baton and Powertools read the environment above when they are imported.
    from baton.runtime import build_runtime
    from baton.scheduling import promote_and_dispatch
    from baton.settings import load_settings

    runtime = build_runtime(load_settings(environ))
    # Warm, as an instance that has dispatched before: the S3 client is made on the
    # first presign (no request is sent), not inside the measured seconds.
    runtime.results.upload_url("warm-up", runtime.clock(), 60)
    ready.set()
    go.wait()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        promote_and_dispatch(runtime, [algorithm])
        # A pause between rounds, as a function between invocations: eight processes
        # spinning on two cores would delay the service, not test the limit.
        time.sleep(0.2)


def record_arrivals(ports: Any, stop: Any, arrivals: Any) -> None:
    """Entry point of a spawned process: an algorithm endpoint that accepts every
    dispatch (202) and records when each arrived (the system's monotonic clock, which
    every process shares), away from the test process's own threads. Puts its port on
    ``ports`` once it listens, and the arrival times on ``arrivals`` once ``stop`` is set."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[float] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            moment = time.monotonic()
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                seen.append(moment)
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ports.put(server.server_address[1])
    stop.wait()
    server.shutdown()
    with lock:
        arrivals.put(list(seen))
