"""The sandbox's HTTP vocabulary: a parsed request, a response, and helpers every route uses.

No socket I/O (`server.py` does that); pure helpers raising `ApiError` the way ADO answers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from devhost.sandbox.errors import ApiError

NOT_AUTHORIZED = ApiError(401, "TF400813: The user is not authorized to access this resource.", "UnauthorizedRequest")


@dataclass
class Request:
    method: str
    segments: list[str]
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str:
        return str(self.headers.get(name.lower()) or "")

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "The request body is not valid JSON.", "VssRequestContentException") from exc


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def ok(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(value).encode(), headers=headers or {})


def not_found() -> ApiError:
    return ApiError(404, "The requested resource was not found.", "ResourceNotFoundException")


def method(req: Request, *allowed: str) -> None:
    if req.method not in allowed:
        raise ApiError(405, f"The requested resource does not support http method '{req.method}'.", "HttpMethod")


def require_patch_document(req: Request) -> Any:
    ctype = req.header("Content-Type").split(";")[0].strip().lower()
    if ctype != "application/json-patch+json":
        raise ApiError(
            415,
            f'The request indicated a Content-Type of "{ctype}" for method type "{req.method}" which is not '
            "supported. Valid content types for this method are: application/json-patch+json.",
            "VssRequestContentTypeNotSupportedException",
        )
    return req.json()


def int_param(value: str | None, default: int, name: str) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(str(value))
    except ValueError as exc:
        raise ApiError(400, f"The value '{value}' for '{name}' is not valid.", "InvalidArgumentValueException") from exc
    if number < 0:
        raise ApiError(400, f"The value '{value}' for '{name}' is not valid.", "InvalidArgumentValueException")
    return number
