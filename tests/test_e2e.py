"""End to end: function_app.py on the devhost, Azurite, and the HTTPS sandbox Azure DevOps."""

from __future__ import annotations

import time
from typing import Any

import pytest
from conftest import Bundle, wait_for
from test_webhook_http import SECRET, World

from shared.compose import services

FIXTURES = [
    ("workitem-updated-state-active-to-resolved.json", {"status": "resolved"}),
    ("workitem-updated-state-new-to-resolved.json", {"status": "resolved"}),
    ("workitem-updated-state-resolved-to-active.json", {"status": "unresolved"}),
    ("workitem-updated-state-new-workitem-no-old-value.json", {"status": "unresolved"}),
    ("workitem-updated-assigned.json", {"assignee": "u-lauryn"}),
    ("workitem-updated-unassigned.json", {"assignee": None}),
]


@pytest.mark.parametrize("fixture,expected", FIXTURES)
def test_every_fixture_over_http(bundle: Bundle, uid: str, fixture: str, expected: dict[str, Any]) -> None:
    from shared.core.models import User

    world = World(uid)
    services().store.users.put(User(org_id=world.org, user_id="u-lauryn", emails=["lauryn@sentry.io"], projects=["p1"]))
    if expected.get("status") == "unresolved" or ("assignee" in expected and expected["assignee"] is None):
        # Start from the opposite state so the delivery has something to change.
        bundle.api("PUT", f"manage/organizations/{world.org}/groups/{world.group}",
                   {"project_id": "p1", "title": "Boom", "status": "resolved", "assignee": "u-lauryn"})
    response = bundle.http.post(f"{bundle.url}/api/vsts/issue-updated", json=world.payload(fixture),
                                headers={"shared-secret": SECRET}, timeout=30)
    assert response.status_code == 200
    status, group = bundle.api("GET", f"manage/organizations/{world.org}/groups/{world.group}")
    assert status == 200
    for key, value in expected.items():
        assert group[key] == value, (fixture, group)


def test_unknown_collection_and_bad_secret_over_http(bundle: Bundle, uid: str) -> None:
    world = World(uid)
    payload = world.payload("workitem-updated-state-active-to-resolved.json")
    url = f"{bundle.url}/api/vsts/issue-updated"
    assert bundle.http.post(url, json=payload, headers={"shared-secret": "nope"}, timeout=30).status_code == 401
    assert bundle.http.post(url, data=b"{", timeout=30).status_code == 400
    assert bundle.http.get(url, timeout=30).status_code == 405
    assert bundle.http.get(f"{bundle.url}/api/nope", timeout=30).status_code == 404
    status, group = bundle.api("GET", f"manage/organizations/{world.org}/groups/{world.group}")
    assert status == 200
    assert group["status"] == "unresolved" and group["activity"][-1]["kind"] == "link"


