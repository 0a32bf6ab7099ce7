"""Scheduled dispatch: promote, then ready tasks into free slots and their requests
to the algorithms (steps 4-10)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from baton.observability import logger, metrics, tracer
from baton.runtime import get_runtime
from baton.scheduling import promote_and_dispatch


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return promote_and_dispatch(get_runtime()).as_dict()
