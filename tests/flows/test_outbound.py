"""Outbound sync (tracker → ADO) against the HTTPS sandbox ADO and a real Azurite: calls, order, errors.

The services record what they put on queues (`recording_svc`), so a re-sent message is visible
with its delay, and tracker changes do not leave messages on the test queues.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from conftest import Intercepted, load_fixture

from shared.compose import Services
from shared.core import outbound, sync
from shared.core.errors import InvalidInput, TransientError
from shared.core.models import Group, GroupChange, GroupState, Identity, Integration, Link, OrgLink, Push, User
from shared.core.secrets import hash_secret
from shared.flows import inbound, jobs, tracker, workitems
from shared.flows import outbound as outbound_flow

SECRET = "hook-secret-" + "b" * 52


@dataclass
class Setup:
    svc: Services  # its sender records (`svc.send.sent`)
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
        messages = tracker.change_from_tracker(self.svc, self.org_id, self.group_id, changes)
        assert messages is not None
        assert self.svc.send.messages(outbound.QUEUE)[-len(messages):] == messages  # type: ignore[attr-defined]
        self.svc.send.sent.clear()  # type: ignore[attr-defined]
        return messages

    def sync(self, message: dict[str, Any], svc: Services | None = None) -> None:
        outbound_flow.sync_work_item(svc or self.svc, message)

    def run(self, message: dict[str, Any]) -> None:
        """Through the queue policy, as the `sync-outbound` trigger runs it."""
        jobs.run(outbound.QUEUE, json.dumps(message).encode(), functools.partial(outbound_flow.sync_work_item,
                                                                                 self.svc), send=self.svc.send)

    def resent(self) -> list[tuple[dict[str, Any], float | None]]:
        """Messages the flow put back on `sync-outbound`, with their delays."""
        return [(m, delay) for q, m, delay in self.svc.send.sent if q == outbound.QUEUE]  # type: ignore[attr-defined]

    def activity(self, prefix: str = "outbound_") -> list[tuple[str, dict[str, Any]]]:
        return [(a.kind, a.data) for a in self.svc.store.groups.activity(self.org_id, self.group_id)
                if a.kind.startswith(prefix)]

    def work_item(self) -> dict[str, Any]:
        return dict(self.sandbox.work_item(self.org, int(self.key))["fields"])

    def rev(self) -> int:
        return int(self.sandbox.work_item(self.org, int(self.key))["rev"])

    def state(self) -> GroupState:
        state = self.svc.store.groups.read(self.org_id, self.group_id)
        assert state is not None
        return state

    def push(self, kind: str = "status") -> Push:
        return self.state().pushes[(self.account_id, self.key, kind)]

    def link_through_the_api(self) -> Link:
        """Link the work item as the management API does: the link then knows its revision."""
        workitems.link_issue(self.svc, self.account_id, self.org_id, {"group_id": self.group_id, "key": self.key})
        link = self.state().links[(self.account_id, self.key)]
        assert link.state_rev == self.rev() > 0
        return link

    def configure(self, **config: Any) -> None:
        self.svc.store.integrations.save_org_link(OrgLink(account_id=self.account_id, org_id=self.org_id,
                                                          config={**_config(self.project_id), **config}))

    def hook(self, rev: int, old_state: str, new_state: str) -> bytes:
        """The `workitem.updated` delivery of a State change at revision `rev` of the work item."""
        payload = copy.deepcopy(load_fixture("workitem-updated-state-active-to-resolved.json"))
        payload["resourceContainers"]["collection"]["id"] = self.account_id
        payload["resourceContainers"]["project"]["id"] = self.project_id
        resource = payload["resource"]
        resource.update(workItemId=int(self.key), rev=rev, id=rev)
        resource["fields"]["System.State"] = {"oldValue": old_state, "newValue": new_state}
        resource["fields"]["System.Rev"] = {"oldValue": rev - 1, "newValue": rev}
        resource["revision"].update(id=int(self.key), rev=rev)
        return json.dumps(payload).encode()

    def deliver(self, body: bytes) -> int:
        auth = base64.b64encode(f":{SECRET}".encode()).decode()
        return inbound.handle(self.svc, body, {"authorization": f"Basic {auth}"}).status


def _config(project_id: str) -> dict[str, Any]:
    return {"sync_status_forward": {project_id: {"on_resolve": "Resolved", "on_unresolve": "Active"}},
            "sync_forward_assignment": True}


@pytest.fixture
def ado(recording_svc: Services, sandbox_ado: Any, uid: str) -> Setup:
    svc = recording_svc
    org = f"ob{uid}"
    account_id = sandbox_ado.add_organization(org)
    project_id = sandbox_ado.add_project(org, "Fabrikam")
    for name, email in [("Board User", "board@example.com"), ("Ann Smith", "Ann.Smith@Example.com"),
                        ("Bob", "bob@example.com"), ("Cid", "cid@example.com"), ("Dee", "dee@example.com")]:
        sandbox_ado.add_user(org, name, email)  # graph pages of 2: board+ann | bob+cid | dee
    token = sandbox_ado.issue_token(org)
    integrations = svc.store.integrations
    integrations.save(Integration(account_id=account_id, account_name=org, domain_name=sandbox_ado.instance_url(org),
                                  secret_hash=hash_secret(SECRET)))
    integrations.save_identity(account_id, Identity(kind="oauth", access_token=token["access_token"],
                                                    refresh_token=token["refresh_token"],
                                                    expires_at=token["expires_at"]))
    integrations.save_org_link(OrgLink(account_id=account_id, org_id=uid, config=_config(project_id)))
    svc.store.users.put(User(org_id=uid, user_id="ann", emails=["other@example.org", "ann.smith@example.com"]))
    svc.store.users.put(User(org_id=uid, user_id="dee", emails=["DEE@example.com"]))
    svc.store.users.put(User(org_id=uid, user_id="zed", emails=["zed@example.com"]))
    svc.store.groups.put(Group(org_id=uid, group_id="g1", project_id="p1", title="Boom"))
    item = sandbox_ado.create_work_item(org, "Fabrikam", title="Boom", state="Active")
    key = str(item["id"])
    # A link that knows no revision (as older installs stored them): its first push is unconditional.
    svc.store.groups.add_link(Link(org_id=uid, group_id="g1", account_id=account_id, key=key, project_id=project_id,
                                   work_item_type="Bug"))
    return Setup(svc, sandbox_ado, org, account_id, project_id, uid, "g1", key)


class Clock:
    """A clock a test moves forward."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


