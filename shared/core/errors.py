"""The bundle's one exception hierarchy.

Every error the bundle raises on purpose is a `BundleError`, and each class carries the HTTP status
the management API and the webhook answer with, so adapters map errors in one line.

Errors are classified once, where they are made: a `TransientError` is something a retry can fix
(queue triggers let the host retry it, HTTP answers 503 with `Retry-After`); every other
`BundleError` is permanent. Azure DevOps failures follow the same split: `AdoError` and its
subclasses are answers a retry will not change, `AdoUnavailable` and its subclasses are transient.
No class is both, so `except AdoError` never swallows a throttled or failed call.
Messages never contain tokens or secrets.
"""

from __future__ import annotations

import math

MIN_RETRY_AFTER = 1.0
MAX_RETRY_AFTER = 3600.0


def clamp_retry_after(seconds: float | None) -> float | None:
    """A retry hint bounded to 1 s - 1 h (None stays None; NaN and infinities become the bounds)."""
    if seconds is None:
        return None
    if math.isnan(seconds):
        return MAX_RETRY_AFTER
    return min(MAX_RETRY_AFTER, max(MIN_RETRY_AFTER, seconds))


class BundleError(Exception):
    """Base of every error the bundle raises on purpose."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(BundleError):
    """A required setting is missing or malformed; the message names the setting."""

    status = 500


class InvalidInput(BundleError):
    """A request body, id or message failed validation; `field` names the culprit."""

    status = 400

    def __init__(self, message: str, *, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


class Unauthorized(BundleError):
    """Missing or wrong credentials on an inbound call."""

    status = 401


class NotFound(BundleError):
    """A tracker or integration record does not exist."""

    status = 404


class Conflict(BundleError):
    """A write lost against a concurrent one more often than the retry budget allows."""

    status = 409


class Unprocessable(BundleError):
    """Well-formed input the service cannot act on (e.g. an ADO rule violation)."""

    status = 422

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class IdentityInvalid(BundleError):
    """The integration's identity cannot be used (missing, or its refresh was refused)."""

    status = 502


class TransientError(BundleError):
    """A failure a later retry can fix. `retry_after` is a hint in seconds (1 s - 1 h), when known."""

    status = 503

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = clamp_retry_after(retry_after)


class StorageUnavailable(TransientError):
    """Table or queue storage did not answer (or answered 5xx)."""


# --- Azure DevOps -------------------------------------------------------------------------------


class AdoError(BundleError):
    """Azure DevOps answered with an error a retry will not change.

    `http_status` is ADO's own status code; `type_key` ADO's error type (e.g.
    `RuleValidationException`) when its answer carried one.
    """

    status = 502

    def __init__(self, message: str, *, http_status: int | None = None, type_key: str | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.type_key = type_key


class AdoAuthError(AdoError):
    """401/403, a 203 sign-in page, or HTML instead of JSON: our credential is not accepted."""


class AdoNotFound(AdoError):
    """404 from Azure DevOps."""


class AdoBadRequest(AdoError):
    """400 from Azure DevOps (e.g. a TF401320 required-field rule violation)."""


class AdoRevisionMismatch(AdoError):
    """412: a conditional work item update met a newer revision (its `test /rev` failed)."""

    status = 409


class AdoUnavailable(TransientError):
    """Azure DevOps failed in a way a retry can fix; `http_status` is its status code, when it answered."""

    def __init__(self, message: str, *, http_status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.http_status = http_status


class AdoThrottled(AdoUnavailable):
    """429 (or 503 with Retry-After): ADO asks us to slow down."""


class AdoServerError(AdoUnavailable):
    """5xx from Azure DevOps."""


class AdoTimeout(AdoUnavailable):
    """Connect or read timeout, or a dropped connection."""
