"""The Lambda-like sandboxes: a function that overruns its Timeout is stopped and its
next event gets a fresh worker; a handler that cannot be loaded fails each invocation
with Lambda's init error; SAM's implicit API serves Api events without RestApiId."""

from __future__ import annotations

import json
import time

import urllib3

from tests.local.conftest import StartCloud, records


def test_a_function_that_overruns_its_timeout_is_stopped_and_replaced(
    start_cloud: StartCloud,
) -> None:
    cloud = start_cloud("runtime.yaml")

    started = time.monotonic()
    overrun = cloud.invoke("SlowFunction", {"sleep": 10})
    took = time.monotonic() - started
    after = cloud.invoke("SlowFunction", {"n": 2})

    assert not overrun.ok
    assert overrun.error_text == "Sandbox.Timedout: Task timed out after 1.00 seconds"
    assert took < 5  # stopped after its 1 s, not after the 10 s it asked for
    assert after.ok
    first, second = records(cloud, "SlowFunction")
    assert second["pid"] != first["pid"]  # a cold start in a new sandbox
    assert "Task timed out after 1.00 seconds" in cloud.function_log("SlowFunction").read_text()
    assert cloud.errors == [("SlowFunction", overrun.error_text)]


def test_a_handler_that_cannot_load_fails_with_the_init_error(start_cloud: StartCloud) -> None:
    cloud = start_cloud("runtime.yaml")

    broken = cloud.invoke("BrokenFunction", {})

    assert not broken.ok
    assert broken.error_text == (
        "AttributeError: Handler 'no_such_handler' missing on module 'app'"
    )


def test_the_implicit_api_serves_api_events_without_a_rest_api(start_cloud: StartCloud) -> None:
    cloud = start_cloud("runtime.yaml")
    url = cloud.outputs["HelloUrl"]

    response = urllib3.PoolManager().request("DELETE", url)

    assert url.startswith("http://127.0.0.1:")
    assert url.endswith("/Prod/hello")
    assert response.status == 201
    event = json.loads(response.data)["event"]
    assert (event["resource"], event["httpMethod"]) == ("/hello", "DELETE")