# --- status ---------------------------------------------------------------------------------------


def test_resolve_is_exactly_one_patch_of_the_state(ado: Setup) -> None:
    """Reference item 44, with the project id kept on the link: 1 call instead of 3."""
    (message,) = ado.change(status="resolved")

    ado.sync(message)

    assert [(c["method"], c["path"]) for c in ado.calls()] == [
        ("PATCH", f"/{ado.org}/_apis/wit/workitems/{ado.key}")]
    assert ado.patches() == [[{"op": "replace", "path": "/fields/System.State", "value": "Resolved"}]]
    assert ado.calls()[0]["headers"]["Content-Type"] == "application/json-patch+json"
    assert ado.work_item()["System.State"] == "Resolved"
    assert ado.activity() == [("outbound_status", {"integration_id": ado.account_id, "key": ado.key,
                                                   "state": "Resolved", "status": "resolved"})]


def test_unresolve_through_the_queue_policy(ado: Setup) -> None:
    ado.sync(ado.change(status="resolved")[0])
    rev = ado.rev()
    (message,) = ado.change(status="unresolved")

    ado.run(message)

    # The first push recorded the revision it wrote: the second is conditional on it.
    assert ado.patches() == [[{"op": "test", "path": "/rev", "value": rev},
                              {"op": "replace", "path": "/fields/System.State", "value": "Active"}]]
    assert ado.work_item()["System.State"] == "Active"


