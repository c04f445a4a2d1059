"""Reconciliation against the HTTPS sandbox ADO and Azurite: what the service hook never delivered is
applied, what never reached Azure DevOps is queued, and a second pass changes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from shared.compose import Services
from shared.core import outbound
from shared.core.errors import AdoServerError, TransientError
from shared.core.models import Group, GroupState, Identity, Integration, OrgLink, User
from shared.core.secrets import hash_secret
from shared.flows import inbound, install, lifecycle, reconcile, tracker, workitems
from shared.flows import outbound as outbound_flow

SECRET = "reconcile-secret-" + "c" * 47
WEBHOOK = "https://sync.example.test/api/vsts/issue-updated"


@dataclass
class World:
    svc: Services  # records what it queues
    sandbox: Any
    org: str
    account_id: str
    org_id: str
    key: str

    def integration(self) -> Integration:
        found = self.svc.store.integrations.get(self.account_id)
        assert found is not None
        return found

    def reconcile(self) -> reconcile.Result:
        state = self.svc.store.integrations.read(self.account_id)
        assert state.integration is not None
        return reconcile.reconcile(self.svc, state.integration, state.links)

    def group(self) -> GroupState:
        state = self.svc.store.groups.read(self.org_id, "g1")
        assert state is not None
        return state

    def edit(self, **changes: Any) -> None:
        """A person's edit in Azure DevOps (the org has no hook: nothing is delivered)."""
        self.sandbox.update_work_item(self.org, int(self.key), **changes)

    def work_item(self) -> dict[str, Any]:
        return dict(self.sandbox.work_item(self.org, int(self.key))["fields"])

    def pushes_queued(self) -> list[dict[str, Any]]:
        messages = self.svc.send.messages(outbound.QUEUE)  # type: ignore[attr-defined]
        self.svc.send.sent.clear()  # type: ignore[attr-defined]
        return messages

    def wiql_calls(self) -> list[dict[str, Any]]:
        return [c for c in self.sandbox.calls if c["path"].startswith(f"/{self.org}/") and c["path"].endswith("/wiql")]


@pytest.fixture
def world(recording_svc: Services, sandbox_ado: Any, uid: str) -> World:
    svc, org = recording_svc, f"rc{uid}"
    account_id = sandbox_ado.add_organization(org)
    project_id = sandbox_ado.add_project(org, "Fabrikam")
    sandbox_ado.add_user(org, "Ann", "ann@example.com")
    token = sandbox_ado.issue_token(org)
    svc.store.integrations.save(Integration(account_id=account_id, account_name=org,
                                            domain_name=sandbox_ado.instance_url(org), secret_hash=hash_secret(SECRET)))
    svc.store.integrations.save_identity(account_id, Identity(kind="oauth", access_token=token["access_token"],
                                                              refresh_token=token["refresh_token"],
                                                              expires_at=token["expires_at"]))
    svc.store.integrations.save_org_link(OrgLink(account_id=account_id, org_id=uid, config={
        "sync_status_forward": {project_id: {"on_resolve": "Resolved", "on_unresolve": "Active"}},
        "sync_status_reverse": True, "sync_forward_assignment": True, "sync_reverse_assignment": True}))
    svc.store.users.put(User(org_id=uid, user_id="ann", emails=["ann@example.com"], projects=["p1"]))
    svc.store.groups.put(Group(org_id=uid, group_id="g1", project_id="p1", title="Boom"))
    item = sandbox_ado.create_work_item(org, "Fabrikam", title="Boom", state="Active")
    workitems.link_issue(svc, account_id, uid, {"group_id": "g1", "key": str(item["id"])})
    svc.send.sent.clear()  # type: ignore[attr-defined]
    return World(svc, sandbox_ado, org, account_id, uid, str(item["id"]))


def test_a_state_change_made_while_the_hook_was_away_is_applied(world: World) -> None:
    world.edit(state="Resolved", assigned_to="ann@example.com")

    result = world.reconcile()

    group = world.group().group
    assert (group.status, group.assignee) == ("resolved", "ann")
    assert result.repaired == 1
    assert world.integration().repaired == 1
    assert world.pushes_queued() == []  # a change from Azure DevOps is never pushed back


