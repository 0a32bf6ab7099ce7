"""SQS intake: store each task message once; bad records fail alone (steps 1-3)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from baton.intake import ingest_task_batch
from baton.observability import logger, metrics, tracer
from baton.runtime import get_runtime


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return ingest_task_batch(get_runtime(), event, context)
