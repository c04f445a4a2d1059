"""The OpenAPI 3.1 document of the bundle's HTTP routes, built from `shared.openapi.routes`.

Served at `GET /api/openapi.json`; the schemathesis tests load it to fuzz the running bundle.
Pure data: no I/O.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from shared.openapi.routes import OPERATIONS, Op
from shared.openapi.schemas import ID, SCHEMAS, Schema, ref

VERSION = "0.1.0"
_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
REASONS = {
    200: "OK", 400: "Bad request: an id, query or body failed validation", 401: "Missing or wrong credential",
    404: "Not found", 409: "A concurrent change won too often; retry", 413: "Body too large",
    415: "Body is not application/json", 422: "A field's value cannot be used (the detail names it)",
    502: "Azure DevOps refused the call (the detail says why)",
    503: "Storage or Azure DevOps unavailable; retry after Retry-After",
}
SECURITY = {
    "manageKey": {"type": "http", "scheme": "bearer", "description": "MANAGE_API_KEY"},
    "serviceHook": {"type": "apiKey", "in": "header", "name": "shared-secret",
                    "description": "The service hook's secret (also accepted as the basic auth password)"},
}


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def operation(op: Op) -> dict[str, Any]:
    """The OpenAPI operation object of one route."""
    params: list[dict[str, Any]] = [{"name": name, "in": "path", "required": True, "schema": ID}
                                    for name in _PARAMETER.findall(op.path)]
    params += [{"name": q.name, "in": "query", "required": q.required, "schema": q.schema,
                **({"description": q.description} if q.description else {})} for q in op.query]
    answer: dict[str, Any] = {"description": REASONS[200]}
    if op.answer:
        answer["content"] = _json(ref(op.answer))
    responses: dict[str, Any] = {"200": answer}
    for status in op.statuses():
        responses[str(status)] = {"description": REASONS[status], "content": _json(ref("Error"))}
    result: dict[str, Any] = {
        "operationId": _operation_id(op),
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": params,
        "responses": responses,
        "security": [{op.auth: []}] if op.auth else [],
    }
    if op.description:
        result["description"] = op.description
    if op.body:
        result["requestBody"] = {"required": op.body_required, "content": _json(ref(op.body))}
    return result


def _operation_id(op: Op) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", _PARAMETER.sub(r"by_\1", op.path)).strip("_")
    return f"{op.method.lower()}_{words}"


def build(operations: tuple[Op, ...] = OPERATIONS) -> dict[str, Any]:
    """The whole document for `operations`."""
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault("/" + op.path, {})[op.method.lower()] = operation(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Azure DevOps Boards sync", "version": VERSION,
                 "description": "Management API and Azure DevOps service hook receiver of the sync bundle."},
        "servers": [{"url": "/api"}],
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY},
    }


@functools.cache
def document() -> dict[str, Any]:
    """The document of every route (built once; do not modify the answer)."""
    return build()


def described() -> set[tuple[str, str]]:
    """(METHOD, route) of every described operation, routes as registered (no `/api`)."""
    return {(op.method.upper(), op.path) for op in OPERATIONS}