def test_push_is_conditional_on_the_revision_the_link_knows(ado: Setup) -> None:
    ado.link_through_the_api()
    rev = ado.rev()
    (message,) = ado.change(status="resolved")

    ado.sync(message)

    assert ado.patches() == [[{"op": "test", "path": "/rev", "value": rev},
                              {"op": "replace", "path": "/fields/System.State", "value": "Resolved"}]]
    assert ado.work_item()["System.State"] == "Resolved" and ado.rev() == rev + 1


def test_no_mapping_for_the_project_is_no_call_and_an_activity(ado: Setup) -> None:
    ado.svc.store.integrations.save_org_link(OrgLink(account_id=ado.account_id, org_id=ado.org_id, config={
        "sync_status_forward": {"another-project": {"on_resolve": "Done", "on_unresolve": "New"}}}))
    (message,) = ado.change(status="resolved")

    ado.sync(message)

    assert ado.calls() == []
    ((kind, data),) = ado.activity()
    assert kind == "outbound_status_skipped" and ado.project_id in data["reason"]


def test_always_pushes_current_state_and_skips_older_versions(ado: Setup) -> None:
    (older,) = ado.change(status="resolved")
    (newer,) = ado.change(status="unresolved")
    assert newer["version"] > older["version"]
    ado.sandbox.reset_calls()

    ado.sync(older)  # late-processed old message: pushes the CURRENT status
    ado.sync(newer)  # already covered: skipped
    ado.sync(older)  # redelivered: skipped

    assert ado.patches() == [[{"op": "replace", "path": "/fields/System.State", "value": "Active"}]]
    assert ado.push("status").pushed == newer["version"]


def test_message_without_version_pushes_the_current_state_once(ado: Setup) -> None:
    (message,) = ado.change(status="resolved")
    bare = {k: v for k, v in message.items() if k != "version"}
    ado.sandbox.reset_calls()

    ado.sync(bare)
    ado.sync(bare)

    assert ado.patches() == [[{"op": "replace", "path": "/fields/System.State", "value": "Resolved"}]]


def test_newer_message_first_then_stale_one_makes_no_call(ado: Setup) -> None:
    (older,) = ado.change(status="resolved")
    (newer,) = ado.change(status="unresolved")
    ado.sync(newer)
    ado.sandbox.reset_calls()

    ado.sync(older)

    assert ado.calls() == []
    assert ado.work_item()["System.State"] == "Active"


@pytest.mark.parametrize("fault", ["429", "503"])
def test_throttling_or_outage_raises_for_a_queue_retry(ado: Setup, fault: str) -> None:
    (message,) = ado.change(status="resolved")
    ado.sandbox.inject_fault(fault, path_contains=f"/{ado.org}/_apis/wit/workitems/", retry_after=4)
    try:
        with pytest.raises(TransientError) as caught:
            ado.run(message)
    finally:
        ado.sandbox.clear_faults()
    if fault == "429":
        assert caught.value.retry_after == 4
    assert ado.work_item()["System.State"] == "Active"
    assert ado.activity() == []
    push = ado.push("status")
    assert push.lease is None and push.pushed == 0, "lease released, version not recorded"

    ado.sync(message)  # the retry

    assert ado.work_item()["System.State"] == "Resolved"


def test_missing_work_item_is_recorded_and_completes(ado: Setup) -> None:
    ado.svc.store.groups.add_link(Link(org_id=ado.org_id, group_id=ado.group_id, account_id=ado.account_id,
                                       key="987654", project_id=ado.project_id))
    messages = ado.change(status="resolved")
    message = next(m for m in messages if m["key"] == "987654")

    ado.sync(message)  # does not raise: the message completes

    failed = [data for kind, data in ado.activity() if kind == "outbound_status_failed"]
    assert failed and failed[0]["error"] == "AdoNotFound" and failed[0]["key"] == "987654"


