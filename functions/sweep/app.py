"""Scheduled sweep: overdue attempts time out, lost leases come back (step 9)."""

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from baton.observability import logger, metrics, tracer
from baton.runtime import get_runtime
from baton.sweep import sweep_overdue_attempts


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = asdict(sweep_overdue_attempts(get_runtime()))
    report["algorithms_freed"] = sorted(report["algorithms_freed"])
    return report
