"""What can go wrong when talking to Baton, as exceptions that say so.

Each error of an HTTP answer carries the answer's ``status`` and Baton's error
``code`` (from ``{"error": {"code", "message"}}``), so that a caller branches on
the type, never on the text.
"""

from __future__ import annotations


class BatonError(Exception):
    """Base of every error this SDK raises."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class InvalidSignature(BatonError):
    """A dispatch or cancel request that Baton did not sign with this secret, that was
    altered, or whose timestamp is outside the tolerance (too old: a replay)."""


class AttemptEnded(BatonError):
    """Stop: this attempt ended (timed out, cancelled, retried, or its outcome is
    already recorded). Baton answered 409; nothing this attempt reports counts now."""


class ResultMissing(BatonError):
    """A "succeeded" callback, but Baton found no object at the result key: upload the
    result and call back again. The attempt keeps running."""


class Unauthorized(BatonError):
    """401: no token, or not the token of this task and attempt, or expired."""


class Forbidden(BatonError):
    """403: the caller is no principal of any app on the status API."""


class TaskNotFound(BatonError):
    """404: no such task (or one of another app)."""


class InvalidRequest(BatonError):
    """413 or 422: the body is too large or does not match the contract."""


class Unavailable(BatonError):
    """Baton kept answering 5xx, or could not be reached, until the retries ran out.

    ``status`` is the last answer's (a 5xx), or None when the last try got no answer."""


class ApiError(BatonError):
    """Any other answer that is not a success."""


class ResultIntegrityError(BatonError):
    """The downloaded result does not match the checksum in its notification."""
