"""The `workitem.commented` service hook: created, repaired and removed with `sync_comments`."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import RecordingSend

from shared import compose
from shared.compose import Services
from shared.core import secrets
from shared.core.models import Integration
from shared.flows import install, lifecycle

pytestmark = pytest.mark.usefixtures("azurite")

WEBHOOK = "https://sync.example.test/api/vsts/issue-updated"


class Org:
    def __init__(self, sandbox: Any, uid: str) -> None:
        self.sandbox = sandbox
        self.name = f"ch{uid}"
        self.account_id = sandbox.add_organization(self.name, f"acct-ch-{uid}")
        self.pat = sandbox.add_pat(self.name)
        self.org_id = f"tracker-{uid}"
        self.svc: Services = compose.build(send=RecordingSend())

    def install(self, **config: Any) -> dict[str, Any]:
        body = {"account_name": self.name, "organization_id": self.org_id,
                "identity": {"kind": "pat", "access_token": self.pat}, "config": config}
        return dict(install.install(self.svc, self.account_id, body).body)

    def hooks(self) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for hook in self.sandbox.subscriptions(self.name):
            found.setdefault(hook["eventType"], []).append(hook)
        return found

    def integration(self) -> Integration:
        found = self.svc.store.integrations.get(self.account_id)
        assert found is not None
        return found

    def configure(self, **config: Any) -> list[dict[str, Any]]:
        """PUT .../config; returns the subscription checks it queued (and runs them)."""
        sent: RecordingSend = self.svc.send  # type: ignore[assignment]
        sent.sent.clear()
        install.put_org_config(self.svc, self.account_id, self.org_id, config)
        checks = sent.messages(lifecycle.QUEUE)
        for message in checks:
            lifecycle.check_subscription(self.svc, message)
        return checks

    def check(self) -> None:
        lifecycle.check_subscription(self.svc, {"integration_id": self.account_id, "organization_id": self.org_id})


@pytest.fixture
def org(sandbox_ado: Any, env: pytest.MonkeyPatch, uid: str) -> Org:
    env.setenv("WEBHOOK_URL", WEBHOOK)
    return Org(sandbox_ado, uid)


def test_install_with_comment_sync_creates_a_second_hook_with_its_own_secret(org: Org) -> None:
    view = org.install(sync_comments=True)

    hooks = org.hooks()
    (updated,), (commented,) = hooks["workitem.updated"], hooks["workitem.commented"]
    assert commented["consumerInputs"]["url"] == updated["consumerInputs"]["url"] == WEBHOOK
    assert commented["publisherInputs"].get("commentPattern", "") == ""
    integration = org.integration()
    assert integration.comment_subscription_id == commented["id"]
    assert secrets.matches(commented["consumerInputs"]["basicAuthPassword"], integration.comment_secret_hash)
    assert not secrets.matches(commented["consumerInputs"]["basicAuthPassword"], integration.secret_hash)
    assert view["comment_subscription"] == {"id": commented["id"], "status": "enabled"}
    assert "comment_secret_hash" not in str(view)

    org.install(sync_comments=True)  # a re-install keeps both healthy hooks
    assert {k: [h["id"] for h in v] for k, v in org.hooks().items()} == {
        "workitem.updated": [updated["id"]], "workitem.commented": [commented["id"]]}


def test_the_comment_hook_follows_the_config(org: Org) -> None:
    org.install()
    assert list(org.hooks()) == ["workitem.updated"]
    assert org.configure(sync_status_reverse=True) == []  # no change of sync_comments: no check

    assert len(org.configure(sync_comments=True)) == 1
    (commented,) = org.hooks()["workitem.commented"]
    assert org.integration().comment_subscription_id == commented["id"]

    assert len(org.configure(sync_comments=False)) == 1
    assert list(org.hooks()) == ["workitem.updated"]
    integration = org.integration()
    assert (integration.comment_subscription_id, integration.comment_secret_hash) == (None, None)


@pytest.mark.parametrize("status", ["disabledBySystem", "onProbation", "missing"])
def test_the_check_replaces_a_broken_comment_hook(org: Org, status: str) -> None:
    org.install(sync_comments=True)
    before = org.integration()
    (updated,) = org.hooks()["workitem.updated"]
    if status == "missing":
        org.sandbox.state.org(org.name).subscriptions.pop(before.comment_subscription_id)
    else:
        org.sandbox.set_subscription_status(org.name, before.comment_subscription_id, status)

    org.check()

    hooks = org.hooks()
    (commented,) = hooks["workitem.commented"]
    after = org.integration()
    assert commented["id"] != before.comment_subscription_id and commented["status"] == "enabled"
    assert after.comment_subscription_id == commented["id"] and after.comment_secret_hash != before.comment_secret_hash
    assert hooks["workitem.updated"] == [updated] and after.secret_hash == before.secret_hash


def test_the_check_leaves_a_comment_hook_disabled_by_a_user(org: Org) -> None:
    org.install(sync_comments=True)
    before = org.integration()
    org.sandbox.set_subscription_status(org.name, before.comment_subscription_id, "disabledByUser")

    org.check()

    (commented,) = org.hooks()["workitem.commented"]
    assert commented["id"] == before.comment_subscription_id and commented["status"] == "disabledByUser"
    assert org.integration().comment_subscription_status == "disabledByUser"
