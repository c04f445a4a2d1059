"""HTTP plumbing shared by the HTTP blueprints: JSON bodies in, errors out as `{"detail": ...}`.

The only module of `shared/` that knows `azure.functions`; handlers stay plain functions that
return `Reply` values or raise `BundleError`s. `Request` is what a route hands its handler: the
route parameters by name (a missing one is a programming error, not a 400), the query and the body.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import azure.functions as func

from shared import telemetry
from shared.core import validate
from shared.core.errors import BundleError, InvalidInput, TransientError, Unauthorized
from shared.core.reply import Reply

log = logging.getLogger(__name__)

MAX_JSON_BODY = 1024 * 1024


def to_response(reply: Reply) -> func.HttpResponse:
    if reply.body is None:
        return func.HttpResponse(status_code=reply.status, headers=reply.headers)
    return func.HttpResponse(
        body=json.dumps(reply.body, separators=(",", ":")),
        status_code=reply.status,
        headers=reply.headers,
        mimetype="application/json",
    )


class Request:
    """One HTTP request, as a route handler sees it."""

    def __init__(self, req: func.HttpRequest) -> None:
        self._req = req

    def __getitem__(self, name: str) -> str:
        """The route parameter `name` (declared by the route, so always present)."""
        return str(self._req.route_params[name])

    @property
    def query(self) -> dict[str, str]:
        return dict(self._req.params)


    def json(self) -> dict[str, Any]:
        """The body as one JSON object: 415 unless it is sent as `application/json`."""
        body = self._req.get_body() or b""
        if body and not validate.is_json_type(self._req.headers.get("content-type")):
            raise InvalidInput("Content-Type must be application/json", status=415)
        return json_object(body)

    def json_or_empty(self) -> dict[str, Any]:
        """Like `json`, but no body at all is `{}` (for a DELETE whose body is optional)."""
        return self.json() if self._req.get_body() else {}


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
        value = validate.strict_json(body.decode("utf-8")) if body else None
    except validate.DuplicateKey as error:
        raise InvalidInput(f"Request body is not valid: {error}") from error
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise InvalidInput("Request body is not valid JSON") from error
    if not isinstance(value, dict):
        raise InvalidInput("Request body must be a JSON object")
    return value



def check_bearer(headers: Mapping[str, str], expected: str | None) -> None:
    """Fail closed: no configured key, no header or a wrong key are all 401 (constant-time compare)."""
    supplied = headers.get("authorization", "") or ""
    scheme, _, token = supplied.partition(" ")
    ok = bool(expected) and scheme.lower() == "bearer" and bool(token)
    # Compare even when the shape is wrong, so timing does not tell which check failed.
    same = hmac.compare_digest(token.strip().encode(), (expected or "\0").encode())
    if not (ok and same):
        raise Unauthorized("Missing or invalid bearer token")