def test_refused_credential_is_recorded_and_completes(ado: Setup) -> None:
    ado.svc.store.integrations.save_identity(ado.account_id, Identity(kind="pat", access_token="not-a-valid-pat-42"))
    (message,) = ado.change(status="resolved")

    ado.sync(message)

    ((kind, data),) = ado.activity()
    assert kind == "outbound_status_failed" and data["error"] == "AdoAuthError"
    assert "not-a-valid-pat-42" not in json.dumps(data)
    assert ado.work_item()["System.State"] == "Active"


def test_message_meeting_a_held_lease_is_sent_again_for_when_it_ends(ado: Setup) -> None:
    (message,) = ado.change(status="resolved")
    until = ado.svc.clock() + 60
    ado.svc.store.groups.change(ado.org_id, ado.group_id, lambda _: GroupChange(pushes=[
        Push(ado.account_id, ado.key, "status", pushed=0, lease="another-push", lease_until=until)]))

    ado.run(message)  # completes: never failed towards the poison queue

    assert ado.calls() == []
    ((resent, delay),) = ado.resent()
    assert resent == message
    assert delay is not None and 60 < delay <= 61, "invisible until the lease ends, plus a second"
    assert ado.push("status").lease == "another-push"

    ado.svc.store.groups.change(ado.org_id, ado.group_id, lambda s: GroupChange(pushes=[
        replace(s.pushes[(ado.account_id, ado.key, "status")], lease=None, lease_until=0.0)]) if s else GroupChange())
    ado.sync(resent)
    assert ado.work_item()["System.State"] == "Resolved"


def test_expired_lease_owner_neither_lowers_the_version_nor_releases_a_new_lease(ado: Setup) -> None:
    clock = Clock()
    (first,) = ado.change(status="resolved")
    (second,) = ado.change(status="unresolved")
    svc = replace(ado.svc, clock=clock)
    nested: list[bool] = []

    def slow_patch(real: Callable[..., Any], *args: Any) -> Any:
        written = real(*args)
        if not nested:  # the first push stalls past its lease; a newer push takes over and completes
            nested.append(True)
            clock.now += outbound_flow.LEASE + 1
            ado.sync(second, svc)
        return written

    ado.sync(first, replace(svc, ado=Intercepted(svc.ado, update_work_item=slow_patch)))

    push = ado.push("status")
    assert push.pushed == second["version"], "the stalled push finished late without lowering the version"
    assert push.lease is None
    assert ado.work_item()["System.State"] == "Active"
    assert ("outbound_status", {"integration_id": ado.account_id, "key": ado.key, "state": "Active",
                                "status": "unresolved"}) in ado.activity()

    # Again, with the newer push still holding its lease when the stalled one finishes.
    (third,) = ado.change(status="resolved")

    def stall_then_lose_the_lease(real: Callable[..., Any], *args: Any) -> Any:
        written = real(*args)
        clock.now += outbound_flow.LEASE + 1
        ado.svc.store.groups.change(ado.org_id, ado.group_id, lambda s: GroupChange(pushes=[
            replace(s.pushes[(ado.account_id, ado.key, "status")], lease="newer", lease_until=clock.now + 60)
        ]) if s else GroupChange())
        return written

    ado.sync(third, replace(svc, ado=Intercepted(svc.ado, update_work_item=stall_then_lose_the_lease)))

    push = ado.push("status")
    assert (push.lease, push.lease_until) == ("newer", clock.now + 60), "the new owner keeps its lease"
    ado.sync(third, svc)
    assert ado.resent() == [(third, 61.0)]


def test_disabled_forward_sync_or_unknown_integration_does_nothing(ado: Setup, uid: str) -> None:
    (message,) = ado.change(status="resolved")
    ado.svc.store.integrations.save_org_link(OrgLink(account_id=ado.account_id, org_id=ado.org_id, config={}))
    ado.sync(message)
    ado.sync({**message, "integration_id": f"gone-{uid}"})
    assert ado.calls() == [] and ado.activity() == []


