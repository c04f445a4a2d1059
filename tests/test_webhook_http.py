"""The service-hook receiver through the real decorated function, on Azurite."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import azure.functions as func
import pytest
from conftest import StubContext, load_fixture

from shared.compose import services
from shared.core.models import Group, Integration, Link, OrgLink, User
from shared.core.secrets import hash_secret
from shared.flows import states
from webhook_http import webhook_http

pytestmark = pytest.mark.usefixtures("azurite")

SECRET = "s3cr3t-" + "a" * 57
DONE = ["Closed", "Resolved"]
FULL_SYNC = {"sync_status_reverse": True, "sync_reverse_assignment": True}


class World:
    """One integration, one organization, one group linked to work item 33 (and 31)."""

    def __init__(self, uid: str, config: dict[str, Any] | None = None) -> None:
        self.account = f"acc-{uid}"
        self.org = f"org-{uid}"
        self.group = "g1"
        self.project = "c0bf429a-c03c-4a99-9336-d45be74db5a6"
        services().store.integrations.save(
            Integration(
                account_id=self.account,
                account_name="acme",
                domain_name="https://acme.example/",
                secret_hash=hash_secret(SECRET),
            )
        )
        services().store.integrations.save_org_link(
            OrgLink(account_id=self.account, org_id=self.org, config=FULL_SYNC if config is None else config)
        )
        services().store.groups.put(Group(org_id=self.org, group_id=self.group, project_id="p1", title="Boom"))
        for key in ("33", "31"):
            services().store.groups.add_link(
                Link(
                    org_id=self.org,
                    group_id=self.group,
                    account_id=self.account,
                    key=key,
                    project_id=self.project,
                    work_item_type="Bug",
                )
            )
        # A warm cache: the done states of Bug in the fixture's project.
        services().store.cache.put(self.account, f"states|{self.project}|Bug", DONE, ttl=3600)
        states.forget()

    def payload(self, fixture: str, **changes: Any) -> dict[str, Any]:
        data = copy.deepcopy(load_fixture(fixture))
        data["resourceContainers"]["collection"]["id"] = self.account
        for key, value in changes.items():
            data["resource"][key] = value
        return data

    def group_state(self) -> dict[str, Any]:
        group = services().store.groups.get(self.org, self.group)
        assert group is not None
        kinds = [a.kind for a in services().store.groups.activity(self.org, self.group)]
        return {"status": group.status, "assignee": group.assignee, "activity": [k for k in kinds if k != "link"]}


def post(
    payload: Any,
    *,
    secret: str | None = SECRET,
    basic: bool = False,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> func.HttpResponse:
    all_headers = dict(headers or {})
    if secret is not None:
        if basic:
            all_headers["Authorization"] = "Basic " + base64.b64encode(f"ado:{secret}".encode()).decode()
        else:
            all_headers["shared-secret"] = secret
    body = raw if raw is not None else json.dumps(payload).encode()
    req = func.HttpRequest("POST", "http://localhost/api/vsts/issue-updated", headers=all_headers, body=body)
    return webhook_http(req, StubContext())


@pytest.fixture
def world(uid: str) -> World:
    return World(uid)


def test_resolves_on_done_state(world: World) -> None:
    response = post(world.payload("workitem-updated-state-active-to-resolved.json"))
    assert response.status_code == 200
    assert world.group_state() == {"status": "resolved", "assignee": None, "activity": ["set_resolved"]}


def test_basic_auth_password_is_accepted(world: World) -> None:
    response = post(world.payload("workitem-updated-state-active-to-resolved.json"), basic=True)
    assert response.status_code == 200
    assert world.group_state()["status"] == "resolved"


def test_unresolves_when_reopened(world: World) -> None:
    post(world.payload("workitem-updated-state-active-to-resolved.json"))
    response = post(world.payload("workitem-updated-state-resolved-to-active.json", rev=4))
    assert response.status_code == 200
    assert world.group_state()["status"] == "unresolved"
    assert world.group_state()["activity"] == ["set_resolved", "set_unresolved"]


def test_new_item_without_old_state_leaves_unresolved_group_alone(world: World) -> None:
    response = post(world.payload("workitem-updated-state-new-workitem-no-old-value.json"))
    assert response.status_code == 200
    assert world.group_state() == {"status": "unresolved", "assignee": None, "activity": []}


def test_assigns_member_with_verified_email(world: World) -> None:
    services().store.users.put(User(org_id=world.org, user_id="u-lauryn", emails=["LAURYN@sentry.io"], projects=["p1"]))
    response = post(world.payload("workitem-updated-assigned.json"))
    assert response.status_code == 200
    assert world.group_state() == {"status": "unresolved", "assignee": "u-lauryn", "activity": ["assigned"]}
    group = services().store.groups.get(world.org, world.group)
    assert group is not None and group.assignment_source == world.account


def test_assignee_outside_the_project_is_not_assigned_and_activity_says_why(world: World) -> None:
    services().store.users.put(
        User(org_id=world.org, user_id="u-lauryn", emails=["lauryn@sentry.io"], projects=["other"])
    )
    post(world.payload("workitem-updated-assigned.json"))
    state = world.group_state()
    assert state["assignee"] is None
    assert state["activity"] == ["assignee_not_synced"]


def test_unassigned_deassigns(world: World) -> None:
    services().store.users.put(User(org_id=world.org, user_id="u-lauryn", emails=["lauryn@sentry.io"], projects=["p1"]))
    post(world.payload("workitem-updated-assigned.json"))
    response = post(world.payload("workitem-updated-unassigned.json", rev=5))
    assert response.status_code == 200
    assert world.group_state()["assignee"] is None
    assert world.group_state()["activity"] == ["assigned", "unassigned"]


def test_identity_object_form_is_parsed(world: World) -> None:
    services().store.users.put(User(org_id=world.org, user_id="u-ann", emails=["ann@example.com"], projects=["p1"]))
    payload = world.payload("workitem-updated-assigned.json")
    payload["resource"]["fields"]["System.AssignedTo"]["newValue"] = {
        "displayName": "Ann",
        "uniqueName": "ann@example.com",
        "id": "x",
    }
    assert post(payload).status_code == 200
    assert world.group_state()["assignee"] == "u-ann"


def test_unparseable_assignee_changes_nothing(world: World) -> None:
    payload = world.payload("workitem-updated-assigned.json")
    payload["resource"]["fields"]["System.AssignedTo"]["newValue"] = "Just A Name"
    assert post(payload).status_code == 200
    assert world.group_state() == {"status": "unresolved", "assignee": None, "activity": []}


def test_sync_switched_off_changes_nothing(uid: str) -> None:
    world = World(uid, config={"sync_status_reverse": False, "sync_reverse_assignment": False})
    services().store.users.put(User(org_id=world.org, user_id="u-lauryn", emails=["lauryn@sentry.io"], projects=["p1"]))
    assert post(world.payload("workitem-updated-state-active-to-resolved.json")).status_code == 200
    assert post(world.payload("workitem-updated-assigned.json")).status_code == 200
    assert world.group_state() == {"status": "unresolved", "assignee": None, "activity": []}


def test_override_resolves_only_on_listed_states(uid: str) -> None:
    project = "c0bf429a-c03c-4a99-9336-d45be74db5a6"
    world = World(
        uid, config={**FULL_SYNC, "inbound_status": {project: {"resolve": ["Closed"], "unresolve": ["Active"]}}}
    )
    post(world.payload("workitem-updated-state-active-to-resolved.json"))
    assert world.group_state()["status"] == "unresolved", "Resolved is not a resolving state here"
    payload = world.payload("workitem-updated-state-active-to-resolved.json", rev=9)
    payload["resource"]["fields"]["System.State"] = {"oldValue": "Resolved", "newValue": "Closed"}
    post(payload)
    assert world.group_state()["status"] == "resolved"


def test_duplicate_delivery_applies_once(world: World) -> None:
    payload = world.payload("workitem-updated-state-active-to-resolved.json")
    assert post(payload).status_code == 200
    services().store.groups.change(world.org, world.group, lambda s: _set_status(s, "unresolved"))
    assert post(payload).status_code == 200
    assert world.group_state()["status"] == "unresolved", "a redelivery must not apply again"
    assert post(payload).status_code == 200
    assert world.group_state()["status"] == "unresolved"
    assert world.group_state()["activity"] == ["set_resolved"]


def _set_status(state: Any, status: str) -> Any:
    from dataclasses import replace

    from shared.core.models import GroupChange

    return GroupChange(group=replace(state.group, status=status, version=state.group.version + 1))


def test_older_revision_changes_nothing(world: World) -> None:
    post(world.payload("workitem-updated-state-resolved-to-active.json", rev=7))
    post(world.payload("workitem-updated-state-active-to-resolved.json", rev=6))
    assert world.group_state() == {"status": "unresolved", "assignee": None, "activity": []}


@pytest.mark.parametrize("secret", [None, "", "wrong-secret"])
def test_bad_or_missing_secret_is_401_and_changes_nothing(world: World, secret: str | None) -> None:
    response = post(world.payload("workitem-updated-state-active-to-resolved.json"), secret=secret)
    assert response.status_code == 401
    assert world.group_state() == {"status": "unresolved", "assignee": None, "activity": []}


@pytest.mark.parametrize("authorization", ["Basic éééé", "Basic !!!", "Basic " + "QQ" * 3, "Bearer x", "Basic"])
def test_malformed_basic_auth_is_401_not_500(world: World, authorization: str) -> None:
    response = post(
        world.payload("workitem-updated-state-active-to-resolved.json"),
        secret=None,
        headers={"Authorization": authorization},
    )
    assert response.status_code == 401


def test_right_header_secret_wins_over_a_wrong_basic_password(world: World) -> None:
    wrong = "Basic " + base64.b64encode(b"ado:not-the-secret").decode()
    response = post(world.payload("workitem-updated-state-active-to-resolved.json"), headers={"Authorization": wrong})
    assert response.status_code == 200
    assert world.group_state()["status"] == "resolved"


def test_integration_without_stored_secret_fails_closed(world: World) -> None:
    services().store.integrations.update(world.account, lambda i: Integration(**{**i.__dict__, "secret_hash": None}))
    response = post(world.payload("workitem-updated-state-active-to-resolved.json"))
    assert response.status_code == 401
    assert world.group_state()["status"] == "unresolved"


def test_unknown_collection_is_400_with_detail(world: World) -> None:
    payload = load_fixture("workitem-updated-unknown-collection.json")
    response = post(payload)
    assert response.status_code == 400
    assert json.loads(response.get_body()) == {"detail": "Integration does not exist."}


def test_inactive_integration_is_400(world: World) -> None:
    services().store.integrations.update(world.account, lambda i: Integration(**{**i.__dict__, "status": "disabled"}))
    response = post(world.payload("workitem-updated-state-active-to-resolved.json"))
    assert response.status_code == 400
    assert world.group_state()["status"] == "unresolved"


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b"{}",
        b'{"eventType": "workitem.updated"}',
        b'{"eventType": 5, "resourceContainers": {"collection": {"id": "x"}}}',
        b"\xff\xfe",
        b'{"resourceContainers": {"collection": {"id": "x"}}}',
    ],
)
def test_malformed_bodies_are_400(raw: bytes) -> None:
    assert post(None, raw=raw).status_code == 400


def test_oversized_body_is_413() -> None:
    assert post(None, raw=b"{" + b" " * (2 * 1024 * 1024) + b"}").status_code == 413


def test_other_event_types_are_ignored_with_200(world: World) -> None:
    payload = world.payload("workitem-updated-state-active-to-resolved.json")
    payload["eventType"] = "git.push"  # workitem.commented is handled (comment sync)
    assert post(payload, secret=None).status_code == 200
    assert world.group_state()["status"] == "unresolved"


def test_cold_cache_with_unreadable_states_changes_nothing_and_asks_for_retry(world: World) -> None:
    # The identity is missing, so the states cannot be read: never guess, answer 503.
    services().store.cache.put(world.account, "states|c0bf429a-c03c-4a99-9336-d45be74db5a6|Bug", [], ttl=-1)
    states.forget()
    payload = world.payload("workitem-updated-state-active-to-resolved.json")
    response = post(payload)
    assert response.status_code == 503
    assert world.group_state() == {"status": "unresolved", "assignee": None, "activity": []}
    # The failed delivery was released: once states are readable, ADO's retry is applied.
    services().store.cache.put(world.account, "states|c0bf429a-c03c-4a99-9336-d45be74db5a6|Bug", DONE, ttl=3600)
    assert post(payload).status_code == 200
    assert world.group_state()["status"] == "resolved"


def test_last_delivery_is_recorded(world: World) -> None:
    post(world.payload("workitem-updated-state-active-to-resolved.json"))
    integration = services().store.integrations.get(world.account)
    assert integration is not None and integration.last_delivery is not None


def test_redelivery_of_the_same_change_with_new_envelope_ids_changes_nothing(world: World) -> None:
    payload = world.payload("workitem-updated-state-active-to-resolved.json", rev=4)
    assert post(payload).status_code == 200
    services().store.groups.change(world.org, world.group, lambda s: _set_status(s, "unresolved"))
    payload["id"], payload["notificationId"] = "another-event-id", 99  # a resend, re-serialised
    assert post(payload).status_code == 200
    assert world.group_state()["status"] == "unresolved"


def test_two_different_changes_at_one_revision_both_apply(world: World) -> None:
    # Two events sharing a revision number (as the sample payloads do): the second is not a copy.
    post(world.payload("workitem-updated-state-active-to-resolved.json"))
    post(world.payload("workitem-updated-state-resolved-to-active.json"))
    assert world.group_state()["activity"] == ["set_resolved", "set_unresolved"]


def test_event_of_a_revision_the_bundle_wrote_is_not_applied_back(world: World) -> None:
    from shared.core import sync

    # Outbound sync wrote State=Resolved to the work item at rev 4 (recorded on the link) ...
    def record_push(state: Any) -> Any:
        from shared.core.models import GroupChange

        link = state.links[(world.account, "33")]
        return GroupChange(links=[sync.pushed(link, "state", 4, "Resolved")])

    services().store.groups.change(world.org, world.group, record_push)
    # ... the tracker has since unresolved; the late service hook of our own write must not undo it.
    assert post(world.payload("workitem-updated-state-active-to-resolved.json", rev=4)).status_code == 200
    assert world.group_state()["status"] == "unresolved"
    # A person's later change in Azure DevOps is applied.
    assert post(world.payload("workitem-updated-state-active-to-resolved.json", rev=5)).status_code == 200
    assert world.group_state()["status"] == "resolved"
