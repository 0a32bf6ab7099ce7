"""A dispatch round's attempts are started together and their acceptance recorded
together (``scheduling.dispatch_round``), yet one attempt's failure stays its own: the
others are sent, and their answers recorded, before the round reports it."""

from __future__ import annotations

from typing import Any

import pytest
from baton.records import ExecutionStatus
from baton.scheduling import promote_and_dispatch

from tests.support.algorithm_service import AlgorithmService
from tests.support.database import stored_execution
from tests.support.events import sqs_event, sqs_record, task_body
from tests.support.handlers import Handlers
from tests.support.runtime import RuntimeFactory, registry_for
from tests.support.waiting import wait_for


def test_one_attempt_failing_before_its_send_leaves_the_rounds_others_recorded(
    make_runtime: RuntimeFactory,
    handlers: Handlers,
    algorithm_service: AlgorithmService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given three tasks that wait for the next round (no fast path), and S3 unable to
    # presign the upload of one of them
    runtime = make_runtime(algorithms=registry_for(algorithm_service, ocr=8), fast_path="false")
    keys = ["first", "broken", "third"]
    handlers.invoke(
        "intake",
        sqs_event(
            *(
                sqs_record(task_body(idempotency_key=key, input={"test": {"outcome": "silent"}}))
                for key in keys
            )
        ),
    )
    tasks = {key: runtime.repository.find_task("contracts", key) for key in keys}
    broken_id = tasks["broken"].id  # type: ignore[union-attr]
    presign = runtime.results.upload_url

    def upload_url(key: str, *args: Any) -> Any:
        if broken_id in key:
            raise RuntimeError("S3 is unreachable")
        return presign(key, *args)

    monkeypatch.setattr(runtime.results, "upload_url", upload_url)

    # When one round dispatches all three
    with pytest.raises(RuntimeError, match="S3 is unreachable"):
        promote_and_dispatch(runtime, ["ocr"])

    # Then the two others went out and their acceptance is recorded; the broken one was
    # never sent and waits as it was (its deadline, or the sweep, recovers it)
    wait_for(lambda: len(algorithm_service.requests) == 2)
    sent = {request["task_id"] for request in algorithm_service.requests}
    assert sent == {tasks["first"].id, tasks["third"].id}  # type: ignore[union-attr]
    for task_id in sent:
        assert stored_execution(runtime.repository, task_id, 1).status == ExecutionStatus.RUNNING
    assert stored_execution(runtime.repository, broken_id, 1).status == ExecutionStatus.DISPATCHING