def test_malformed_messages_are_invalid_and_completed(ado: Setup) -> None:
    (message,) = ado.change(status="resolved")
    for bad in ({**message, "kind": "title"}, {**message, "version": "3"}, {**message, "key": "1/2"},
                {**message, "group_id": "a|b"}, {k: v for k, v in message.items() if k != "organization_id"}):
        with pytest.raises(InvalidInput):
            ado.sync(bad)
        ado.run(bad)
    assert ado.calls() == [] and ado.resent() == []


# --- conflicts with edits made in Azure DevOps meanwhile ------------------------------------------


def test_edit_of_another_field_meanwhile_is_kept_and_the_push_goes_ahead(ado: Setup) -> None:
    ado.link_through_the_api()
    known = ado.rev()
    ado.sandbox.update_work_item(ado.org, int(ado.key), title="Renamed on the board")  # no hook reached us
    (message,) = ado.change(status="resolved")

    ado.sync(message)

    assert [(c["method"], c["status"]) for c in ado.calls()] == [("PATCH", 412), ("GET", 200), ("PATCH", 200)]
    replace_state = {"op": "replace", "path": "/fields/System.State", "value": "Resolved"}
    assert ado.patches() == [[{"op": "test", "path": "/rev", "value": known}, replace_state],
                             [{"op": "test", "path": "/rev", "value": known + 1}, replace_state]]
    fields = ado.work_item()
    assert fields["System.State"] == "Resolved" and fields["System.Title"] == "Renamed on the board"
    assert [kind for kind, _ in ado.activity()] == ["outbound_status"]
    assert ado.push("status").pushed == message["version"]


def test_state_changed_in_ado_meanwhile_is_applied_to_the_group_not_overwritten(ado: Setup) -> None:
    ado.configure(sync_status_reverse=True)
    ado.link_through_the_api()
    ado.sandbox.update_work_item(ado.org, int(ado.key), state="New")  # a person, after our last look
    (message,) = ado.change(status="resolved")

    ado.sync(message)

    assert [c["method"] for c in ado.calls() if "/wit/workitems/" in c["path"]] == ["PATCH", "GET"]
    assert ado.work_item()["System.State"] == "New", "the person's edit was not overwritten"
    state = ado.state()
    assert state.group.status == "unresolved" and state.group.status_source == ado.account_id
    (unresolved,) = [a for a in ado.svc.store.groups.activity(ado.org_id, ado.group_id)
                     if a.kind == "set_unresolved" and a.data.get("integration_id") == ado.account_id]
    assert unresolved.data["rev"] == ado.rev()
    assert ado.resent() == []


def test_state_changed_in_ado_without_reverse_sync_is_overwritten_by_the_tracker(ado: Setup) -> None:
    """Status is not synced from ADO here: the tracker's status wins, from the work item's new revision."""
    ado.link_through_the_api()
    ado.sandbox.update_work_item(ado.org, int(ado.key), state="New")
    moved = ado.rev()
    (message,) = ado.change(status="resolved")

    ado.sync(message)

    assert ado.patches()[-1] == [{"op": "test", "path": "/rev", "value": moved},
                                 {"op": "replace", "path": "/fields/System.State", "value": "Resolved"}]
    assert ado.work_item()["System.State"] == "Resolved"
    assert ado.state().group.status == "resolved"
    assert ado.push("status").pushed == message["version"]


def test_assignee_changed_in_ado_without_reverse_sync_is_overwritten_by_the_tracker(ado: Setup) -> None:
    ado.link_through_the_api()
    ado.sandbox.update_work_item(ado.org, int(ado.key), assigned_to="bob@example.com")
    moved = ado.rev()
    (message,) = ado.change(assignee="ann")

    ado.sync(message)

    assert [c["status"] for c in ado.calls() if c["method"] == "PATCH"] == [412, 200]
    assert ado.patches()[-1] == [{"op": "test", "path": "/rev", "value": moved},
                                 {"op": "add", "path": "/fields/System.AssignedTo", "value": "Ann.Smith@Example.com"}]
    assert ado.work_item()["System.AssignedTo"] == "Ann Smith <Ann.Smith@Example.com>"
    assert ado.state().group.assignee == "ann"


