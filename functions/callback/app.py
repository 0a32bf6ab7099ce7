"""Completion callback and heartbeat API, and the task status API, from API Gateway:
a REST API (payload 1.0) or an HTTP API (payload 2.0), as the template's ApiKind
chose (steps 12-16: the algorithm reports, the attempt leaves the running set, the
app is told)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from baton.callback_api import handle_api_event
from baton.observability import logger, metrics, tracer
from baton.runtime import get_runtime


# No correlation id on every line: the API's access log names each request's Lambda
# request id (lambdaRequestId), which every line carries as function_request_id.
@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_api_event(get_runtime(), event, context)
