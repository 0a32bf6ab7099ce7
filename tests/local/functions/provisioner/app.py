"""A test custom resource: answers CloudFormation at the ResponseURL, SUCCESS with some
Data, or FAILED when its properties say ``Outcome: FAILED``."""

import json
import urllib.request
from typing import Any


def handler(event: Any, context: Any) -> Any:
    properties = event["ResourceProperties"]
    print("RECORD " + json.dumps({"event": event}), flush=True)
    failed = properties.get("Outcome") == "FAILED"
    answer = {
        "Status": "FAILED" if failed else "SUCCESS",
        "Reason": "asked to fail" if failed else "",
        "PhysicalResourceId": f"provisioned-{properties['Name']}",
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "Data": {"Greeting": f"hello {properties['Name']}", "Count": properties["Count"]},
    }
    body = json.dumps(answer).encode()
    request = urllib.request.Request(
        event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": ""}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
