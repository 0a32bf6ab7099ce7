"""Completion callback and heartbeat API, API Gateway REST payload 1.0 (steps 12-16:
the algorithm reports, the attempt leaves the running set, the app is told)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from baton.callback_api import handle_api_event
from baton.observability import logger, metrics, tracer
from baton.runtime import get_runtime


# No correlation id from the API event: each line's function_request_id names the
# invocation, and a line of a successful task is kept short.
@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_api_event(get_runtime(), event, context)
