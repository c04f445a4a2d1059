"""Kickoff and subscription check against Azurite and the sandbox ADO."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace
from typing import Any

import pytest
from azure.functions.queue import QueueMessage
from conftest import StubContext, drain

from migrate_queue import subscription_check
from shared.adapters import storage, store
from shared.adapters.ado_auth import PatAuth
from shared.adapters.ado_client import AdoClient
from shared.core import secrets
from shared.core.errors import AdoServerError, StorageUnavailable
from shared.core.models import Identity, Integration, OrgLink
from shared.flows import install, lifecycle

pytestmark = pytest.mark.usefixtures("azurite")

WEBHOOK = "https://sync.example.test/api/vsts/issue-updated"
HOUR = 3600.0


def future_now(uid: str) -> float:
    """A 'now' in a six-hour slot of its own, so kickoff progress rows of tests never collide."""
    return time.time() + lifecycle.SLOT * (1000 + int(uid[:8], 16) % 1_000_000)


def seed(account_id: str, *, last_checked: float | None, subscription_id: str | None = "sub",
         status: str = "active", links: tuple[str, ...] = ("o1",), link_status: str = "active") -> None:
    store.save_integration(Integration(account_id=account_id, account_name="n", domain_name="https://x/",
                                       status=status, subscription_id=subscription_id, secret_hash="h",
                                       last_checked=last_checked))
    for org_id in links:
        store.save_org_link(OrgLink(account_id=account_id, org_id=org_id, status=link_status))


def queued_for(prefix: str) -> list[tuple[str, str]]:
    return sorted((m["integration_id"], m["organization_id"]) for m in drain(lifecycle.QUEUE)
                  if str(m.get("integration_id", "")).startswith(prefix))


# --- kickoff -----------------------------------------------------------------------------------


def test_kickoff_queues_never_and_long_ago_checked_links_once_per_slot(uid: str) -> None:
    now = future_now(uid)
    drain(lifecycle.QUEUE)
    seed(f"{uid}-a", last_checked=None, links=("o1", "o2"))
    seed(f"{uid}-b", last_checked=now - 7 * HOUR)
    seed(f"{uid}-c", last_checked=now - 1 * HOUR)
    seed(f"{uid}-d", last_checked=None, subscription_id=None)
    seed(f"{uid}-e", last_checked=None, status="disabled")
    seed(f"{uid}-f", last_checked=None, link_status="disabled")
    store.save_identity(f"{uid}-a", Identity(kind="pat", access_token="never-queued"))

    lifecycle.kickoff(now=now)

    assert queued_for(uid) == [(f"{uid}-a", "o1"), (f"{uid}-a", "o2"), (f"{uid}-b", "o1")]
    lifecycle.kickoff(now=now + 60)  # a replayed / past-due run in the same slot
    assert queued_for(uid) == []
    lifecycle.kickoff(now=now + lifecycle.SLOT)  # the next slot: still never checked, so due again
    assert (f"{uid}-a", "o1") in queued_for(uid)


def test_kickoff_resumes_after_the_last_batch_sent(uid: str, monkeypatch: pytest.MonkeyPatch) -> None:
    now = future_now(uid)
    drain(lifecycle.QUEUE)
    for n in range(5):
        seed(f"{uid}-{n}", last_checked=None, links=("o1", "o2"))
    monkeypatch.setattr(lifecycle, "BATCH_ITEMS", 3)
    real_send = storage.send
    sent: list[int] = []

    def flaky_send(queue_name: str, message: dict[str, Any], *, delay: float | None = None) -> None:
        sent.append(1)
        if len(sent) == 3:
            raise StorageUnavailable("Storage answered 503")
        real_send(queue_name, message, delay=delay)

    monkeypatch.setattr(storage, "send", flaky_send)
    with pytest.raises(StorageUnavailable):
        lifecycle.kickoff(now=now)
    monkeypatch.setattr(storage, "send", real_send)

    lifecycle.kickoff(now=now + 30)

    queued = queued_for(uid)
    expected = sorted((f"{uid}-{n}", org) for n in range(5) for org in ("o1", "o2"))
    assert queued == expected  # each link exactly once, none lost, none repeated


def test_kickoff_batches_respect_the_queue_message_limit(uid: str, monkeypatch: pytest.MonkeyPatch) -> None:
    now = future_now(uid)
    long_org = "o" * 250
    for n in range(3):
        seed(f"{uid}-{n}", last_checked=None, links=tuple(f"{long_org[:240]}{i:03d}" for i in range(40)))
    sizes: list[int] = []
    real_send = storage.send

    def measuring_send(queue_name: str, message: dict[str, Any], *, delay: float | None = None) -> None:
        sizes.append(len(base64.b64encode(json.dumps(message).encode())))
        real_send(queue_name, message, delay=delay)

    monkeypatch.setattr(storage, "send", measuring_send)
    lifecycle.kickoff(now=now)

    assert len(queued_for(uid)) == 120
    assert max(sizes) < 64 * 1024


def test_batched_and_single_check_messages_are_both_handled(uid: str) -> None:
    seed(f"{uid}-x", last_checked=None, links=("o1",))
    # Unknown integrations are completed, known ones without identity get their problem recorded.
    single = json.dumps({"integration_id": f"{uid}-x", "organization_id": "o1"}).encode()
    batch = json.dumps({"items": [{"integration_id": f"{uid}-y", "organization_id": "o1"},
                                  {"integration_id": f"{uid}-x", "organization_id": "o1"}]}).encode()
    subscription_check(QueueMessage(body=single), StubContext())
    store.update_integration(f"{uid}-x", lambda i: replace(i, problem=None))
    subscription_check(QueueMessage(body=batch), StubContext())
    integration = store.get_integration(f"{uid}-x")
    assert integration is not None and integration.problem and "identity" in integration.problem.lower()


# --- subscription check ------------------------------------------------------------------------


@pytest.fixture
def org(sandbox_ado: Any, env: pytest.MonkeyPatch, uid: str) -> dict[str, Any]:
    env.setenv("WEBHOOK_URL", WEBHOOK)
    name = f"org{uid}"
    account_id = sandbox_ado.add_organization(name, f"acct-{uid}")
    pat = sandbox_ado.add_pat(name)
    install.install(account_id, {"account_name": name, "organization_id": f"tracker-{uid}",
                                 "identity": {"kind": "pat", "access_token": pat}})
    client = AdoClient(base_url=sandbox_ado.instance_url(name), auth=PatAuth(pat))
    return {"name": name, "account_id": account_id, "org_id": f"tracker-{uid}", "client": client,
            "sandbox": sandbox_ado}


def check(org: dict[str, Any]) -> None:
    lifecycle.check_subscription({"integration_id": org["account_id"], "organization_id": org["org_id"]})


def integration_of(org: dict[str, Any]) -> Integration:
    integration = store.get_integration(org["account_id"])
    assert integration is not None
    return integration


@pytest.mark.parametrize("status", ["onProbation", "disabledBySystem", "disabledByInactiveIdentity", "missing"])
def test_check_replaces_a_broken_hook_with_a_new_secret(org: dict[str, Any], status: str) -> None:
    sandbox = org["sandbox"]
    before = integration_of(org)
    if status == "missing":
        org["client"].delete_subscription(before.subscription_id)
    else:
        sandbox.set_subscription_status(org["name"], before.subscription_id, status)
    started = time.time()

    check(org)

    [hook] = sandbox.subscriptions(org["name"])
    after = integration_of(org)
    assert hook["id"] != before.subscription_id and hook["status"] == "enabled"
    assert after.subscription_id == hook["id"]
    assert after.secret_hash != before.secret_hash
    assert secrets.matches(hook["consumerInputs"]["basicAuthPassword"], after.secret_hash)
    assert after.subscription_status == "enabled" and after.problem is None
    assert after.last_checked is not None and after.last_checked >= started


def test_check_of_a_healthy_hook_records_the_check_only(org: dict[str, Any]) -> None:
    before = integration_of(org)
    store.update_integration(org["account_id"], lambda i: replace(i, problem="old trouble"))

    check(org)

    after = integration_of(org)
    assert (after.subscription_id, after.secret_hash) == (before.subscription_id, before.secret_hash)
    assert after.subscription_status == "enabled" and after.problem is None
    assert after.last_checked is not None
    assert len(org["sandbox"].subscriptions(org["name"])) == 1


def test_check_respects_a_hook_disabled_by_a_user(org: dict[str, Any]) -> None:
    before = integration_of(org)
    org["sandbox"].set_subscription_status(org["name"], before.subscription_id, "disabledByUser")

    check(org)

    after = integration_of(org)
    [hook] = org["sandbox"].subscriptions(org["name"])
    assert hook["id"] == before.subscription_id and hook["status"] == "disabledByUser"
    assert (after.subscription_id, after.secret_hash) == (before.subscription_id, before.secret_hash)
    assert after.subscription_status == "disabledByUser"
    assert after.problem and "disabled by a user" in after.problem
    assert after.last_checked is not None


def test_check_without_identity_only_records_the_problem(org: dict[str, Any]) -> None:
    storage.table(store.INTEGRATIONS).delete_entity(org["account_id"], store.RK_IDENTITY)
    before = integration_of(org)
    org["sandbox"].set_subscription_status(org["name"], before.subscription_id, "disabledBySystem")

    check(org)

    after = integration_of(org)
    assert after.problem and "identity" in after.problem.lower()
    assert replace(after, problem=None) == replace(before, problem=None)
    assert after.last_checked is None


def test_check_with_a_refused_refresh_only_records_the_problem(org: dict[str, Any]) -> None:
    store.save_identity(org["account_id"], Identity(kind="oauth", access_token="old", refresh_token="refused",
                                                    expires_at=1.0))
    before = integration_of(org)

    check(org)

    after = integration_of(org)
    assert after.problem and "refused" in after.problem
    assert replace(after, problem=None) == replace(before, problem=None)


def test_failed_recreation_keeps_the_old_hook_and_is_retried(org: dict[str, Any]) -> None:
    sandbox = org["sandbox"]
    before = integration_of(org)
    sandbox.set_subscription_status(org["name"], before.subscription_id, "disabledBySystem")
    sandbox.inject_fault("500", times=1, path_contains="hooks/subscriptions?")
    try:
        with pytest.raises(AdoServerError):
            check(org)
    finally:
        sandbox.clear_faults()

    kept = integration_of(org)
    assert (kept.subscription_id, kept.secret_hash) == (before.subscription_id, before.secret_hash)
    assert [h["id"] for h in sandbox.subscriptions(org["name"])] == [before.subscription_id]

    check(org)  # the queue's retry
    assert integration_of(org).subscription_id != before.subscription_id


def test_check_of_unknown_integration_or_link_changes_nothing(org: dict[str, Any]) -> None:
    before = integration_of(org)
    lifecycle.check_subscription({"integration_id": "acct-nobody", "organization_id": org["org_id"]})
    lifecycle.check_subscription({"integration_id": org["account_id"], "organization_id": "not-linked"})
    assert integration_of(org) == before


def test_kickoff_then_check_repairs_a_system_disabled_hook(org: dict[str, Any], uid: str) -> None:
    before = integration_of(org)
    org["sandbox"].set_subscription_status(org["name"], before.subscription_id, "disabledBySystem")
    drain(lifecycle.QUEUE)

    lifecycle.kickoff(now=future_now(uid))
    mine = [m for m in drain(lifecycle.QUEUE) if m["integration_id"] == org["account_id"]]
    assert mine == [{"integration_id": org["account_id"], "organization_id": org["org_id"]}]
    subscription_check(QueueMessage(body=json.dumps({"items": mine}).encode()), StubContext())

    after = integration_of(org)
    [hook] = org["sandbox"].subscriptions(org["name"])
    assert after.subscription_id == hook["id"] != before.subscription_id
    assert after.last_checked is not None
