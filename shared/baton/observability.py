"""The one Logger, Tracer and Metrics of the package, imported everywhere else."""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger(service="baton")
tracer = Tracer(service="baton")
metrics = Metrics(namespace="Baton", service="baton")