def test_an_unrelated_edit_does_not_revert_a_tracker_change_still_on_its_way(world: World) -> None:
    tracker.change_from_tracker(world.svc, world.org_id, "g1", {"status": "resolved"})
    world.pushes_queued()  # the push message is lost
    world.edit(title="Boom (edited)")

    world.reconcile()

    assert world.group().group.status == "resolved"
    (message,) = world.pushes_queued()  # the push that never happened is queued again
    outbound_flow.sync_work_item(world.svc, message)
    assert world.work_item()["System.State"] == "Resolved"


def test_a_second_pass_changes_nothing_and_the_watermark_moves(world: World) -> None:
    world.edit(state="Resolved")
    world.reconcile()
    first = world.integration().last_reconciled
    assert first is not None
    (query,) = [json.loads(c["body"])["query"] for c in world.wiql_calls()]
    assert "ChangedDate" not in query  # the first pass reads every linked work item
    world.sandbox.reset_calls()
    before = world.group()

    result = world.reconcile()

    assert result.repaired == 0 and world.integration().repaired == 0
    after = world.group()
    assert (after.group, after.links) == (before.group, before.links)
    (call,) = world.wiql_calls()
    assert call["query"]["timePrecision"] == "true"
    assert f"[System.Id] IN ({world.key})" in json.loads(call["body"])["query"]
    assert "[System.ChangedDate] > '" in json.loads(call["body"])["query"]
    second = world.integration().last_reconciled
    assert second is not None and second >= first


def test_a_tracker_change_pushed_meanwhile_is_not_reverted_by_the_old_revision(world: World) -> None:
    (message,) = tracker.change_from_tracker(world.svc, world.org_id, "g1", {"status": "resolved"}) or []
    outbound_flow.sync_work_item(world.svc, message)
    world.pushes_queued()

    world.reconcile()  # reads the work item at the revision the push wrote: nothing to apply or push

    assert world.group().group.status == "resolved"
    assert world.pushes_queued() == []
    assert world.work_item()["System.State"] == "Resolved"


def test_a_lost_delivery_before_a_delivered_one_does_not_leave_the_group_behind(world: World) -> None:
    world.edit(state="Resolved")  # its delivery is lost
    world.sandbox.hold_deliveries(world.org)
    world.sandbox.state.add_subscription(world.sandbox.state.org(world.org), {
        "publisherId": "tfs", "eventType": "workitem.updated", "resourceVersion": "1.0", "consumerId": "webHooks",
        "consumerActionId": "httpRequest",
        "consumerInputs": {"url": WEBHOOK, "basicAuthUsername": "", "basicAuthPassword": SECRET}})
    world.edit(state="Closed")  # delivered: Resolved → Closed, both done

    for delivery in world.sandbox.take_held_deliveries(world.org):
        body = json.dumps(delivery["payload"]).encode()
        assert inbound.handle(world.svc, body, {k.lower(): v for k, v in delivery["headers"].items()}).status == 200

    assert world.group().group.status == "resolved"
    world.sandbox.hold_deliveries(world.org, False)


# --- wired into the subscription check and the management API ---------------------------------


def _sub(world: World, status: str) -> None:
    created = world.sandbox.state.add_subscription(world.sandbox.state.org(world.org), {
        "publisherId": "tfs", "eventType": "workitem.updated", "resourceVersion": "1.0", "consumerId": "webHooks",
        "consumerActionId": "httpRequest", "consumerInputs": {"url": WEBHOOK}})
    world.sandbox.set_subscription_status(world.org, created.data["id"], status)
    world.svc.store.integrations.update(world.account_id, lambda cur: replace(
        cur, subscription_id=created.data["id"], subscription_status=status))


def _check(world: World, svc: Services | None = None) -> None:
    lifecycle.check_subscription(svc or world.svc, {"integration_id": world.account_id,
                                                    "organization_id": world.org_id})


def test_every_subscription_check_reconciles(world: World, env: pytest.MonkeyPatch) -> None:
    env.setenv("WEBHOOK_URL", WEBHOOK)
    _sub(world, "enabled")
    world.edit(state="Resolved")

    _check(world)

    assert world.group().group.status == "resolved"
    integration = world.integration()
    assert integration.last_checked is not None and integration.last_reconciled is not None
    assert integration.repaired == 1


