"""Domain errors. Each callback-facing error carries its HTTP status and error code,
so the API maps them to answers in one place."""

from __future__ import annotations


class BatonError(Exception):
    """Base of every error the package raises on purpose."""


class SettingsError(BatonError):
    """A missing or invalid setting; the message names the variable."""


class InvalidTaskMessage(BatonError):
    """A task message that cannot be accepted; the message says what and where."""


class ApiError(BatonError):
    """An error answered to a caller of the callback or status API."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    """A status API caller who is no app's principal and no operator (or has no identity)."""

    status = 403
    code = "forbidden"


class TaskNotFound(ApiError):
    status = 404
    code = "task_not_found"


class UnknownAlgorithm(ApiError):
    """An operator named an algorithm that is not in the registry."""

    status = 404
    code = "algorithm_not_found"


class StaleAttempt(ApiError):
    """The callback names an attempt that is not the task's current one."""

    status = 409
    code = "stale_attempt"


class OutcomeConflict(ApiError):
    """A different outcome is already recorded for this attempt."""

    status = 409
    code = "outcome_conflict"


class RetryRefused(ApiError):
    """An operator asked to retry a task that cannot be retried now (not final, its
    notification not out yet, its algorithm gone, or retried by someone else first)."""

    status = 409
    code = "retry_refused"


class ResultMissing(ApiError):
    """A 'succeeded' callback whose result object is not in S3."""

    status = 409
    code = "result_missing"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class InvalidRequest(ApiError):
    status = 422
    code = "invalid_request"


class ServiceUnavailable(ApiError):
    """A dependency (database, Redis) is briefly unreachable: try again."""

    status = 503
    code = "unavailable"


class RedisStateLost(BatonError):
    """Redis has no state for an algorithm (failover, flush): reconcile before admitting."""

    def __init__(self, algorithm: str) -> None:
        super().__init__(f"Redis has no state for algorithm {algorithm!r}; reconcile first")
        self.algorithm = algorithm
