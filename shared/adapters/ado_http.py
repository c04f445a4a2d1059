"""The HTTP layer of Azure DevOps calls: the `Auth` protocol and the one mapping of answers to errors.

`decode_response` turns every HTTP answer, and `transport_error` every request that got none, into
a value or a `shared.core.errors` exception, classified there once: `AdoError` subclasses for
answers a retry will not change, `AdoUnavailable` subclasses for throttling, 5xx and timeouts.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from shared.core.errors import (
    AdoAuthError,
    AdoBadRequest,
    AdoError,
    AdoNotFound,
    AdoRevisionMismatch,
    AdoServerError,
    AdoThrottled,
    AdoTimeout,
    AdoUnavailable,
)

TIMEOUT = (5.0, 30.0)  # (connect, read) seconds
RETRY_STATUSES = frozenset({429, 502, 503, 504})


class Auth(Protocol):
    """Supplies the Authorization header of ADO requests."""

    def header(self) -> str:
        """The Authorization header value, refreshing the credential first when needed."""
        ...

    def on_unauthorized(self) -> bool:
        """React to a 401; True when a new credential is ready and the call may be retried."""
        ...


class NoAuth:
    """Sends no Authorization header (for lookups made without a credential)."""

    def header(self) -> str:
        return ""

    def on_unauthorized(self) -> bool:
        return False


def decode_response(resp: requests.Response, *, now: Callable[[], float] = time.time) -> Any:
    """The JSON body of a successful answer, or the `AdoError` that the answer means.

    Raises:
        AdoAuthError: 401/403, a 203 sign-in page, or HTML where JSON was expected.
        AdoNotFound: 404.
        AdoBadRequest: 400 (ADO's message and type key kept).
        AdoThrottled: 429, or 503 with Retry-After.
        AdoServerError: other 5xx, or a body that is not JSON.
        AdoError: any other non-2xx status.
    """
    status = resp.status_code
    where = f"{resp.request.method if resp.request else ''} {urlsplit(resp.url).path}".strip()
    if status >= 400:
        detail, type_key = _ado_message(resp)
        suffix = f": {detail}" if detail else ""
        if status in (401, 403):
            raise AdoAuthError(
                f"Azure DevOps refused our credential (HTTP {status}) for {where}{suffix}",
                http_status=status, type_key=type_key,
            )
        if status == 404:
            raise AdoNotFound(f"Azure DevOps found nothing at {where} (HTTP 404){suffix}", http_status=404,
                              type_key=type_key)
        if status == 400:
            raise AdoBadRequest(f"Azure DevOps rejected {where} (HTTP 400){suffix}", http_status=400,
                                type_key=type_key)
        if status == 412:
            raise AdoRevisionMismatch(f"Azure DevOps refused {where}: the work item changed (HTTP 412){suffix}",
                                      http_status=412, type_key=type_key)
        retry_after = parse_retry_after(resp.headers.get("Retry-After"), now=now)
        if status == 429 or (status == 503 and retry_after is not None):
            raise AdoThrottled(
                f"Azure DevOps throttled {where} (HTTP {status}){suffix}",
                http_status=status,
                retry_after=retry_after,
            )
        if status >= 500:
            raise AdoServerError(f"Azure DevOps failed {where} (HTTP {status}){suffix}", http_status=status)
        raise AdoError(f"Azure DevOps answered HTTP {status} for {where}{suffix}", http_status=status,
                       type_key=type_key)
    if status == 203:
        # Without a usable credential ADO may answer 203 with a sign-in page instead of 401.
        raise AdoAuthError(
            f"Azure DevOps answered {where} with a sign-in page (HTTP 203): credential not accepted",
            http_status=203,
        )
    if status == 204 or not resp.content:
        return {}
    if _looks_like_html(resp):
        raise AdoAuthError(
            f"Azure DevOps answered {where} with HTML instead of JSON (HTTP {status}): credential not accepted",
            http_status=status,
        )
    try:
        return resp.json()
    except ValueError:
        raise AdoServerError(
            f"Azure DevOps answered {where} with a body that is not JSON (HTTP {status})",
            http_status=status,
        ) from None


def transport_error(exc: requests.RequestException, where: str) -> AdoError | AdoUnavailable:
    """The `AdoError` for a request that got no HTTP answer."""
    kind = type(exc).__name__
    if isinstance(exc, requests.exceptions.SSLError):
        # A certificate problem is configuration, not something a retry fixes.
        return AdoError(f"TLS verification failed for {where} ({kind})")
    if isinstance(exc, requests.Timeout | requests.ConnectionError):
        return AdoTimeout(f"Azure DevOps did not answer {where} ({kind})")
    return AdoError(f"Request {where} failed ({kind})")


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


def _ado_message(resp: requests.Response) -> tuple[str, str | None]:
    """ADO's own `message` (with its `typeKey`) and the `typeKey`, when the error body is JSON."""
    try:
        body = resp.json()
    except ValueError:
        return "", None
    if not isinstance(body, dict):
        return "", None
    message = str(body.get("message") or "")[:1000]
    type_key = body.get("typeKey")
    type_key = type_key[:200] if isinstance(type_key, str) and type_key else None
    if message and type_key:
        return f"{message} [{type_key}]", type_key
    return message, type_key


def _looks_like_html(resp: requests.Response) -> bool:
    content_type = resp.headers.get("Content-Type", "").lower()
    return "text/html" in content_type or resp.content.lstrip()[:1] == b"<"


def retryable(err: AdoError | AdoUnavailable) -> bool:
    return isinstance(err, AdoThrottled | AdoTimeout) or (
        isinstance(err, AdoServerError) and err.http_status in RETRY_STATUSES
    )
