"""End to end: an administrator sets up an organization from live Azure DevOps data, through the
devhost-served function_app.py, Azurite and the HTTPS sandbox Azure DevOps."""

from __future__ import annotations

from typing import Any

from conftest import Bundle


def test_set_up_from_discovery_then_create_with_defaults(bundle: Bundle, sandbox_ado: Any, uid: str) -> None:
    name, tracker = f"e2es{uid}", f"t-e2es{uid}"
    account = sandbox_ado.add_organization(name)
    sandbox_ado.add_project(name, "Web")
    sandbox_ado.add_area(name, "Web", "Checkout")
    sandbox_ado.add_user(name, "Ann Ordonez", f"ann-{uid}@example.com")
    base = f"manage/integrations/{account}"
    status, view = bundle.api("PUT", base, {
        "account_name": name, "organization_id": tracker, "domain_name": sandbox_ado.instance_url(name),
        "identity": {"kind": "pat", "access_token": sandbox_ado.add_pat(name)}})
    assert status == 200, view

    status, projects = bundle.api("GET", f"{base}/projects")
    assert status == 200
    (web,) = projects
    status, states = bundle.api("GET", f"{base}/projects/Web/work-item-types/User%20Story/states")
    assert status == 200 and "Closed" in [s["name"] for s in states]
    status, areas = bundle.api("GET", f"{base}/projects/{web['id']}/areas", params={"top": 1, "skip": 3})
    assert status == 200 and [a["path"] for a in areas] == ["Web\\Checkout"]
    status, users = bundle.api("GET", f"{base}/users", params={"query": "ordonez"})
    assert status == 200 and [u["email"] for u in users] == [f"ann-{uid}@example.com"]

    config = f"{base}/organizations/{tracker}/config"
    status, refused = bundle.api("PUT", config, {
        "sync_status_forward": {web["id"]: {"on_resolve": "Done", "on_unresolve": "Active"}}})
    assert status == 422 and refused["detail"].startswith(f"sync_status_forward.{web['id']}.on_resolve")
    status, saved = bundle.api("PUT", config, {
        "sync_status_forward": {web["id"]: {"on_resolve": "Closed", "on_unresolve": "Active"}},
        "project_issue_defaults": {"web": {"project": web["id"], "work_item_type": "User Story",
                                           "area_path": "Web\\Checkout"}}})
    assert status == 200, saved

    assert bundle.api("PUT", f"manage/organizations/{tracker}/groups/g1",
                      {"project_id": "web", "title": "Boom", "status": "unresolved", "assignee": None})[0] == 200
    issues = f"{base}/organizations/{tracker}/issues"
    status, check = bundle.api("POST", issues, {"group_id": "g1", "title": "Boom"}, params={"dry_run": "true"})
    assert status == 200 and check["valid"] is True and check["request"]["work_item_type"] == "User Story"
    status, created = bundle.api("POST", issues, {"group_id": "g1", "title": "Boom"})
    assert status == 200, created
    item: dict[str, Any] = sandbox_ado.work_item(name, int(created["key"]))
    assert item["fields"]["System.WorkItemType"] == "User Story"
    assert item["fields"]["System.AreaPath"] == "Web\\Checkout"
