"""Uninstall, unlink an organization and unlink a work item, against Azurite and the sandbox Azure DevOps."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, replace
from typing import Any

import pytest
from conftest import RecordingSend, load_fixture

from shared.adapters import integrations, storage
from shared.adapters.ado_auth import PatAuth
from shared.adapters.ado_client import AdoClient
from shared.compose import Services
from shared.core import kickoff
from shared.core.errors import InvalidInput, NotFound
from shared.core.hooks import hook_body
from shared.core.models import Group, GroupChange, Identity, Link, Push
from shared.flows import inbound, install, lifecycle, uninstall, unlink

pytestmark = pytest.mark.usefixtures("azurite")

WEBHOOK = "https://sync.example.test/api/vsts/issue-updated"


@dataclass
class World:
    sandbox: Any
    name: str
    account_id: str
    project_id: str
    pat: str
    org_id: str

    def body(self) -> dict[str, Any]:
        return {"account_name": self.name, "organization_id": self.org_id,
                "identity": {"kind": "pat", "access_token": self.pat}}

    def client(self) -> AdoClient:
        return AdoClient(base_url=self.sandbox.instance_url(self.name), auth=PatAuth(self.pat))

    def hook_ids(self) -> set[str]:
        return {hook["id"] for hook in self.sandbox.subscriptions(self.name)}


@pytest.fixture
def world(sandbox_ado: Any, env: pytest.MonkeyPatch, uid: str) -> World:
    env.setenv("WEBHOOK_URL", WEBHOOK)
    name = f"un{uid}"
    account_id = sandbox_ado.add_organization(name, f"acct-{uid}")
    project_id = sandbox_ado.add_project(name, "Web")
    return World(sandbox_ado, name, account_id, project_id, sandbox_ado.add_pat(name), f"tracker-{uid}")


@pytest.fixture
def installed(recording_svc: Services, world: World) -> World:
    assert install.install(recording_svc, world.account_id, world.body()).status == 200
    return world


def link_group(svc: Services, world: World, group_id: str = "g1") -> str:
    """A group linked to a new sandbox work item; its key."""
    item = world.sandbox.create_work_item(world.name, "Web", "Bug", title="Boom")
    key = str(item["id"])
    svc.store.groups.put(Group(org_id=world.org_id, group_id=group_id, project_id="p1", title="Boom <b>"))
    svc.store.groups.add_link(Link(org_id=world.org_id, group_id=group_id, account_id=world.account_id, key=key,
                                   url=f"https://example.test/{key}", project_id=world.project_id))
    return key


def delivery(world: World, key: str) -> bytes:
    data = copy.deepcopy(load_fixture("workitem-updated-state-active-to-resolved.json"))
    data["resourceContainers"]["collection"]["id"] = world.account_id
    data["resource"]["workItemId"] = int(key)
    return json.dumps(data).encode()


# --- uninstall -----------------------------------------------------------------------------------


def test_uninstall_deletes_our_hooks_and_the_credential_and_keeps_history(recording_svc: Services,
                                                                          installed: World) -> None:
    svc, world = recording_svc, installed
    key = link_group(svc, world)
    stored = svc.store.integrations.get(world.account_id)
    assert stored is not None and stored.subscription_id
    stray = world.client().create_subscription(hook_body(WEBHOOK, "left-by-a-timeout"))["id"]
    other = world.client().create_subscription(hook_body("https://elsewhere.example.test/h", "x"))["id"]

    reply = uninstall.uninstall(svc, world.account_id)

    assert reply.status == 200
    report = reply.body["uninstall"]
    assert set(report["service_hooks_deleted"]) == {stored.subscription_id, stray}
    assert report["service_hooks_failed"] == [] and report["credential_deleted"] and report["complete"]
    assert world.hook_ids() == {other}
    assert reply.body["status"] == "disabled" and reply.body["subscription"]["id"] is None
    assert svc.store.integrations.load_identity(world.account_id) is None
    assert world.pat not in json.dumps(reply.body)
    # Links, history and the organization stay readable.
    state = svc.store.groups.read(world.org_id, "g1")
    assert state is not None and (world.account_id, key) in state.links
    assert install.integration_view(svc, world.account_id).body["organizations"][0]["organization_id"] == world.org_id
    # Nothing acts for it any more: no kickoff check, webhook deliveries refused.
    integration = svc.store.integrations.get(world.account_id)
    link = svc.store.integrations.get_org_link(world.account_id, world.org_id)
    assert integration is not None and link is not None
    assert not kickoff.due(integration, link, now=4e9)
    assert inbound.handle(svc, delivery(world, key), {"shared-secret": "anything"}).status == 400


def test_uninstall_twice_answers_the_same_view_and_deletes_nothing_more(recording_svc: Services,
                                                                        installed: World) -> None:
    first = uninstall.uninstall(recording_svc, installed.account_id).body
    installed.sandbox.reset_calls()
    again = uninstall.uninstall(recording_svc, installed.account_id).body

    assert installed.sandbox.calls == []
    assert {k: v for k, v in again.items() if k != "uninstall"} == {k: v for k, v in first.items() if k != "uninstall"}
    assert again["uninstall"] == {"service_hooks_deleted": [], "service_hooks_failed": [], "credential_deleted": True,
                                  "complete": True}


def test_reinstall_after_uninstall_creates_a_new_hook(recording_svc: Services, installed: World) -> None:
    uninstall.uninstall(recording_svc, installed.account_id)

    view = install.install(recording_svc, installed.account_id, installed.body()).body

    assert view["status"] == "active"
    assert installed.hook_ids() == {view["subscription"]["id"]}
    assert recording_svc.store.integrations.load_identity(installed.account_id) is not None


def test_uninstall_while_ado_fails_keeps_the_credential_for_a_retry(recording_svc: Services, installed: World) -> None:
    svc, world = recording_svc, installed
    integration = svc.store.integrations.get(world.account_id)
    assert integration is not None and integration.subscription_id
    hook_path = f"/_apis/hooks/subscriptions/{integration.subscription_id}"
    world.sandbox.inject_fault("503", times=50, path_contains=hook_path)
    try:
        report = uninstall.uninstall(svc, world.account_id).body["uninstall"]
    finally:
        world.sandbox.clear_faults()

    assert [f["id"] for f in report["service_hooks_failed"]] == [integration.subscription_id]
    assert not report["credential_deleted"] and not report["complete"]
    assert svc.store.integrations.get(world.account_id).status == "disabled"  # type: ignore[union-attr]
    assert world.hook_ids() == {integration.subscription_id}

    retried = uninstall.uninstall(svc, world.account_id).body["uninstall"]

    assert retried["service_hooks_deleted"] == [integration.subscription_id] and retried["complete"]
    assert world.hook_ids() == set()
    assert svc.store.integrations.load_identity(world.account_id) is None


def test_a_refused_credential_is_deleted_and_the_hook_reported(recording_svc: Services, installed: World) -> None:
    svc, world = recording_svc, installed
    svc.store.integrations.save_identity(world.account_id, Identity(kind="pat", access_token="revoked-pat"))

    report = uninstall.uninstall(svc, world.account_id).body["uninstall"]

    assert len(report["service_hooks_failed"]) >= 1 and report["credential_deleted"]
    assert not report["complete"]
    assert svc.store.integrations.load_identity(world.account_id) is None
    assert "revoked-pat" not in json.dumps(report)


def test_a_check_that_was_running_during_the_uninstall_leaves_no_hook(recording_svc: Services,
                                                                     installed: World) -> None:
    svc, world = recording_svc, installed
    seen_active = svc.store.integrations.get(world.account_id)  # what a subscription check read just before
    assert seen_active is not None and seen_active.subscription_id
    # The uninstall has disabled the integration and is deleting its hook in Azure DevOps...
    svc.store.integrations.update(world.account_id, lambda current: replace(current, status="disabled"))

    # ...while the check, finding that hook gone, creates a new one: it must not keep it.
    lifecycle._replace(svc, seen_active, world.client(), "missing", now=time.time(), org_id=world.org_id,
                       orgs=[world.org_id])

    assert world.hook_ids() == {seen_active.subscription_id}
    assert svc.store.integrations.get(world.account_id).subscription_id == seen_active.subscription_id  # type: ignore[union-attr]
    assert uninstall.uninstall(svc, world.account_id).body["uninstall"]["complete"]
    assert world.hook_ids() == set()


def test_a_credential_that_cannot_be_opened_is_deleted(recording_svc: Services, installed: World) -> None:
    svc, world = recording_svc, installed
    table = storage.table(integrations.TABLE)
    row = table.get_entity(world.account_id, "identity")
    table.upsert_entity({**row, "sealed": row["sealed"][:-12] + "A" * 12})  # sealed under no key we hold

    report = uninstall.uninstall(svc, world.account_id).body["uninstall"]

    assert report["credential_deleted"] and report["service_hooks_failed"] and not report["complete"]
    assert [e for e in table.query_entities("PartitionKey eq @pk and RowKey eq 'identity'",
                                            parameters={"pk": world.account_id})] == []


def test_uninstall_of_an_unknown_integration_is_404_and_writes_nothing(recording_svc: Services, uid: str) -> None:
    with pytest.raises(NotFound):
        uninstall.uninstall(recording_svc, f"nobody-{uid}")
    assert list(storage.table(integrations.TABLE).query_entities(
        "PartitionKey eq @pk", parameters={"pk": f"nobody-{uid}"})) == []


# --- unlink an organization ------------------------------------------------------------------------


def test_unlink_organization_makes_the_link_inactive_and_install_reactivates_it(recording_svc: Services,
                                                                               installed: World) -> None:
    svc, world = recording_svc, installed
    key = link_group(svc, world)

    first = uninstall.unlink_organization(svc, world.account_id, world.org_id)
    again = uninstall.unlink_organization(svc, world.account_id, world.org_id)

    assert first.status == again.status == 200
    assert first.body == again.body == {"organization_id": world.org_id, "status": "inactive", "config": {}}
    integration = svc.store.integrations.get(world.account_id)
    link = svc.store.integrations.get_org_link(world.account_id, world.org_id)
    assert integration is not None and link is not None and not kickoff.due(integration, link, now=4e9)
    state = svc.store.groups.read(world.org_id, "g1")
    assert state is not None and (world.account_id, key) in state.links

    install.install(svc, world.account_id, world.body())
    assert svc.store.integrations.get_org_link(world.account_id, world.org_id).status == "active"  # type: ignore[union-attr]


def test_unlink_of_an_unknown_organization_is_404(recording_svc: Services, installed: World) -> None:
    with pytest.raises(NotFound):
        uninstall.unlink_organization(recording_svc, installed.account_id, "someone-else")


# --- unlink a work item ----------------------------------------------------------------------------


def index_rows(world: World, key: str) -> list[str]:
    return [e["RowKey"] for e in storage.table(integrations.TABLE).query_entities(
        "PartitionKey eq @pk", parameters={"pk": world.account_id}) if e["RowKey"].startswith(f"wi|{key}|")]


def test_unlink_removes_link_index_and_pushes_with_an_event(recording_svc: Services, installed: World) -> None:
    svc, world = recording_svc, installed
    key = link_group(svc, world)
    push = Push(account_id=world.account_id, key=key, kind="status", pushed=1)
    svc.store.groups.change(world.org_id, "g1", lambda state: GroupChange(pushes=[push]))
    assert index_rows(world, key)
    svc.send.sent.clear()  # type: ignore[attr-defined]

    reply = unlink.unlink_work_item(svc, world.org_id, "g1", world.account_id, key)

    assert reply.body == {"org_id": world.org_id, "group_id": "g1", "account_id": world.account_id, "key": key,
                          "removed": True, "comment": None}
    state = svc.store.groups.read(world.org_id, "g1")
    assert state is not None and state.links == {} and state.pushes == {}
    assert index_rows(world, key) == []
    assert svc.store.groups.activity(world.org_id, "g1")[-1].kind == "unlink"
    [(event, _)] = [(e, t) for e, t in svc.store.groups.outbox(world.org_id, "g1") if e.type == "group.unlinked"]
    assert event.data["work_item"] == key and event.data["source"] == "tracker"
    assert isinstance(svc.send, RecordingSend)
    assert svc.send.messages("tracker-events") == [{"organization_id": world.org_id, "group_id": "g1"}]
    assert world.sandbox.work_item(world.name, int(key))["id"] == int(key)  # the work item itself stays


def test_unlink_twice_is_harmless_and_tells_nothing_was_removed(recording_svc: Services, installed: World) -> None:
    svc, world = recording_svc, installed
    key = link_group(svc, world)
    unlink.unlink_work_item(svc, world.org_id, "g1", world.account_id, key)
    events_before = svc.store.groups.outbox(world.org_id, "g1")

    again = unlink.unlink_work_item(svc, world.org_id, "g1", world.account_id, key, comment=True)

    assert again.body["removed"] is False and again.body["comment"] is None
    assert svc.store.groups.outbox(world.org_id, "g1") == events_before
    assert [a.kind for a in svc.store.groups.activity(world.org_id, "g1")].count("unlink") == 1


def test_unlink_a_dangling_index_row_is_cleaned_by_a_retry(recording_svc: Services, installed: World) -> None:
    svc, world = recording_svc, installed
    svc.store.groups.put(Group(org_id=world.org_id, group_id="g2", project_id="p1", title="Boom"))
    svc.store.integrations.index_link(world.account_id, "4242", world.org_id, "g2")  # a link that never finished

    assert unlink.unlink_work_item(svc, world.org_id, "g2", world.account_id, "4242").body["removed"] is False
    assert index_rows(world, "4242") == []


def test_unlink_with_a_comment_tells_the_work_item(recording_svc: Services, installed: World) -> None:
    svc, world = recording_svc, installed
    key = link_group(svc, world)

    reply = unlink.unlink_work_item(svc, world.org_id, "g1", world.account_id, key, comment=True)

    assert reply.body["comment"]["status"] == "added"
    calls = [c for c in world.sandbox.calls if c["method"] == "POST" and c["path"].endswith(f"/{key}/comments")]
    assert len(calls) == 1
    assert "Boom &lt;b&gt;" in json.dumps(calls[0]["body"]) and "g1" in json.dumps(calls[0]["body"])


def test_a_failed_comment_is_reported_and_the_link_still_goes(recording_svc: Services, installed: World) -> None:
    svc, world = recording_svc, installed
    key = link_group(svc, world)
    world.sandbox.inject_fault("500", times=10, path_contains="/comments")
    try:
        reply = unlink.unlink_work_item(svc, world.org_id, "g1", world.account_id, key, comment=True)
    finally:
        world.sandbox.clear_faults()

    assert reply.body["removed"] is True and reply.body["comment"]["status"] == "failed"
    state = svc.store.groups.read(world.org_id, "g1")
    assert state is not None and state.links == {}


def test_unlink_on_an_unknown_group_is_404(recording_svc: Services, uid: str) -> None:
    with pytest.raises(NotFound):
        unlink.unlink_work_item(recording_svc, f"o{uid}", "nope", "acct", "1")


@pytest.mark.parametrize(("query", "body", "expected"), [
    ({}, {}, False),
    ({"comment": "true"}, {}, True),
    ({"comment": "False"}, {}, False),
    ({}, {"comment": True}, True),
    ({}, {"comment": None}, False),
])
def test_the_comment_option(query: dict[str, str], body: dict[str, Any], expected: bool) -> None:
    assert unlink.wants_comment(query, body) is expected


@pytest.mark.parametrize(("query", "body"), [
    ({"comment": "maybe"}, {}),
    ({}, {"comment": "yes"}),
    ({}, {"comment": True, "force": True}),
])
def test_a_bad_comment_option_is_400(query: dict[str, str], body: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        unlink.wants_comment(query, body)
