"""Scheduled sweep: overdue attempts time out, lost leases come back, the outbox is
emptied (step 9; ending an overdue attempt: 13-16)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from baton.observability import logger, metrics, tracer
from baton.runtime import get_runtime
from baton.sweep import sweep_overdue_attempts


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return sweep_overdue_attempts(get_runtime()).as_dict()
