"""Kickoff and subscription check against Azurite and the sandbox ADO."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace
from typing import Any

import pytest
from azure.functions.queue import QueueMessage
from conftest import RecordingSend, StubContext

from migrate_queue import subscription_check
from shared import compose
from shared.adapters import integrations, storage
from shared.adapters.ado_auth import PatAuth
from shared.adapters.ado_client import AdoClient
from shared.compose import Services
from shared.core import kickoff as plan
from shared.core import secrets
from shared.core.errors import AdoServerError, StorageUnavailable
from shared.core.models import Identity, Integration, OrgLink
from shared.flows import install, lifecycle

pytestmark = pytest.mark.usefixtures("azurite")

WEBHOOK = "https://sync.example.test/api/vsts/issue-updated"
HOUR = 3600.0


class Clock:
    """A clock that stays where a test puts it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def future_now(uid: str) -> float:
    """A 'now' in a six-hour slot of its own, so kickoff progress rows of tests never collide."""
    return time.time() + plan.SLOT * (1000 + int(uid[:8], 16) % 1_000_000)


def seed(svc: Services, account_id: str, *, last_checked: float | None, subscription_id: str | None = "sub",
         status: str = "active", links: tuple[str, ...] = ("o1",), link_status: str = "active") -> None:
    svc.store.integrations.save(Integration(account_id=account_id, account_name="n", domain_name="https://x/",
                                            status=status, subscription_id=subscription_id, secret_hash="h",
                                            last_checked=last_checked))
    for org_id in links:
        svc.store.integrations.save_org_link(OrgLink(account_id=account_id, org_id=org_id, status=link_status))


def queued_for(sent: RecordingSend, prefix: str) -> list[tuple[str, str]]:
    """The (integration, organization) checks queued for accounts starting with `prefix`; forgets all sent."""
    found = sorted((m["integration_id"], m["organization_id"]) for m in sent.messages(lifecycle.QUEUE)
                   if str(m.get("integration_id", "")).startswith(prefix))
    sent.sent.clear()
    return found


# --- kickoff -----------------------------------------------------------------------------------


def test_kickoff_queues_never_and_long_ago_checked_links_once_per_slot(uid: str) -> None:
    now = future_now(uid)
    clock, sent = Clock(now), RecordingSend()
    svc = compose.build(clock=clock, send=sent)
    seed(svc, f"{uid}-a", last_checked=None, links=("o1", "o2"))
    seed(svc, f"{uid}-b", last_checked=now - 7 * HOUR)
    seed(svc, f"{uid}-c", last_checked=now - 1 * HOUR)
    seed(svc, f"{uid}-d", last_checked=None, subscription_id=None)
    seed(svc, f"{uid}-e", last_checked=None, status="disabled")
    seed(svc, f"{uid}-f", last_checked=None, link_status="disabled")
    svc.store.integrations.save_identity(f"{uid}-a", Identity(kind="pat", access_token="never-queued"))

    lifecycle.kickoff(svc)

    assert "never-queued" not in json.dumps(sent.sent)
    assert queued_for(sent, uid) == [(f"{uid}-a", "o1"), (f"{uid}-a", "o2"), (f"{uid}-b", "o1")]
    clock.now = now + 60  # a replayed / past-due run in the same slot
    lifecycle.kickoff(svc)
    assert queued_for(sent, uid) == []
    clock.now = now + plan.SLOT  # the next slot: still never checked, so due again
    lifecycle.kickoff(svc)
    assert (f"{uid}-a", "o1") in queued_for(sent, uid)


