"""Scheduled reconcile: rebuild and repair Redis state from the database (the safety
net behind steps 5 and 9)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from baton.observability import logger, metrics, tracer
from baton.reconcile import reconcile_all
from baton.runtime import get_runtime


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return reconcile_all(get_runtime()).as_dict()
