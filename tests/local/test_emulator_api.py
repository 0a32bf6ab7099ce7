"""The emulated REST API on a small template of its own: payload 1.0 proxy events routed
by the template's paths (OpenAPI body with a stage-variable integration, and Api events),
answers mapped back to HTTP, and API Gateway's own refusals as JSON."""

from __future__ import annotations

import json

import pytest
import urllib3
from baton_local.emulator.cloud import LocalCloud

from tests.local.conftest import StartCloud

HTTP = urllib3.PoolManager()


@pytest.fixture
def api(start_cloud: StartCloud) -> LocalCloud:
    return start_cloud("api.yaml")


def test_a_request_becomes_a_proxy_event_and_the_answer_a_response(api: LocalCloud) -> None:
    base = api.outputs["ApiUrl"]

    response = HTTP.request(
        "POST",
        f"{base}/items/it%20em-7/notes?tag=a&tag=b&one=1",
        body=b'{"note": "hi"}',
        headers={"Content-Type": "application/json", "X-Trace": "t-1"},
    )

    assert response.status == 201
    assert response.headers["X-Echo"] == "yes"
    assert response.headers.getlist("Set-Cookie") == ["a=1", "b=2"]
    answer = json.loads(response.data)
    event = answer["event"]
    assert answer["function"].startswith("local-ItemsFunction-")
    assert event["resource"] == "/items/{item_id}/notes"
    assert event["path"] == "/items/it em-7/notes"
    assert event["httpMethod"] == "POST"
    assert event["pathParameters"] == {"item_id": "it em-7"}
    assert event["queryStringParameters"] == {"tag": "b", "one": "1"}
    assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"], "one": ["1"]}
    assert event["headers"]["X-Trace"] == "t-1"
    assert event["multiValueHeaders"]["X-Trace"] == ["t-1"]
    assert event["body"] == '{"note": "hi"}'
    assert event["isBase64Encoded"] is False
    assert event["stageVariables"] == {"itemsFunction": answer["function"]}
    context = event["requestContext"]
    assert context["resourcePath"] == "/items/{item_id}/notes"
    assert context["httpMethod"] == "POST"
    assert context["path"] == "/test/items/it em-7/notes"
    assert context["stage"] == "test"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["requestId"] == response.headers["x-amzn-RequestId"]
    assert {"accountId", "apiId", "requestTimeEpoch", "protocol", "domainName"} <= set(context)


def test_routes_follow_the_template(api: LocalCloud) -> None:
    base = api.outputs["ApiUrl"]

    # Any method of the templated route; the more specific POST route wins for POST
    other = json.loads(HTTP.request("GET", f"{base}/items/9/notes").data)["event"]
    assert other["resource"] == "/items/{item_id}/{action}"
    assert other["pathParameters"] == {"item_id": "9", "action": "notes"}
    assert other["body"] is None
    # An Api event of another function, greedy path parameter
    health = json.loads(HTTP.request("GET", f"{base}/health/deep/check").data)
    assert health["function"].startswith("local-HealthFunction-")
    assert health["event"]["pathParameters"] == {"proxy": "deep/check"}
    # Binary answers and requests are base64 on the function's side
    binary = HTTP.request(
        "PUT",
        f"{base}/items/1/binary",
        body=b"\x00\xff",
        headers={"Content-Type": "application/octet-stream"},
    )
    assert binary.status == 200
    assert binary.data == b"\x00\x01\xfe\xff"


def test_unknown_paths_and_methods_get_404_json_and_function_errors_502(api: LocalCloud) -> None:
    base = api.outputs["ApiUrl"]

    unknown_path = HTTP.request("POST", f"{base}/nothing/here")
    unknown_method = HTTP.request("GET", f"{base}/health")
    wrong_stage = HTTP.request("GET", base.replace("/test", "/prod") + "/items/1/notes")
    failing = HTTP.request("GET", f"{base}/items/1/boom")

    for response in (unknown_path, unknown_method, wrong_stage):
        assert response.status == 404
        assert response.headers["Content-Type"] == "application/json"
        error = json.loads(response.data)["error"]  # the template's DEFAULT_4XX shape
        assert error["code"] == "RESOURCE_NOT_FOUND"
    assert json.loads(unknown_path.data)["error"]["message"] == "No route for POST /nothing/here"
    assert failing.status == 502
    assert json.loads(failing.data) == {"message": "Internal server error"}
    assert ("ItemsFunction", "ValueError: boom") in api.errors


def test_the_public_api_url_becomes_the_local_one(api: LocalCloud) -> None:
    local = api.urls["Api"]

    assert local.startswith("http://127.0.0.1:")
    assert local.endswith("/test")
    assert api.outputs["ApiUrl"] == local
    answer = json.loads(HTTP.request("GET", f"{local}/items/1/x").data)
    assert answer["callback_base_url"] == local