def test_work_item_that_keeps_changing_is_retried_later(ado: Setup) -> None:
    ado.link_through_the_api()
    (message,) = ado.change(status="resolved")
    edits: list[int] = []

    def someone_edits_first(real: Callable[..., Any], *args: Any) -> Any:
        edits.append(ado.sandbox.update_work_item(ado.org, int(ado.key), title=f"Edit {len(edits)}")["rev"])
        return real(*args)

    busy = replace(ado.svc, ado=Intercepted(ado.svc.ado, update_work_item=someone_edits_first))
    with pytest.raises(TransientError):
        jobs.run(outbound.QUEUE, json.dumps(message).encode(), functools.partial(outbound_flow.sync_work_item, busy),
                 send=busy.send)

    assert len(edits) == outbound_flow.MAX_REPLANS
    assert [c["status"] for c in ado.calls() if c["method"] == "PATCH"] == [412] * outbound_flow.MAX_REPLANS
    assert ado.work_item()["System.State"] == "Active"
    push = ado.push("status")
    assert push.lease is None and push.pushed == 0 and ado.activity() == []

    ado.sync(message)  # the queue's retry, once the work item is quiet

    assert ado.work_item()["System.State"] == "Resolved"
    assert ado.work_item()["System.Title"] == f"Edit {len(edits) - 1}"


def test_own_write_hook_arriving_before_the_push_is_recorded_does_not_undo_a_newer_tracker_change(
        ado: Setup) -> None:
    ado.configure(sync_status_reverse=True)
    ado.link_through_the_api()
    base = ado.rev()
    (resolve,) = ado.change(status="resolved")
    later: list[dict[str, Any]] = []
    answers: list[int] = []

    def hook_overtakes_the_answer(real: Callable[..., Any], *args: Any) -> Any:
        written = real(*args)
        # Before the push records what it wrote: the tracker user reopens the issue, then the
        # service hook of the push's own write (Active → Resolved) arrives.
        later.extend(tracker.change_from_tracker(ado.svc, ado.org_id, ado.group_id, {"status": "unresolved"}) or [])
        answers.append(ado.deliver(ado.hook(base + 1, "Active", "Resolved")))
        return written

    ado.sync(resolve, replace(ado.svc, ado=Intercepted(ado.svc.ado, update_work_item=hook_overtakes_the_answer)))

    assert answers == [200]
    state = ado.state()
    assert state.group.status == "unresolved", "the hook of our own write did not resolve the group again"
    assert state.group.status_source is None
    assert not [a for a in ado.svc.store.groups.activity(ado.org_id, ado.group_id)
                if a.data.get("provider_key") == "vsts"], "nothing was applied from Azure DevOps"

    (reopen,) = later
    ado.sandbox.reset_calls()
    ado.sync(reopen)

    assert ado.patches() == [[{"op": "test", "path": "/rev", "value": base + 1},
                              {"op": "replace", "path": "/fields/System.State", "value": "Active"}]]
    assert ado.work_item()["System.State"] == "Active" and ado.state().group.status == "unresolved"


def test_hook_of_a_person_s_edit_during_a_push_is_applied_not_taken_for_the_push(ado: Setup) -> None:
    """Same revision as the push would write, another value: a person's edit, applied to the group."""
    ado.configure(sync_status_reverse=True)
    ado.link_through_the_api()
    base = ado.rev()
    (resolve,) = ado.change(status="resolved")
    answers: list[int] = []

    def person_reopens_first(real: Callable[..., Any], *args: Any) -> Any:
        ado.sandbox.update_work_item(ado.org, int(ado.key), state="New")  # revision base + 1
        answers.append(ado.deliver(ado.hook(base + 1, "Active", "New")))
        return real(*args)

    ado.sync(resolve, replace(ado.svc, ado=Intercepted(ado.svc.ado, update_work_item=person_reopens_first)))

    assert answers == [200]
    assert ado.work_item()["System.State"] == "New", "the person's edit was not overwritten"
    state = ado.state()
    assert state.group.status == "unresolved" and state.group.status_source == ado.account_id
    assert [c["status"] for c in ado.calls() if c["method"] == "PATCH"] == [412]


