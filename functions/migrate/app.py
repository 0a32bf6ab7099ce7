"""CloudFormation custom resource: apply the schema migrations on every deploy."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from baton.deployment import handle_schema_resource
from baton.observability import logger


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    handle_schema_resource(event, context)