class FailsMidway(RecordingSend):
    """Records sends, but storage fails for the first batch of checks of `prefix` after one was sent."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.failing = True

    def __call__(self, queue: str, message: dict[str, Any], /, *, delay: float | None = None) -> None:
        ours = [m for m in message.get("items", [message]) if m["integration_id"].startswith(self.prefix)]
        if self.failing and ours and any(m["integration_id"].startswith(self.prefix) for m in self.messages(queue)):
            self.failing = False
            raise StorageUnavailable("Storage answered 503")
        super().__call__(queue, message, delay=delay)


def test_kickoff_resumes_after_the_last_batch_sent(uid: str) -> None:
    now = future_now(uid)
    clock, sent = Clock(now), FailsMidway(uid)
    svc = compose.build(clock=clock, send=sent)
    for n in range(5):
        seed(svc, f"{uid}-{n}", last_checked=None, links=("o1", "o2"))
    expected = sorted((f"{uid}-{n}", org) for n in range(5) for org in ("o1", "o2"))

    with pytest.raises(StorageUnavailable):
        lifecycle.kickoff(svc, batch_items=3)
    before = [m for m in sent.messages(lifecycle.QUEUE) if m["integration_id"].startswith(uid)]
    assert 0 < len(before) < len(expected)  # the run died part way through this test's links

    clock.now = now + 30
    lifecycle.kickoff(svc, batch_items=3)

    assert queued_for(sent, uid) == expected  # each link exactly once, none lost, none repeated


class MeasuringSend(RecordingSend):
    """Sends to the real queue, recording each message and its size as the queue stores it (base64)."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def __call__(self, queue: str, message: dict[str, Any], /, *, delay: float | None = None) -> None:
        self.sizes.append(len(base64.b64encode(json.dumps(message).encode())))
        storage.send(queue, message, delay=delay)
        super().__call__(queue, message, delay=delay)


def test_kickoff_batches_respect_the_queue_message_limit(uid: str) -> None:
    sent = MeasuringSend()
    svc = compose.build(clock=Clock(future_now(uid)), send=sent)
    long_org = "o" * 250
    for n in range(3):
        seed(svc, f"{uid}-{n}", last_checked=None, links=tuple(f"{long_org[:240]}{i:03d}" for i in range(40)))

    lifecycle.kickoff(svc)

    assert len(queued_for(sent, uid)) == 120
    assert max(sent.sizes) < 64 * 1024


def test_batched_and_single_check_messages_are_both_handled(svc: Services, uid: str) -> None:
    seed(svc, f"{uid}-x", last_checked=None, links=("o1",))
    # Unknown integrations are completed, known ones without identity get their problem recorded.
    single = json.dumps({"integration_id": f"{uid}-x", "organization_id": "o1"}).encode()
    batch = json.dumps({"items": [{"integration_id": f"{uid}-y", "organization_id": "o1"},
                                  {"integration_id": f"{uid}-x", "organization_id": "o1"}]}).encode()
    subscription_check(QueueMessage(body=single), StubContext())
    integration = svc.store.integrations.get(f"{uid}-x")
    assert integration is not None and integration.problem and "identity" in integration.problem.lower()
    svc.store.integrations.update(f"{uid}-x", lambda i: replace(i, problem=None))
    subscription_check(QueueMessage(body=batch), StubContext())
    integration = svc.store.integrations.get(f"{uid}-x")
    assert integration is not None and integration.problem and "identity" in integration.problem.lower()


# --- subscription check ------------------------------------------------------------------------


@pytest.fixture
def org(svc: Services, sandbox_ado: Any, env: pytest.MonkeyPatch, uid: str) -> dict[str, Any]:
    env.setenv("WEBHOOK_URL", WEBHOOK)
    name = f"org{uid}"
    account_id = sandbox_ado.add_organization(name, f"acct-{uid}")
    pat = sandbox_ado.add_pat(name)
    install.install(svc, account_id, {"account_name": name, "organization_id": f"tracker-{uid}",
                                      "identity": {"kind": "pat", "access_token": pat}})
    client = AdoClient(base_url=sandbox_ado.instance_url(name), auth=PatAuth(pat))
    return {"name": name, "account_id": account_id, "org_id": f"tracker-{uid}", "client": client,
            "sandbox": sandbox_ado}


def check(svc: Services, org: dict[str, Any]) -> None:
    lifecycle.check_subscription(svc, {"integration_id": org["account_id"], "organization_id": org["org_id"]})


def integration_of(svc: Services, org: dict[str, Any]) -> Integration:
    integration = svc.store.integrations.get(org["account_id"])
    assert integration is not None
    return integration