# --- assignee -------------------------------------------------------------------------------------


def test_assign_is_two_calls_cold_and_one_warm(ado: Setup) -> None:
    """Reference item 42: graph users, then one AssignedTo op (found on the first page)."""
    (message,) = ado.change(assignee="ann")
    ado.sync(message)

    assert [c["method"] for c in ado.calls()] == ["GET", "PATCH"]
    assert ado.calls()[0]["path"] == f"/{ado.org}/_apis/graph/users"
    assert ado.patches() == [[{"op": "add", "path": "/fields/System.AssignedTo", "value": "Ann.Smith@Example.com"}]]
    assert ado.work_item()["System.AssignedTo"] == "Ann Smith <Ann.Smith@Example.com>"
    assert ado.activity()[-1][0] == "outbound_assignee"

    rev = ado.rev()
    ado.sync(ado.change(assignee=None)[0])
    assert ado.patches() == [[{"op": "test", "path": "/rev", "value": rev},
                              {"op": "remove", "path": "/fields/System.AssignedTo"}]]
    assert "System.AssignedTo" not in ado.work_item()

    ado.sync(ado.change(assignee="ann")[0])
    assert [c["method"] for c in ado.calls()] == ["PATCH"]  # warm: the e-mail answer is cached
    assert ado.work_item()["System.AssignedTo"] == "Ann Smith <Ann.Smith@Example.com>"


def test_assign_pages_through_graph_users_until_the_match(ado: Setup) -> None:
    """Reference item 43: users, users?continuationToken=…, …, then PATCH."""
    ado.sync(ado.change(assignee="dee")[0])

    calls = ado.calls()
    assert [c["method"] for c in calls] == ["GET", "GET", "GET", "PATCH"]
    assert "continuationToken" not in calls[0]["query"]
    assert calls[1]["query"]["continuationToken"] and calls[2]["query"]["continuationToken"]
    assert ado.patches() == [[{"op": "add", "path": "/fields/System.AssignedTo", "value": "dee@example.com"}]]


def test_no_matching_ado_user_is_no_patch_and_an_activity(ado: Setup) -> None:
    ado.sync(ado.change(assignee="zed")[0])

    assert [c["method"] for c in ado.calls()] == ["GET", "GET", "GET"]
    assert ado.activity()[-1] == ("outbound_assignee_skipped", {
        "integration_id": ado.account_id, "key": ado.key, "assignee": "zed",
        "reason": "No matching Azure DevOps user found."})

    ado.sync(ado.change(assignee=None)[0])
    ado.sync(ado.change(assignee="zed")[0])
    assert [c["method"] for c in ado.calls()] == []  # the miss is cached too


def test_inbound_assignment_is_not_echoed(ado: Setup) -> None:
    (message,) = ado.change(assignee="ann")

    def from_ado(state: GroupState | None) -> GroupChange:
        assert state is not None
        return GroupChange(group=replace(state.group, assignee="dee", assignment_source=ado.account_id,
                                         version=state.group.version + 1))

    ado.svc.store.groups.change(ado.org_id, ado.group_id, from_ado)  # ADO assigned Dee meanwhile
    ado.sandbox.reset_calls()

    ado.sync(message)

    assert ado.calls() == []
    assert ado.activity() == []


# --- pure decisions -------------------------------------------------------------------------------


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
    plan = outbound.status_plan({"sync_status_forward": {"abc": {"on_resolve": "Done"}}}, link, group)
    assert plan.ops == [{"op": "replace", "path": "/fields/System.State", "value": "Done"}]
    assert plan.value == "Done"
    unmapped = outbound.status_plan({"sync_status_forward": True}, link, group)
    assert unmapped.ops is None and "on_resolve" in unmapped.detail["reason"]
