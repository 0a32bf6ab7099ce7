"""The README's "Client SDK" examples run as they stand, so they cannot rot: the
algorithm service's code serves the algorithm (its ``Handler`` on loopback, its secret
the one ``baton algorithm secret`` prints), and the business app's code submits, waits
for and reads its tasks, through the real handlers, Redis, MariaDB and moto."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
from baton import cli
from baton.signing import SigningKeyring
from baton.tokens import TokenKeyring

from tests.support.aws import AwsResources
from tests.support.handlers import Handlers
from tests.support.intake_queue import IntakeQueue
from tests.support.runtime import TOKEN_SECRET, RuntimeFactory
from tests.support.template import ROOT


def client_sdk_blocks() -> dict[str, str]:
    """The python code blocks of the README's "Client SDK" section, by what they are."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Client SDK\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    by_role = {
        ("app" if "BatonClient(" in block else "service"): block
        for block in blocks
        if "BatonClient(" in block or "Dispatch.from_request" in block
    }
    assert len(blocks) == len(by_role) == 2, "the section has one example of each"
    return by_role


def run(code: str, name: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": name}
    # Executing the documentation is the point: it must keep working as written.
    exec(compile(code, f"README.md ({name})", "exec"), namespace)
    return namespace


@pytest.fixture
def intake(handlers: Handlers, aws: AwsResources) -> Iterator[IntakeQueue]:
    queue = IntakeQueue(handlers, aws.session)
    yield queue
    queue.stop()


def test_the_client_sdk_examples_of_the_readme_work(
    make_runtime: RuntimeFactory,
    intake: IntakeQueue,
    aws: AwsResources,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocks = client_sdk_blocks()

    # Given the example service, holding the secret of this deployment's ocr
    secret = SigningKeyring.derived_from(TokenKeyring.from_secret(TOKEN_SECRET)).secrets_of("ocr")[
        0
    ]
    monkeypatch.setenv("OCR_SIGNING_SECRET", secret.secret)
    service = run(blocks["service"], "readme_service")  # not __main__: no port 8080
    server = ThreadingHTTPServer(("127.0.0.1", 0), service["Handler"])
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host, port = server.server_address[:2]
        make_runtime(
            algorithms={"ocr": {"endpoint": f"http://{host!s}:{port}/ocr", "max_concurrency": 2}}
        )
        # the secret it was given is the one the operator's command prints
        assert cli.main(["algorithm", "secret", "ocr"]) == 0
        assert capsys.readouterr().out.splitlines() == [secret.secret]
        intake.start()

        # When the example business app runs against this stack
        monkeypatch.setenv("BATON_INTAKE_QUEUE_URL", intake.url)
        monkeypatch.setenv("CONTRACTS_QUEUE_URL", aws.subscriber_queue_url)
        app = run(blocks["app"], "readme_app")
    finally:
        server.shutdown()
        server.server_close()

    # Then every document was sent, processed, and its result read
    assert app["batch"].ok
    assert app["waiting"] == set()
    printed = capsys.readouterr().out.splitlines()
    results = [line for line in printed if " -> " in line]
    assert sorted(results) == sorted(
        f"{uri} -> {{'words': {len(uri.split('/'))}}}" for uri in app["documents"]
    )
    assert intake.failures == []
