"""The OpenAPI document: it describes exactly the registered routes, is valid, and is served without auth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import azure.functions as func
import schemathesis
from conftest import StubContext

from devhost.functions import load
from manage_http import openapi as openapi_route
from shared.openapi import build, described, document
from shared.openapi.routes import Op

ROOT = Path(__file__).resolve().parent.parent


def registered() -> set[tuple[str, str]]:
    """(METHOD, route) of every HTTP trigger the Functions host indexes from function_app.py."""
    found = set()
    for function in load("function_app", ROOT):
        if function.trigger_type == "httpTrigger":
            route = str(function.trigger.get("route") or function.name).strip("/")
            found |= {(str(method).upper(), route) for method in function.trigger.get("methods") or ["*"]}
    return found


def test_every_registered_route_is_described() -> None:
    missing = sorted(registered() - described())
    assert not missing, ("routes without an entry in shared/openapi/routes.py OPERATIONS (add one Op each):\n"
                         + "\n".join(f"  {method} /api/{route}" for method, route in missing))


def test_every_described_route_exists() -> None:
    extra = sorted(described() - registered())
    assert not extra, ("entries of shared/openapi/routes.py OPERATIONS that no function registers:\n"
                       + "\n".join(f"  {method} /api/{route}" for method, route in extra))


def refs(value: Any) -> set[str]:
    if isinstance(value, dict):
        found = {value["$ref"]} if isinstance(value.get("$ref"), str) else set()
        return found.union(*(refs(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(refs(v) for v in value))
    return set()


def test_the_document_is_valid_openapi_3_1_and_every_reference_resolves() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1")
    schemas = doc["components"]["schemas"]
    assert {r.removeprefix("#/components/schemas/") for r in refs(doc)} <= set(schemas)
    schemathesis.openapi.from_dict(doc).validate()  # against the OpenAPI 3.1 meta-schema


def test_each_path_parameter_is_described_once_and_operation_ids_are_unique() -> None:
    ids = []
    for path_item in document()["paths"].values():
        for op in path_item.values():
            names = [p["name"] for p in op["parameters"] if p["in"] == "path"]
            assert len(names) == len(set(names))
            ids.append(op["operationId"])
    assert len(ids) == len(set(ids))


def test_a_new_route_is_one_entry() -> None:
    extra = Op("GET", "manage/things/{thing_id}", "A thing", "Error", errors=(404,))
    doc = build((extra,))
    op = doc["paths"]["/manage/things/{thing_id}"]["get"]
    assert [p["name"] for p in op["parameters"]] == ["thing_id"]
    assert set(op["responses"]) == {"200", "400", "401", "404", "409", "503"}
    assert op["security"] == [{"manageKey": []}]


def test_the_document_is_served_without_a_key() -> None:
    req = func.HttpRequest("GET", "http://localhost/api/openapi.json", headers={}, body=b"")
    response = openapi_route.openapi_document(req, StubContext())
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert json.loads(response.get_body()) == document()