class Org:
    """A sandbox organization installed into the bundle through the management API."""

    def __init__(self, bundle: Bundle, sandbox: Any, uid: str) -> None:
        self.bundle = bundle
        self.sandbox = sandbox
        self.name = f"org{uid}"
        self.account = sandbox.add_organization(self.name)
        self.project = sandbox.add_project(self.name, "Web")
        sandbox.add_user(self.name, "Ann Example", f"ann-{uid}@example.com")
        self.email = f"ann-{uid}@example.com"
        self.tracker_org = f"t{uid}"
        pat = sandbox.add_pat(self.name)
        status, view = bundle.api("PUT", f"manage/integrations/{self.account}", {
            "account_name": self.name,
            "organization_id": self.tracker_org,
            "domain_name": sandbox.instance_url(self.name),
            "identity": {"kind": "pat", "access_token": pat},
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

    def create_work_item(self) -> str:
        status, issue = self.bundle.api(
            "POST", f"manage/integrations/{self.account}/organizations/{self.tracker_org}/issues",
            {"group_id": "g1", "project": self.project, "work_item_type": "Bug", "title": "TypeError",
             "description": "Seen **42** times <script>x</script>"})
        assert status in (200, 201), issue
        return str(issue["key"])  # type: ignore[index]


@pytest.fixture
def org(bundle: Bundle, sandbox_ado: Any, uid: str) -> Org:
    return Org(bundle, sandbox_ado, uid)


def test_ado_state_change_comes_back_through_the_service_hook(org: Org) -> None:
    key = org.create_work_item()
    org.sandbox.update_work_item(org.name, int(key), state="Resolved")
    wait_for(lambda: org.group()["status"] == "resolved", what="the webhook to resolve the group")
    org.sandbox.update_work_item(org.name, int(key), assigned_to=org.email)
    wait_for(lambda: org.group()["assignee"] == "ann", what="the webhook to assign the group")
    kinds = [a["kind"] for a in org.group()["activity"]]
    assert kinds.count("set_resolved") == 1 and kinds.count("assigned") == 1


def test_tracker_change_reaches_the_work_item_through_the_queue(org: Org) -> None:
    key = org.create_work_item()
    org.sandbox.reset_calls()
    status, _ = org.bundle.api("PATCH", f"manage/organizations/{org.tracker_org}/groups/g1", {"status": "resolved"})
    assert status == 200
    wait_for(lambda: org.sandbox.work_item(org.name, int(key))["fields"]["System.State"] == "Resolved",
             what="sync-outbound to set the work item state")
    patches = [c for c in org.sandbox.calls if c["method"] == "PATCH" and f"/{org.name}/" in c["path"]]
    assert len(patches) == 1
    # The resulting service hook must not bounce the change back as new activity.
    org.sandbox.wait_idle(10)
    time.sleep(0.5)
    kinds = [a["kind"] for a in org.group()["activity"]]
    assert kinds.count("set_resolved") == 1


def test_disabled_hook_is_repaired_by_the_timer_and_delivers_again(org: Org) -> None:
    from shared.core.models import Integration

    (sub,) = [s for s in org.sandbox.subscriptions(org.name)]
    org.sandbox.set_subscription_status(org.name, sub["id"], "disabledBySystem")
    # Make the link due for a check, as six hours later.
    services().store.integrations.update(org.account, lambda i: Integration(**{**i.__dict__, "last_checked": 1.0}))
    assert org.bundle.run_function("subscription_timer") == 202
    new = wait_for(lambda: [s for s in org.sandbox.subscriptions(org.name)
                            if s["id"] != sub["id"] and s["status"] == "enabled"], what="a new hook")
    assert len(new) == 1
    key = org.create_work_item()
    org.sandbox.update_work_item(org.name, int(key), state="Resolved")
    wait_for(lambda: org.group()["status"] == "resolved", what="the repaired hook to deliver")
    status, view = org.bundle.api("GET", f"manage/integrations/{org.account}")
    assert status == 200
    assert view["subscription"]["id"] == new[0]["id"]
    assert view["subscription"]["status"] == "enabled"


def test_status_that_came_from_ado_is_not_pushed_back(org: Org) -> None:
    key = org.create_work_item()
    org.sandbox.update_work_item(org.name, int(key), state="Closed")
    wait_for(lambda: org.group()["status"] == "resolved", what="the webhook to resolve the group")
    org.sandbox.reset_calls()
    # The tracker repeats the same status (e.g. a retried PATCH): nothing must go back to ADO.
    status, _ = org.bundle.api("PATCH", f"manage/organizations/{org.tracker_org}/groups/g1", {"status": "resolved"})
    assert status == 200
    time.sleep(2.0)
    assert org.sandbox.work_item(org.name, int(key))["fields"]["System.State"] == "Closed"
    assert not [c for c in org.sandbox.calls if c["method"] == "PATCH" and f"/{org.name}/" in c["path"]]


def test_outbound_push_marks_its_revision_so_its_own_hook_is_not_applied_back(org: Org) -> None:
    from shared.core import sync

    key = org.create_work_item()
    org.bundle.api("PATCH", f"manage/organizations/{org.tracker_org}/groups/g1", {"status": "resolved"})
    wait_for(lambda: org.sandbox.work_item(org.name, int(key))["fields"]["System.State"] == "Resolved",
             what="the push to reach the work item")
    rev = org.sandbox.work_item(org.name, int(key))["rev"]

    def link() -> Any:
        state = services().store.groups.read(org.tracker_org, "g1")
        return state.links[(org.account, key)] if state else None

    # The hook of our own write (same revision) was either ignored or had nothing to do.
    marked = wait_for(lambda: link() if link().state_rev == rev else None, what="the pushed revision")
    assert marked.state_delivery == sync.OWN_WRITE
    from_ado = [a for a in org.group()["activity"] if a["data"].get("provider_key") == "vsts"]
    assert from_ado == []
