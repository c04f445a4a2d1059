"""End to end with an Azure DevOps Server collection: function_app.py on the devhost, Azurite, the sandbox.

The collection lives at `/tfs/{collection}/`, takes PATs only, answers REST api-version 7.0 at most,
has no graph users API (users come from its identities API), names users `Name <DOMAIN\\user>` and
sends Server-shaped service hooks (`collection` + `server` containers, no `account`).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from conftest import Bundle, wait_for


class Collection:
    """A sandbox Server collection installed into the bundle through the management API."""

    def __init__(self, bundle: Bundle, sandbox: Any, uid: str) -> None:
        self.bundle = bundle
        self.sandbox = sandbox
        self.name = f"Coll{uid}"
        self.account = sandbox.add_server_collection(self.name, domain="FABRIKAM")
        self.project = sandbox.add_project(self.name, "Web")
        self.email = f"ann-{uid}@fabrikam.example"
        self.domain_account = f"FABRIKAM\\ann-{uid}"
        sandbox.add_user(self.name, "Ann Example", self.email)
        self.tracker_org = f"t{uid}"
        status, view = bundle.api("PUT", f"manage/integrations/{self.account}", {
            "account_name": self.name,
            "organization_id": self.tracker_org,
            "domain_name": sandbox.instance_url(self.name),
            "identity": {"kind": "pat", "access_token": sandbox.add_pat(self.name)},
            "config": {
                "sync_status_forward": {self.project: {"on_resolve": "Resolved", "on_unresolve": "Active"}},
                "sync_status_reverse": True,
                "sync_forward_assignment": True,
                "sync_reverse_assignment": True,
            },
        })
        assert status == 200, view
        self.view = view
        assert bundle.api("PUT", f"manage/organizations/{self.tracker_org}/users/ann",
                          {"emails": [self.email], "projects": ["web"]})[0] == 200
        assert bundle.api("PUT", f"manage/organizations/{self.tracker_org}/groups/g1",
                          {"project_id": "web", "title": "TypeError", "status": "unresolved",
                           "assignee": None})[0] == 200

    def group(self) -> dict[str, Any]:
        status, body = self.bundle.api("GET", f"manage/organizations/{self.tracker_org}/groups/g1")
        assert status == 200
        return body  # type: ignore[no-any-return]

    def fields(self, key: str) -> dict[str, Any]:
        return dict(self.sandbox.work_item(self.name, int(key))["fields"])

    def create_work_item(self) -> str:
        status, issue = self.bundle.api(
            "POST", f"manage/integrations/{self.account}/organizations/{self.tracker_org}/issues",
            {"group_id": "g1", "project": self.project, "work_item_type": "Bug", "title": "TypeError",
             "description": "Seen **42** times"})
        assert status in (200, 201), issue
        return str(issue["key"])  # type: ignore[index]


@pytest.fixture
def collection(bundle: Bundle, sandbox_ado: Any, uid: str) -> Collection:
    return Collection(bundle, sandbox_ado, uid)


def test_install_shows_a_server_collection(collection: Collection) -> None:
    assert collection.view["deployment"] == "server"
    assert collection.view["domain_name"] == collection.sandbox.instance_url(collection.name)
    [hook] = collection.sandbox.subscriptions(collection.name)
    assert collection.view["subscription"]["id"] == hook["id"]


def test_tracker_changes_reach_the_work_item(collection: Collection) -> None:
    key = collection.create_work_item()
    assert collection.fields(key)["System.Title"] == "TypeError"
    status, _ = collection.bundle.api("PATCH", f"manage/organizations/{collection.tracker_org}/groups/g1",
                                      {"status": "resolved", "assignee": "ann"})
    assert status == 200
    wait_for(lambda: collection.fields(key)["System.State"] == "Resolved", what="the state push")
    # Server identity fields take the domain account, found through the identities API.
    wait_for(lambda: collection.fields(key).get("System.AssignedTo") == f"Ann Example <{collection.domain_account}>",
             what="the assignee push")
    assert not [c for c in collection.sandbox.calls if "/_apis/graph/" in c["path"] and collection.name in c["path"]]
    # The hooks of those writes are the bundle's own: nothing comes back as activity from Azure DevOps.
    collection.sandbox.wait_idle(10)
    time.sleep(0.5)
    assert [a for a in collection.group()["activity"] if a["data"].get("provider_key") == "vsts"] == []
    assert collection.group()["status"] == "resolved" and collection.group()["assignee"] == "ann"


def test_work_item_changes_come_back_through_the_service_hook(collection: Collection) -> None:
    key = collection.create_work_item()
    collection.sandbox.update_work_item(collection.name, int(key), state="Resolved")
    wait_for(lambda: collection.group()["status"] == "resolved", what="the hook to resolve the group")
    collection.sandbox.update_work_item(collection.name, int(key), assigned_to=collection.domain_account)
    wait_for(lambda: collection.group()["assignee"] == "ann", what="the hook to assign the group")
    collection.sandbox.update_work_item(collection.name, int(key), state="Active", assigned_to=None)
    wait_for(lambda: collection.group()["status"] == "unresolved" and collection.group()["assignee"] is None,
             what="the hook to reopen and unassign the group")
    ours = {s["id"] for s in collection.sandbox.subscriptions(collection.name)}
    delivered = [d for d in collection.sandbox.deliveries
                 if d["work_item_id"] == int(key) and d["subscription_id"] in ours]
    assert delivered and all(d.get("status") == 200 for d in delivered)
