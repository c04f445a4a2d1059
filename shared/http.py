"""HTTP plumbing shared by the HTTP blueprints: JSON bodies in, errors out as `{"detail": ...}`.

The only module of `shared/` that knows `azure.functions`; handlers stay plain functions that
return `Reply` values or raise `BundleError`s.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import azure.functions as func

from shared import telemetry
from shared.core.errors import BundleError, InvalidInput, TransientError, Unauthorized

log = logging.getLogger(__name__)

MAX_JSON_BODY = 1024 * 1024


@dataclass
class Reply:
    """A plain HTTP answer: status, JSON-able body (None for an empty body), extra headers."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def iso_time(timestamp: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC (`2026-11-24T08:00:00Z`), the form every JSON timestamp takes."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def to_response(reply: Reply) -> func.HttpResponse:
    if reply.body is None:
        return func.HttpResponse(status_code=reply.status, headers=reply.headers)
    return func.HttpResponse(
        body=json.dumps(reply.body, separators=(",", ":")),
        status_code=reply.status,
        headers=reply.headers,
        mimetype="application/json",
    )


def error_reply(error: BundleError) -> Reply:
    headers: dict[str, str] = {}
    if isinstance(error, TransientError) and error.retry_after:
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    return Reply(status=error.status, body={"detail": error.message}, headers=headers)


def respond(handler: Callable[[], Reply], *, event: str, invocation_id: str | None = None) -> func.HttpResponse:
    """Run a handler; map bundle errors to their status and anything else to a bare 500."""
    with telemetry.invocation(invocation_id):
        return _respond(handler, event)


def _respond(handler: Callable[[], Reply], event: str) -> func.HttpResponse:
    try:
        return to_response(handler())
    except BundleError as error:
        level = logging.WARNING if error.status >= 500 else logging.INFO
        log.log(level, "%s.failed", event, extra={"error": type(error).__name__, "status": error.status})
        return to_response(error_reply(error))
    except Exception:
        log.exception("%s.crashed", event)
        return to_response(Reply(status=500, body={"detail": "Internal error"}))


def json_object(body: bytes, *, limit: int = MAX_JSON_BODY) -> dict[str, Any]:
    """Parse a request body that must be one JSON object."""
    if len(body) > limit:
        raise InvalidInput(f"Request body is larger than {limit} bytes", status=413)
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_no_constants) if body else None
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise InvalidInput("Request body is not valid JSON") from error
    if not isinstance(value, dict):
        raise InvalidInput("Request body must be a JSON object")
    return value


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def check_bearer(headers: Mapping[str, str], expected: str | None) -> None:
    """Fail closed: no configured key, no header or a wrong key are all 401 (constant-time compare)."""
    supplied = headers.get("authorization", "") or ""
    scheme, _, token = supplied.partition(" ")
    ok = bool(expected) and scheme.lower() == "bearer" and bool(token)
    # Compare even when the shape is wrong, so timing does not tell which check failed.
    same = hmac.compare_digest(token.strip().encode(), (expected or "\0").encode())
    if not (ok and same):
        raise Unauthorized("Missing or invalid bearer token")