def test_a_repaired_hook_is_followed_by_a_pass(world: World, env: pytest.MonkeyPatch) -> None:
    env.setenv("WEBHOOK_URL", WEBHOOK)
    _sub(world, "disabledBySystem")  # everything in between was never delivered
    world.edit(state="Resolved")

    _check(world)

    integration = world.integration()
    assert integration.subscription_status == "enabled" and integration.problem is None
    assert world.group().group.status == "resolved"


def test_a_hook_a_person_disabled_pauses_reconciliation_too(world: World, env: pytest.MonkeyPatch) -> None:
    env.setenv("WEBHOOK_URL", WEBHOOK)
    _sub(world, "disabledByUser")
    world.edit(state="Resolved")

    _check(world)

    assert world.group().group.status == "unresolved"
    assert world.integration().last_reconciled is None


class FailingWiql:
    """An ADO connector whose WIQL queries fail with `error`."""

    def __init__(self, connector: Callable[[Integration], Any], error: Exception) -> None:
        self._connector, self._error = connector, error

    def __call__(self, integration: Integration) -> Any:
        client = self._connector(integration)

        def fail(*args: Any, **kwargs: Any) -> Any:
            raise self._error

        client.query_ids_as_of = fail
        return client


def test_a_failed_pass_keeps_the_check_and_the_message_comes_back(world: World, env: pytest.MonkeyPatch) -> None:
    env.setenv("WEBHOOK_URL", WEBHOOK)
    _sub(world, "enabled")
    world.edit(state="Resolved")
    failing = replace(world.svc, ado=FailingWiql(world.svc.ado, AdoServerError("HTTP 500", http_status=500)))

    with pytest.raises(TransientError):  # the queue retries the message after its visibility timeout
        _check(world, failing)

    integration = world.integration()
    assert integration.last_checked is not None and integration.subscription_status == "enabled"
    assert integration.last_reconciled is None
    assert world.group().group.status == "unresolved"
    _check(world)  # the retry
    assert world.group().group.status == "resolved"


def test_post_reconcile_queues_one_check_and_the_view_shows_the_last_pass(world: World) -> None:
    reply = lifecycle.request_reconcile(world.svc, world.account_id)

    assert reply.status == 202
    (message,) = world.svc.send.messages(lifecycle.QUEUE)  # type: ignore[attr-defined]
    assert message == {"integration_id": world.account_id, "organization_id": world.org_id}
    view = install.integration_view(world.svc, world.account_id).body
    assert (view["last_reconciled"], view["repaired"]) == (None, 0)
    world.edit(state="Resolved")
    world.reconcile()
    view = install.integration_view(world.svc, world.account_id).body
    assert view["last_reconciled"].endswith("Z") and view["repaired"] == 1


def test_post_reconcile_of_an_unknown_integration_is_404(world: World) -> None:
    from shared.core.errors import NotFound

    with pytest.raises(NotFound):
        lifecycle.request_reconcile(world.svc, "no-such-account")
    assert world.svc.send.sent == []  # type: ignore[attr-defined]


def test_the_route_answers_202_and_checks_the_key_and_the_integration(world: World, env: pytest.MonkeyPatch) -> None:
    import azure.functions as func
    from conftest import StubContext

    from manage_http.reconcile_routes import manage_integration_reconcile

    env.setenv("MANAGE_API_KEY", "reconcile-key-0123456789")

    def post(account_id: str, key: str | None = "reconcile-key-0123456789") -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        request = func.HttpRequest("POST", f"http://localhost/api/manage/integrations/{account_id}/reconcile",
                                   headers=headers, route_params={"account_id": account_id}, body=b"")
        response = manage_integration_reconcile(request, StubContext())
        return response.status_code, json.loads(response.get_body() or b"null")

    assert post(world.account_id, key=None)[0] == 401
    assert post("no-such-account")[0] == 404
    status, body = post(world.account_id)
    assert status == 202
    assert body["queued"] == {"queue": "subscription-check", "integration_id": world.account_id,
                              "organization_id": world.org_id}
    world.svc.store.integrations.save_org_link(OrgLink(account_id=world.account_id, org_id=world.org_id,
                                                       status="disabled"))
    assert post(world.account_id)[0] == 409  # no active organization link: nothing to reconcile
