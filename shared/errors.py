"""The bundle's one exception hierarchy.

Every error the core raises is a `BundleError`. Each class carries the HTTP status the management
API and the webhook answer with, so adapters map errors in one line. `TransientError` marks what a
retry can fix (queue triggers re-raise it, HTTP answers 503); everything else is permanent.
Messages never contain tokens or secrets.
"""

from __future__ import annotations


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


class TransientError(BundleError):
    """A failure a later retry can fix. `retry_after` is a hint in seconds, when known."""

    status = 503

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StorageUnavailable(TransientError):
    """Table or queue storage did not answer (or answered 5xx)."""


class AdoError(BundleError):
    """Azure DevOps answered with an error; `http_status` is ADO's own status code."""

    status = 502

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class AdoAuthError(AdoError):
    """401/403, a 203 sign-in page, or HTML instead of JSON: our credential is not accepted."""


class AdoNotFound(AdoError):
    """404 from Azure DevOps."""


class AdoBadRequest(AdoError):
    """400 from Azure DevOps (e.g. a TF401320 required-field rule violation)."""


class AdoTransient(AdoError, TransientError):
    """A failure of Azure DevOps that a retry can fix."""

    status = 503

    def __init__(
        self, message: str, *, http_status: int | None = None, retry_after: float | None = None
    ) -> None:
        AdoError.__init__(self, message, http_status=http_status)
        self.retry_after = retry_after


class AdoThrottled(AdoTransient):
    """429 (or 503 with Retry-After): ADO asks us to slow down."""


class AdoServerError(AdoTransient):
    """5xx from Azure DevOps."""


class AdoTimeout(AdoTransient):
    """Connect or read timeout, or a dropped connection."""


class IdentityInvalid(BundleError):
    """The integration's identity cannot be used (missing, or its refresh was refused)."""

    status = 502
