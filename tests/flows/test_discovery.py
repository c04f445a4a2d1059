"""Discovery routes through the real decorated functions, against the HTTPS sandbox ADO and Azurite."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import azure.functions as func
import pytest
from conftest import StubContext

from manage_http import discovery as routes
from shared.compose import Services, services
from shared.core.models import Identity, Integration

KEY = "discovery-manage-key-0123456789"


@dataclass
class Org:
    sandbox: Any
    name: str
    account_id: str
    project_id: str

    def calls(self) -> list[dict[str, Any]]:
        return [c for c in self.sandbox.calls if c["path"].startswith(f"/{self.name}/")]


@pytest.fixture
def org(azurite: Any, sandbox_ado: Any, uid: str, env: pytest.MonkeyPatch) -> Org:
    env.setenv("MANAGE_API_KEY", KEY)
    name = f"disc{uid}"
    account_id = sandbox_ado.add_organization(name)
    project_id = sandbox_ado.add_project(name, "Fabrikam")
    svc: Services = services()
    svc.store.integrations.save(Integration(account_id=account_id, account_name=name,
                                            domain_name=sandbox_ado.instance_url(name)))
    svc.store.integrations.save_identity(account_id, Identity(kind="pat", access_token=sandbox_ado.add_pat(name)))
    return Org(sandbox_ado, name, account_id, project_id)


def call(function: Any, route: dict[str, str], params: dict[str, str] | None = None
         ) -> tuple[int, Any, dict[str, str]]:
    req = func.HttpRequest("GET", "http://localhost/api/manage", headers={"Authorization": f"Bearer {KEY}"},
                           route_params=route, params=params or {}, body=b"")
    response = function(req, StubContext())
    text = response.get_body()
    return response.status_code, json.loads(text) if text else None, dict(response.headers)


def test_projects_are_paged_by_name(org: Org) -> None:
    for name in ("Zeta", "alpha", "Mobile"):
        org.sandbox.add_project(org.name, name)

    status, body, headers = call(routes.manage_ado_projects, {"account_id": org.account_id}, {"top": "2"})

    assert status == 200
    assert [p["name"] for p in body] == ["alpha", "Fabrikam"]
    assert headers["X-Total-Count"] == "4" and headers["Link"] == '<?top=2&skip=2>; rel="next"'
    assert body[1] == {"id": org.project_id, "name": "Fabrikam", "description": body[1]["description"]}
    status, rest, headers = call(routes.manage_ado_projects, {"account_id": org.account_id},
                                 {"top": "2", "skip": "2"})
    assert [p["name"] for p in rest] == ["Mobile", "Zeta"] and "Link" not in headers


def test_answers_are_cached_briefly_and_failures_never(org: Org) -> None:
    route = {"account_id": org.account_id}
    org.sandbox.inject_fault("503", times=4, path_contains=f"/{org.name}/_apis/projects")
    try:
        status, body, _ = call(routes.manage_ado_projects, route)
    finally:
        org.sandbox.clear_faults()
    assert status == 503 and "detail" in body

    org.sandbox.reset_calls()
    assert call(routes.manage_ado_projects, route)[0] == 200
    assert len(org.calls()) == 1, "the failure was not cached: Azure DevOps is asked again"
    org.sandbox.add_project(org.name, "Later")
    status, body, _ = call(routes.manage_ado_projects, route)
    assert len(org.calls()) == 1, "a second look within the TTL is served from the cache"
    assert "Later" not in [p["name"] for p in body]


def test_work_item_types_with_states_and_field_rules(org: Org) -> None:
    org.sandbox.set_required_fields(org.name, "Fabrikam", ["Custom.Customer"])
    org.sandbox.set_allowed_values(org.name, "Fabrikam", "Custom.Customer", ["Contoso", "Fabrikam"])

    status, body, headers = call(routes.manage_ado_work_item_types,
                                 {"account_id": org.account_id, "project": "Fabrikam"})

    assert status == 200 and headers["X-Total-Count"] == str(len(body))
    bug = next(t for t in body if t["name"] == "Bug")
    assert bug["reference_name"] == "Microsoft.VSTS.WorkItemTypes.Bug" and bug["is_disabled"] is False
    assert [s["name"] for s in bug["states"]] == ["New", "Active", "Resolved", "Closed", "Removed"]
    assert bug["states"][2] == {"name": "Resolved", "category": "Resolved", "color": "ff9d00"}
    fields = {f["reference_name"]: f for f in bug["fields"]}
    assert fields["Custom.Customer"] == {"name": "Customer", "reference_name": "Custom.Customer", "required": True,
                                         "allowed_values": ["Contoso", "Fabrikam"], "default_value": None}
    assert fields["System.Title"]["required"] is True
    assert fields["Microsoft.VSTS.Common.Severity"]["allowed_values"][0] == "1 - Critical"
    by_id = call(routes.manage_ado_work_item_types, {"account_id": org.account_id, "project": org.project_id})[1]
    assert [t["name"] for t in by_id] == [t["name"] for t in body]


def test_states_of_a_type_by_name_or_reference_name(org: Org) -> None:
    org.sandbox.set_states(org.name, "Fabrikam", "Task", [
        {"name": "To Do", "color": "b2b2b2", "category": "Proposed"},
        {"name": "Done", "color": "339933", "category": "Completed"}])
    route = {"account_id": org.account_id, "project": "Fabrikam"}

    status, body, _ = call(routes.manage_ado_states, {**route, "type": "Task"})
    assert status == 200
    assert body == [{"name": "To Do", "category": "Proposed", "color": "b2b2b2"},
                    {"name": "Done", "category": "Completed", "color": "339933"}]
    by_reference = call(routes.manage_ado_states, {**route, "type": "Microsoft.VSTS.WorkItemTypes.Task"})[1]
    assert by_reference == body
    status, body, _ = call(routes.manage_ado_states, {**route, "type": "Spaceship"})
    assert status == 404 and "Spaceship" in body["detail"]


def test_areas_and_iterations_are_flattened_to_paths(org: Org) -> None:
    org.sandbox.add_area(org.name, "Fabrikam", "Team A\\Backend")
    org.sandbox.add_iteration(org.name, "Fabrikam", "Release 2\\Sprint 9", "2027-01-04T00:00:00Z",
                              "2027-01-15T00:00:00Z")
    route = {"account_id": org.account_id, "project": "Fabrikam"}

    status, areas, _ = call(routes.manage_ado_areas, route)
    assert status == 200
    assert [a["path"] for a in areas] == ["Fabrikam", "Fabrikam\\Team A", "Fabrikam\\Team A\\Backend",
                                          "Fabrikam\\Team B"]
    assert areas[2]["name"] == "Backend" and areas[2]["identifier"]
    status, iterations, _ = call(routes.manage_ado_iterations, route)
    paths = {i["path"]: i for i in iterations}
    assert list(paths) == ["Fabrikam", "Fabrikam\\Sprint 7", "Fabrikam\\Sprint 8", "Fabrikam\\Release 2",
                           "Fabrikam\\Release 2\\Sprint 9"]
    assert paths["Fabrikam\\Release 2\\Sprint 9"]["start_date"] == "2027-01-04T00:00:00Z"
    assert paths["Fabrikam\\Release 2"]["start_date"] is None


def test_users_by_name_or_e_mail_across_graph_pages(org: Org) -> None:
    for name, email in (("Jamal Hartnett", "jamal@example.com"), ("Lauryn", "lauryn@example.com"),
                        ("Francis Totten", "ftotten@example.com"), ("Ann Ordonez", "ann@contoso.com")):
        org.sandbox.add_user(org.name, name, email)
    route = {"account_id": org.account_id}

    status, body, headers = call(routes.manage_ado_users, route, {"query": "EXAMPLE.com", "top": "2"})

    assert status == 200 and headers["X-Total-Count"] == "3"
    assert [u["display_name"] for u in body] == ["Francis Totten", "Jamal Hartnett"]
    assert headers["Link"] == '<?query=EXAMPLE.com&top=2&skip=2>; rel="next"'
    assert body[1]["email"] == "jamal@example.com" and body[1]["descriptor"]
    assert [u["email"] for u in call(routes.manage_ado_users, route, {"query": "ordonez"})[1]] == ["ann@contoso.com"]
    assert len(call(routes.manage_ado_users, route)[1]) == 4


@pytest.mark.parametrize(
    ("function", "route", "params", "status"),
    [
        pytest.param(routes.manage_ado_projects, {}, {"top": "0"}, 400, id="bad-top"),
        pytest.param(routes.manage_ado_users, {}, {"skip": "-1"}, 400, id="bad-skip"),
        pytest.param(routes.manage_ado_users, {}, {"query": "x" * 300}, 400, id="long-query"),
        pytest.param(routes.manage_ado_areas, {"project": "Nowhere"}, {}, 404, id="unknown-project"),
        pytest.param(routes.manage_ado_work_item_types, {"project": "Nowhere"}, {}, 404, id="unknown-project-types"),
        pytest.param(routes.manage_ado_projects, {"account_id": "nobody"}, {}, 404, id="unknown-integration"),
    ],
)
def test_bad_requests(org: Org, function: Any, route: dict[str, str], params: dict[str, str], status: int) -> None:
    org.sandbox.reset_calls()
    found, body, _ = call(function, {"account_id": org.account_id, **route}, params)
    assert found == status and body["detail"]
    if status == 400:
        assert org.calls() == [], "a bad request asks Azure DevOps nothing"


def test_routes_need_the_management_key(org: Org) -> None:
    req = func.HttpRequest("GET", "http://localhost/api/manage", headers={},
                           route_params={"account_id": org.account_id}, params={}, body=b"")
    assert routes.manage_ado_projects(req, StubContext()).status_code == 401
