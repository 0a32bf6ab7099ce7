"""Concurrency as Lambda has it: a function runs as many instances at once as its events
need, up to its ReservedConcurrentExecutions or the local default, each instance a
process of its own started when it is first needed; an SQS source runs several batches
at once and still redrives a failing message to the dead-letter queue."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from baton_local.emulator.cloud import LocalCloud

from tests.local.conftest import StartCloud, records, sqs_bodies
from tests.support.waiting import wait_for


def _intervals(found: list[dict[str, Any]], seconds: float) -> list[tuple[float, float]]:
    return sorted((float(r["started"]), float(r["started"]) + seconds) for r in found)


def _most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most intervals that overlap at one moment."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def _invoke_at_once(cloud: LocalCloud, function: str, event: Any, times: int) -> None:
    with ThreadPoolExecutor(max_workers=times) as pool:
        answers = list(pool.map(lambda _: cloud.invoke(function, event), range(times)))
    assert all(answer.ok for answer in answers), [a.error_text for a in answers]


def test_a_function_with_reserved_concurrency_1_never_runs_twice_at_once(
    start_cloud: StartCloud,
) -> None:
    cloud = start_cloud("concurrency.yaml", prewarm=False)

    _invoke_at_once(cloud, "SingleFunction", {"sleep": 0.3}, times=5)

    found = records(cloud, "SingleFunction")
    assert len(found) == 5
    assert _most_at_once(_intervals(found, 0.29)) == 1
    assert len({r["pid"] for r in found}) == 1
    assert cloud.lambdas.pools["SingleFunction"].peak == 1


def test_a_function_without_it_scales_out_on_demand_up_to_the_default(
    start_cloud: StartCloud,
) -> None:
    cloud = start_cloud("concurrency.yaml", prewarm=False)

    # One event at a time: one instance, started for the first event
    for _ in range(3):
        assert cloud.invoke("WideFunction", {}).ok
    pool = cloud.lambdas.pools["WideFunction"]
    assert pool.instances == 1

    # Under load: more instances, each its own process, up to the default of 4
    _invoke_at_once(cloud, "WideFunction", {"sleep": 1.5}, times=6)

    loaded = [r for r in records(cloud, "WideFunction") if "sleep" in r["event"]]
    assert pool.peak == 4
    assert pool.instances == 4
    assert len({r["pid"] for r in loaded}) == 4
    assert _most_at_once(_intervals(loaded, 1.5)) >= 2


def test_the_default_concurrency_is_a_setting(start_cloud: StartCloud) -> None:
    cloud = start_cloud(
        "concurrency.yaml",
        prewarm=False,
        default_concurrency=2,
        concurrency={"SingleFunction": 3},
    )

    _invoke_at_once(cloud, "WideFunction", {"sleep": 0.5}, times=4)

    assert cloud.lambdas.pools["WideFunction"].peak == 2
    # the template's reservation still caps what is asked for one function
    assert cloud.lambdas.concurrency("SingleFunction") == 1


def test_an_sqs_source_runs_batches_at_once_and_still_redrives_to_the_dead_letter_queue(
    start_cloud: StartCloud,
) -> None:
    cloud = start_cloud("concurrency.yaml")
    sqs = cloud.boto_session().client("sqs")
    url = cloud.outputs["BusyQueueUrl"]
    poison = json.dumps({"fail": True, "id": "poison"})
    slow = [json.dumps({"n": n, "sleep": 0.5}) for n in range(8)]

    # When slow messages and one that always fails arrive together
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(n), "MessageBody": body} for n, body in enumerate(slow)]
    )
    sqs.send_message(QueueUrl=url, MessageBody=poison)

    # Then the failing one ends in the dead-letter queue after maxReceiveCount (3)
    def in_dead_letters() -> list[str]:
        answer = sqs.receive_message(
            QueueUrl=cloud.outputs["BusyDeadLetterQueueUrl"], WaitTimeSeconds=1
        )
        return [m["Body"] for m in answer.get("Messages", [])]

    assert wait_for(in_dead_letters, timeout=30) == [poison]
    bodies = sqs_bodies(cloud, "QueueFunction")
    assert bodies.count(poison) == 3
    assert sorted(b for b in bodies if b != poison) == sorted(slow)  # each delivered once

    # And the batches kept to their size, several of them running at once
    batches = records(cloud, "QueueFunction")
    assert all(1 <= len(r["event"]["Records"]) <= 2 for r in batches)
    slow_batches = [
        r for r in batches if any("sleep" in item["body"] for item in r["event"]["Records"])
    ]
    assert _most_at_once(_intervals(slow_batches, 0.45)) >= 2
    assert cloud.lambdas.pools["QueueFunction"].peak >= 2
