"""Outbound sync (tracker → ADO) against the HTTPS sandbox ADO and a real Azurite: calls, order, errors."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import pytest

from shared.adapters import store
from shared.core import outbound, sync
from shared.core.errors import InvalidInput, TransientError
from shared.core.models import Group, GroupChange, GroupState, Identity, Integration, Link, OrgLink, User
from shared.flows import jobs
from shared.flows import outbound as outbound_sync

pytestmark = pytest.mark.usefixtures("azurite")


@dataclass
class Setup:
    sandbox: Any
    org: str
    account_id: str
    project_id: str
    org_id: str
    group_id: str
    key: str

    def calls(self) -> list[dict[str, Any]]:
        return [c for c in self.sandbox.calls if c["path"].startswith(f"/{self.org}/")]

    def patches(self) -> list[list[dict[str, Any]]]:
        return [json.loads(c["body"]) for c in self.calls() if c["method"] == "PATCH"]

    def change(self, **changes: Any) -> list[dict[str, Any]]:
        """A tracker-side change (as the PATCH handler makes it); returns the queued messages."""
        self.sandbox.reset_calls()
        return outbound.change_group_from_tracker(self.org_id, self.group_id, changes)

    def activity(self, prefix: str = "outbound_") -> list[tuple[str, dict[str, Any]]]:
        return [(a.kind, a.data) for a in store.list_activity(self.org_id, self.group_id)
                if a.kind.startswith(prefix)]

    def work_item(self) -> dict[str, Any]:
        return dict(self.sandbox.work_item(self.org, int(self.key))["fields"])


def _config(project_id: str) -> dict[str, Any]:
    return {"sync_status_forward": {project_id: {"on_resolve": "Resolved", "on_unresolve": "Active"}},
            "sync_forward_assignment": True}


@pytest.fixture
def ado(sandbox_ado: Any, uid: str) -> Setup:
    org = f"ob{uid}"
    account_id = sandbox_ado.add_organization(org)
    project_id = sandbox_ado.add_project(org, "Fabrikam")
    for name, email in [("Board User", "board@example.com"), ("Ann Smith", "Ann.Smith@Example.com"),
                        ("Bob", "bob@example.com"), ("Cid", "cid@example.com"), ("Dee", "dee@example.com")]:
        sandbox_ado.add_user(org, name, email)  # graph pages of 2: board+ann | bob+cid | dee
    token = sandbox_ado.issue_token(org)
    store.save_integration(Integration(account_id=account_id, account_name=org,
                                       domain_name=sandbox_ado.instance_url(org)))
    store.save_identity(account_id, Identity(kind="oauth", access_token=token["access_token"],
                                             refresh_token=token["refresh_token"], expires_at=token["expires_at"]))
    store.save_org_link(OrgLink(account_id=account_id, org_id=uid, config=_config(project_id)))
    store.put_user(User(org_id=uid, user_id="ann", emails=["other@example.org", "ann.smith@example.com"]))
    store.put_user(User(org_id=uid, user_id="dee", emails=["DEE@example.com"]))
    store.put_user(User(org_id=uid, user_id="zed", emails=["zed@example.com"]))
    store.put_group(Group(org_id=uid, group_id="g1", project_id="p1", title="Boom"))
    item = sandbox_ado.create_work_item(org, "Fabrikam", title="Boom", state="Active")
    key = str(item["id"])
    store.add_link(Link(org_id=uid, group_id="g1", account_id=account_id, key=key, project_id=project_id,
                        work_item_type="Bug"))
    return Setup(sandbox_ado, org, account_id, project_id, uid, "g1", key)


# --- status ---------------------------------------------------------------------------------------


def test_resolve_is_exactly_one_patch_of_the_state(ado: Setup) -> None:
    """Reference item 44, with the project id kept on the link: 1 call instead of 3."""
    (message,) = ado.change(status="resolved")

    outbound_sync.sync_work_item(message)

    assert [(c["method"], c["path"]) for c in ado.calls()] == [
        ("PATCH", f"/{ado.org}/_apis/wit/workitems/{ado.key}")]
    assert ado.patches() == [[{"op": "replace", "path": "/fields/System.State", "value": "Resolved"}]]
    assert ado.calls()[0]["headers"]["Content-Type"] == "application/json-patch+json"
    assert ado.work_item()["System.State"] == "Resolved"
    assert ado.activity() == [("outbound_status", {"integration_id": ado.account_id, "key": ado.key,
                                                   "state": "Resolved", "status": "resolved"})]


def test_unresolve_through_the_queue_policy(ado: Setup) -> None:
    outbound_sync.sync_work_item(ado.change(status="resolved")[0])
    (message,) = ado.change(status="unresolved")

    jobs.run("sync-outbound", json.dumps(message).encode(), outbound_sync.sync_work_item)

    assert ado.patches() == [[{"op": "replace", "path": "/fields/System.State", "value": "Active"}]]
    assert ado.work_item()["System.State"] == "Active"


def test_no_mapping_for_the_project_is_no_call_and_an_activity(ado: Setup) -> None:
    store.save_org_link(OrgLink(account_id=ado.account_id, org_id=ado.org_id, config={
        "sync_status_forward": {"another-project": {"on_resolve": "Done", "on_unresolve": "New"}}}))
    (message,) = ado.change(status="resolved")

    outbound_sync.sync_work_item(message)

    assert ado.calls() == []
    ((kind, data),) = ado.activity()
    assert kind == "outbound_status_skipped" and ado.project_id in data["reason"]


def test_always_pushes_current_state_and_skips_older_versions(ado: Setup) -> None:
    (older,) = ado.change(status="resolved")
    (newer,) = ado.change(status="unresolved")
    assert newer["version"] > older["version"]
    ado.sandbox.reset_calls()

    outbound_sync.sync_work_item(older)  # late-processed old message: pushes the CURRENT status
    outbound_sync.sync_work_item(newer)  # already covered: skipped
    outbound_sync.sync_work_item(older)  # redelivered: skipped

    assert ado.patches() == [[{"op": "replace", "path": "/fields/System.State", "value": "Active"}]]
    assert store.pushed_version(ado.org_id, ado.group_id, ado.account_id, ado.key, "status") == newer["version"]


def test_message_without_version_pushes_the_current_state_once(ado: Setup) -> None:
    (message,) = ado.change(status="resolved")
    bare = {k: v for k, v in message.items() if k != "version"}
    ado.sandbox.reset_calls()

    outbound_sync.sync_work_item(bare)
    outbound_sync.sync_work_item(bare)

    assert ado.patches() == [[{"op": "replace", "path": "/fields/System.State", "value": "Resolved"}]]


def test_newer_message_first_then_stale_one_makes_no_call(ado: Setup) -> None:
    (older,) = ado.change(status="resolved")
    (newer,) = ado.change(status="unresolved")
    outbound_sync.sync_work_item(newer)
    ado.sandbox.reset_calls()

    outbound_sync.sync_work_item(older)

    assert ado.calls() == []
    assert ado.work_item()["System.State"] == "Active"


@pytest.mark.parametrize("fault", ["429", "503"])
def test_throttling_or_outage_raises_for_a_queue_retry(ado: Setup, fault: str) -> None:
    (message,) = ado.change(status="resolved")
    ado.sandbox.inject_fault(fault, path_contains=f"/{ado.org}/_apis/wit/workitems/", retry_after=4)
    try:
        with pytest.raises(TransientError) as caught:
            jobs.run("sync-outbound", json.dumps(message).encode(), outbound_sync.sync_work_item)
    finally:
        ado.sandbox.clear_faults()
    if fault == "429":
        assert caught.value.retry_after == 4
    assert ado.work_item()["System.State"] == "Active"
    assert ado.activity() == []

    outbound_sync.sync_work_item(message)  # the retry: lease released, version not recorded

    assert ado.work_item()["System.State"] == "Resolved"


def test_missing_work_item_is_recorded_and_completes(ado: Setup) -> None:
    store.add_link(Link(org_id=ado.org_id, group_id=ado.group_id, account_id=ado.account_id, key="987654",
                        project_id=ado.project_id))
    messages = ado.change(status="resolved")
    message = next(m for m in messages if m["key"] == "987654")

    outbound_sync.sync_work_item(message)  # does not raise: the message completes

    failed = [data for kind, data in ado.activity() if kind == "outbound_status_failed"]
    assert failed and failed[0]["error"] == "AdoNotFound" and failed[0]["key"] == "987654"


def test_refused_credential_is_recorded_and_completes(ado: Setup) -> None:
    store.save_identity(ado.account_id, Identity(kind="pat", access_token="not-a-valid-pat-42"))
    (message,) = ado.change(status="resolved")

    outbound_sync.sync_work_item(message)

    ((kind, data),) = ado.activity()
    assert kind == "outbound_status_failed" and data["error"] == "AdoAuthError"
    assert "not-a-valid-pat-42" not in json.dumps(data)
    assert ado.work_item()["System.State"] == "Active"


def test_push_waits_while_another_push_of_the_link_holds_the_lease(ado: Setup) -> None:
    (message,) = ado.change(status="resolved")
    claim = store.claim_push(ado.org_id, ado.group_id, ado.account_id, ado.key, "status", version=1)
    assert claim is not None

    with pytest.raises(TransientError) as caught:
        outbound_sync.sync_work_item(message)

    assert caught.value.retry_after is not None and caught.value.retry_after > 0
    assert ado.calls() == []
    store.finish_push(claim, version=None)
    outbound_sync.sync_work_item(message)
    assert ado.work_item()["System.State"] == "Resolved"


def test_disabled_forward_sync_or_unknown_integration_does_nothing(ado: Setup, uid: str) -> None:
    (message,) = ado.change(status="resolved")
    store.save_org_link(OrgLink(account_id=ado.account_id, org_id=ado.org_id, config={}))
    outbound_sync.sync_work_item(message)
    outbound_sync.sync_work_item({**message, "integration_id": f"gone-{uid}"})
    assert ado.calls() == [] and ado.activity() == []


def test_malformed_messages_are_invalid_and_completed(ado: Setup) -> None:
    (message,) = ado.change(status="resolved")
    for bad in ({**message, "kind": "title"}, {**message, "version": "3"}, {**message, "key": "1/2"},
                {**message, "group_id": "a|b"}, {k: v for k, v in message.items() if k != "organization_id"}):
        with pytest.raises(InvalidInput):
            outbound_sync.sync_work_item(bad)
        jobs.run("sync-outbound", json.dumps(bad).encode(), outbound_sync.sync_work_item)
    assert ado.calls() == []


# --- assignee -------------------------------------------------------------------------------------


def test_assign_is_two_calls_cold_and_one_warm(ado: Setup) -> None:
    """Reference item 42: graph users, then one AssignedTo op (found on the first page)."""
    (message,) = ado.change(assignee="ann")
    outbound_sync.sync_work_item(message)

    assert [c["method"] for c in ado.calls()] == ["GET", "PATCH"]
    assert ado.calls()[0]["path"] == f"/{ado.org}/_apis/graph/users"
    assert ado.patches() == [[{"op": "add", "path": "/fields/System.AssignedTo", "value": "Ann.Smith@Example.com"}]]
    assert ado.work_item()["System.AssignedTo"] == "Ann Smith <Ann.Smith@Example.com>"
    assert ado.activity()[-1][0] == "outbound_assignee"

    outbound_sync.sync_work_item(ado.change(assignee=None)[0])
    assert ado.patches() == [[{"op": "remove", "path": "/fields/System.AssignedTo"}]]
    assert "System.AssignedTo" not in ado.work_item()

    outbound_sync.sync_work_item(ado.change(assignee="ann")[0])
    assert [c["method"] for c in ado.calls()] == ["PATCH"]  # warm: the e-mail answer is cached
    assert ado.work_item()["System.AssignedTo"] == "Ann Smith <Ann.Smith@Example.com>"


def test_assign_pages_through_graph_users_until_the_match(ado: Setup) -> None:
    """Reference item 43: users, users?continuationToken=…, …, then PATCH."""
    outbound_sync.sync_work_item(ado.change(assignee="dee")[0])

    calls = ado.calls()
    assert [c["method"] for c in calls] == ["GET", "GET", "GET", "PATCH"]
    assert "continuationToken" not in calls[0]["query"]
    assert calls[1]["query"]["continuationToken"] and calls[2]["query"]["continuationToken"]
    assert ado.patches() == [[{"op": "add", "path": "/fields/System.AssignedTo", "value": "dee@example.com"}]]


def test_no_matching_ado_user_is_no_patch_and_an_activity(ado: Setup) -> None:
    outbound_sync.sync_work_item(ado.change(assignee="zed")[0])

    assert [c["method"] for c in ado.calls()] == ["GET", "GET", "GET"]
    assert ado.activity()[-1] == ("outbound_assignee_skipped", {
        "integration_id": ado.account_id, "key": ado.key, "assignee": "zed",
        "reason": "No matching Azure DevOps user found."})

    outbound_sync.sync_work_item(ado.change(assignee=None)[0])
    outbound_sync.sync_work_item(ado.change(assignee="zed")[0])
    assert [c["method"] for c in ado.calls()] == []  # the miss is cached too


def test_inbound_assignment_is_not_echoed(ado: Setup) -> None:
    (message,) = ado.change(assignee="ann")

    def from_ado(state: GroupState | None) -> GroupChange:
        assert state is not None
        return GroupChange(group=replace(state.group, assignee="dee", assignment_source=ado.account_id,
                                         version=state.group.version + 1))

    store.change_group(ado.org_id, ado.group_id, from_ado)  # ADO assigned Dee meanwhile
    ado.sandbox.reset_calls()

    outbound_sync.sync_work_item(message)

    assert ado.calls() == []
    assert ado.activity() == []


def test_resolve_actions_of_the_reference() -> None:
    """Reference items 46 and 47 (the pure decision; a failed states lookup never reaches it here)."""
    done = ["Resolved", "Closed"]
    assert sync.status_action("Active", "Resolved", done) == "resolve"
    assert sync.status_action("Resolved", "Active", done) == "unresolve"
    assert sync.status_action(None, "New", done) == "unresolve"
    assert sync.status_action("Resolved", "Closed", done) == "noop"
    assert sync.status_action("Active", "Resolved", []) == "unresolve"


def test_status_plan_is_pure_and_case_insensitive_on_project_ids() -> None:
    link = Link(org_id="o", group_id="g", account_id="a", key="1", project_id="ABC")
    group = Group(org_id="o", group_id="g", project_id="p", title="t", status="resolved")
    plan = outbound_sync.status_plan({"sync_status_forward": {"abc": {"on_resolve": "Done"}}}, link, group)
    assert plan.ops == [{"op": "replace", "path": "/fields/System.State", "value": "Done"}]
    unmapped = outbound_sync.status_plan({"sync_status_forward": True}, link, group)
    assert unmapped.ops is None and "on_resolve" in unmapped.detail["reason"]


def test_push_record_never_goes_down(uid: str) -> None:
    claim = store.claim_push(uid, "g", "acc", "1", "status", version=5)
    assert claim is not None and claim.pushed == 0
    store.finish_push(claim, version=5)
    assert store.claim_push(uid, "g", "acc", "1", "status", version=5) is None
    later = store.claim_push(uid, "g", "acc", "1", "status", version=6)
    assert later is not None and later.pushed == 5
    store.finish_push(later, version=3)
    assert store.pushed_version(uid, "g", "acc", "1", "status") == 5


def test_expired_lease_owner_does_not_release_the_new_owner(uid: str) -> None:
    stale = store.claim_push(uid, "g", "acc", "1", "assignee", version=2, lease=1.0, now=1000.0)
    assert stale is not None
    fresh = store.claim_push(uid, "g", "acc", "1", "assignee", version=3)  # the stale lease expired
    assert fresh is not None

    store.finish_push(stale, version=2)  # finishes late: records its version, keeps the new lease

    assert store.pushed_version(uid, "g", "acc", "1", "assignee") == 2
    with pytest.raises(TransientError):
        store.claim_push(uid, "g", "acc", "1", "assignee", version=3)
    store.finish_push(fresh, version=3)
    assert store.claim_push(uid, "g", "acc", "1", "assignee", version=3) is None
