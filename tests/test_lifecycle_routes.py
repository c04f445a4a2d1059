"""The DELETE routes through the real decorated functions: authentication, options, answers."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import pytest
from conftest import StubContext

from manage_http import lifecycle_routes as routes
from shared.compose import services
from shared.core.models import Group, Link

KEY = "test-manage-key-0123456789"
pytestmark = pytest.mark.usefixtures("azurite")


@pytest.fixture(autouse=True)
def manage_key(env: pytest.MonkeyPatch) -> None:
    env.setenv("MANAGE_API_KEY", KEY)


def call(function: Any, route_params: dict[str, str], *, key: str | None = KEY, body: bytes = b"",
         params: dict[str, str] | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    req = func.HttpRequest("DELETE", "http://localhost/api/manage", headers=headers, route_params=route_params,
                           params=params or {}, body=body)
    response = function(req, StubContext())
    text = response.get_body()
    return response.status_code, json.loads(text) if text else None


def linked(uid: str) -> dict[str, str]:
    store = services().store
    store.groups.put(Group(org_id=f"o{uid}", group_id="g1", project_id="p1", title="Boom"))
    store.groups.add_link(Link(org_id=f"o{uid}", group_id="g1", account_id=f"a{uid}", key="7"))
    return {"org_id": f"o{uid}", "group_id": "g1", "account_id": f"a{uid}", "key": "7"}


@pytest.mark.parametrize("function", [routes.manage_integration_delete, routes.manage_org_unlink,
                                      routes.manage_link_delete])
def test_every_delete_needs_the_key_and_changes_nothing_without_it(uid: str, function: Any) -> None:
    params = linked(uid)
    status, body = call(function, params, key="wrong")
    assert status == 401 and "detail" in body
    state = services().store.groups.read(params["org_id"], "g1")
    assert state is not None and list(state.links) == [(params["account_id"], "7")]


def test_unknown_integration_and_organization_are_404(uid: str) -> None:
    assert call(routes.manage_integration_delete, {"account_id": f"a{uid}"})[0] == 404
    assert call(routes.manage_org_unlink, {"account_id": f"a{uid}", "org_id": "o"})[0] == 404


def test_unlink_answers_200_twice_and_reads_the_body_option(uid: str) -> None:
    params = linked(uid)
    status, body = call(routes.manage_link_delete, params)
    assert (status, body["removed"], body["comment"]) == (200, True, None)
    status, body = call(routes.manage_link_delete, params, body=b'{"comment": true}')
    assert (status, body["removed"], body["comment"]) == (200, False, None)


@pytest.mark.parametrize(("body", "params"), [(b'{"comment": "yes"}', {}), (b"[]", {}), (b"", {"comment": "x"}),
                                              (b'{"other": 1}', {})])
def test_bad_options_are_refused_and_keep_the_link(uid: str, body: bytes, params: dict[str, str]) -> None:
    route = linked(uid)
    status, answer = call(routes.manage_link_delete, route, body=body, params=params)
    assert status in (400, 422) and "detail" in answer
    state = services().store.groups.read(route["org_id"], "g1")
    assert state is not None and state.links


def test_a_bad_id_is_400() -> None:
    assert call(routes.manage_link_delete, {"org_id": "o", "group_id": "g", "account_id": "a", "key": "a|b"})[0] == 400