@pytest.mark.parametrize("status", ["onProbation", "disabledBySystem", "disabledByInactiveIdentity", "missing"])
def test_check_replaces_a_broken_hook_with_a_new_secret(svc: Services, org: dict[str, Any], status: str) -> None:
    sandbox = org["sandbox"]
    before = integration_of(svc, org)
    if status == "missing":
        org["client"].delete_subscription(before.subscription_id)
    else:
        sandbox.set_subscription_status(org["name"], before.subscription_id, status)
    started = time.time()

    check(svc, org)

    after = integration_of(svc, org)
    [hook] = [h for h in sandbox.subscriptions(org["name"]) if h["id"] == after.subscription_id]
    # A hook on probation still sends retries: it drains and is deleted by a later check; others go now.
    retired = [h["id"] for h in sandbox.subscriptions(org["name"]) if h["id"] != hook["id"]]
    assert retired == ([before.subscription_id] if status == "onProbation" else [])
    assert list(after.retired_hooks) == retired
    assert hook["id"] != before.subscription_id and hook["status"] == "enabled"
    assert after.subscription_id == hook["id"]
    assert after.secret_hash != before.secret_hash
    assert secrets.matches(hook["consumerInputs"]["basicAuthPassword"], after.secret_hash)
    assert after.subscription_status == "enabled" and after.problem is None
    assert after.last_checked is not None and after.last_checked >= started


def test_check_of_a_healthy_hook_records_the_check_only(svc: Services, org: dict[str, Any]) -> None:
    before = integration_of(svc, org)
    svc.store.integrations.update(org["account_id"], lambda i: replace(i, problem="old trouble"))

    check(svc, org)

    after = integration_of(svc, org)
    assert (after.subscription_id, after.secret_hash) == (before.subscription_id, before.secret_hash)
    assert after.subscription_status == "enabled" and after.problem is None
    assert after.last_checked is not None
    assert len(org["sandbox"].subscriptions(org["name"])) == 1


def test_check_respects_a_hook_disabled_by_a_user(svc: Services, org: dict[str, Any]) -> None:
    before = integration_of(svc, org)
    org["sandbox"].set_subscription_status(org["name"], before.subscription_id, "disabledByUser")

    check(svc, org)

    after = integration_of(svc, org)
    [hook] = org["sandbox"].subscriptions(org["name"])
    assert hook["id"] == before.subscription_id and hook["status"] == "disabledByUser"
    assert (after.subscription_id, after.secret_hash) == (before.subscription_id, before.secret_hash)
    assert after.subscription_status == "disabledByUser"
    assert after.problem and "disabled by a user" in after.problem
    assert after.last_checked is not None


def test_check_without_identity_only_records_the_problem(svc: Services, org: dict[str, Any]) -> None:
    storage.table(integrations.TABLE).delete_entity(org["account_id"], integrations.RK_IDENTITY)
    before = integration_of(svc, org)
    org["sandbox"].set_subscription_status(org["name"], before.subscription_id, "disabledBySystem")

    check(svc, org)

    after = integration_of(svc, org)
    assert after.problem and "identity" in after.problem.lower()
    assert replace(after, problem=None) == replace(before, problem=None)
    assert after.last_checked is None


def test_check_with_a_refused_refresh_only_records_the_problem(svc: Services, org: dict[str, Any]) -> None:
    svc.store.integrations.save_identity(org["account_id"], Identity(
        kind="oauth", access_token="old", refresh_token="refused", expires_at=1.0))
    before = integration_of(svc, org)

    check(svc, org)

    after = integration_of(svc, org)
    assert after.problem and "refused" in after.problem
    assert replace(after, problem=None) == replace(before, problem=None)


def test_failed_recreation_keeps_the_old_hook_and_is_retried(svc: Services, org: dict[str, Any]) -> None:
    sandbox = org["sandbox"]
    before = integration_of(svc, org)
    sandbox.set_subscription_status(org["name"], before.subscription_id, "disabledBySystem")
    sandbox.inject_fault("500", times=1, path_contains="hooks/subscriptions?")
    try:
        with pytest.raises(AdoServerError):
            check(svc, org)
    finally:
        sandbox.clear_faults()

    kept = integration_of(svc, org)
    assert (kept.subscription_id, kept.secret_hash) == (before.subscription_id, before.secret_hash)
    assert [h["id"] for h in sandbox.subscriptions(org["name"])] == [before.subscription_id]

    check(svc, org)  # the queue's retry
    assert integration_of(svc, org).subscription_id != before.subscription_id


def test_a_hook_that_cannot_be_read_for_now_is_retried_and_nothing_is_recorded(
        svc: Services, org: dict[str, Any]) -> None:
    sandbox = org["sandbox"]
    before = integration_of(svc, org)
    sandbox.set_subscription_status(org["name"], before.subscription_id, "disabledBySystem")
    # Every try of the client's read fails (it retries a read 4 times within one check).
    sandbox.inject_fault("500", times=4, path_contains=f"hooks/subscriptions/{before.subscription_id}")
    try:
        with pytest.raises(AdoServerError):  # transient: the queue retries the whole check
            check(svc, org)
    finally:
        sandbox.clear_faults()

    assert integration_of(svc, org) == before
    assert [h["id"] for h in sandbox.subscriptions(org["name"])] == [before.subscription_id]

    check(svc, org)  # the queue's retry
    assert integration_of(svc, org).subscription_id != before.subscription_id


def test_check_of_unknown_integration_or_link_changes_nothing(svc: Services, org: dict[str, Any]) -> None:
    before = integration_of(svc, org)
    lifecycle.check_subscription(svc, {"integration_id": "acct-nobody", "organization_id": org["org_id"]})
    lifecycle.check_subscription(svc, {"integration_id": org["account_id"], "organization_id": "not-linked"})
    assert integration_of(svc, org) == before


def test_kickoff_then_check_repairs_a_system_disabled_hook(svc: Services, org: dict[str, Any], uid: str) -> None:
    before = integration_of(svc, org)
    org["sandbox"].set_subscription_status(org["name"], before.subscription_id, "disabledBySystem")
    sent = RecordingSend()

    lifecycle.kickoff(compose.build(clock=Clock(future_now(uid)), send=sent))
    mine = [m for m in sent.messages(lifecycle.QUEUE) if m["integration_id"] == org["account_id"]]
    assert mine == [{"integration_id": org["account_id"], "organization_id": org["org_id"]}]
    subscription_check(QueueMessage(body=json.dumps({"items": mine}).encode()), StubContext())

    after = integration_of(svc, org)
    [hook] = org["sandbox"].subscriptions(org["name"])
    assert after.subscription_id == hook["id"] != before.subscription_id
    assert after.last_checked is not None


def test_a_changed_subscription_status_is_told_to_the_tracker_in_the_same_write(org: dict[str, Any]) -> None:
    from shared.adapters.outbox import Outbox
    from shared.flows import event_api, relay

    sent = RecordingSend()  # the notice is recorded, not sent: a background bundle would relay it first
    svc = compose.build(send=sent)
    outbox = Outbox(integrations.TABLE, org["account_id"])
    before = integration_of(svc, org)
    org["sandbox"].set_subscription_status(org["name"], before.subscription_id, "disabledBySystem")

    check(svc, org)

    told = [p.event for p in svc.store.outbox.pending(outbox)]
    assert [(e.type, e.organization_id, e.group_id, e.data["old"], e.data["new"]) for e in told] == [
        ("integration.subscription_changed", org["org_id"], None, "enabled", "disabledBySystem"),
        ("integration.subscription_changed", org["org_id"], None, "disabledBySystem", "enabled"),
    ]
    assert told[0].data["problem"] and told[1].data["problem"] is None
    assert sent.messages("tracker-events") == [{"integration_id": org["account_id"]}]
    relay.relay(svc, {"integration_id": org["account_id"]})
    feed = event_api.events(svc, org["org_id"], {}).body["events"]
    assert [e["id"] for e in feed] == [e.id for e in told]
    assert svc.store.outbox.pending(outbox) == []

    check(svc, org)  # healthy, as recorded: nothing to tell
    org["sandbox"].set_subscription_status(org["name"], integration_of(svc, org).subscription_id, "disabledByUser")
    check(svc, org)
    [paused] = [p.event for p in svc.store.outbox.pending(outbox)]
    assert (paused.data["old"], paused.data["new"]) == ("enabled", "disabledByUser")
    assert paused.data["problem"] == lifecycle.USER_DISABLED
