"""Concurrent writers: webhooks racing on one group, and workers racing to refresh one OAuth token."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from reliability_support import Sender, private_bundle, seed

from shared.compose import Services
from shared.core.models import Identity, Integration, User

WEBHOOKS = 32
REFRESHERS = 8


def test_concurrent_webhooks_on_one_group_lose_no_update(uid: str) -> None:
    with private_bundle() as (bundle, _, svc):
        webhooks_on_one_group(svc, bundle.url, uid)


def webhooks_on_one_group(svc: Services, url: str, uid: str) -> None:
    # 32 work items linked to one group; each delivery assigns the group to a different member, so
    # every delivery is a real change whatever the order: exactly 32 assignments must be recorded.
    world = seed(svc, uid, WEBHOOKS, group_for=lambda i: "g0")
    users = [f"u{i}" for i in range(WEBHOOKS)]
    for i, user in enumerate(users):
        svc.store.users.put(User(org_id=world.org, user_id=user, emails=[f"user{i}-{uid}@example.com"],
                                 projects=["p1"]))
    payloads = [world.payload(key, 2, None, "", event_id=f"{uid}-{key}",
                              assigned_to=f"User {i} <user{i}-{uid}@example.com>")
                for i, key in enumerate(world.keys)]
    sender = Sender(url)
    start = threading.Barrier(WEBHOOKS)

    def send(payload: dict[str, Any]) -> int:
        sender.session()  # connect outside the race
        start.wait()
        return sender.post(payload).status_code

    with ThreadPoolExecutor(WEBHOOKS) as pool:
        statuses = list(pool.map(send, payloads))
    assert statuses == [200] * WEBHOOKS

    state = svc.store.groups.read(world.org, "g0")
    assert state is not None
    activity = [a for a in svc.store.groups.activity(world.org, "g0") if a.kind != "link"]
    assert [a.kind for a in activity] == ["assigned"] * WEBHOOKS
    assert sorted(a.data["assignee"] for a in activity) == sorted(users)
    assert state.group.assignee == activity[-1].data["assignee"]
    assert state.group.version == 1 + WEBHOOKS
    assert all(state.links[(world.account, key)].assignee_rev == 2 for key in world.keys)


def test_concurrent_token_refreshes_keep_one_working_token_set(svc: Services, sandbox_ado: Any, uid: str) -> None:
    sandbox = sandbox_ado
    name = f"tok{uid}"
    account = sandbox.add_organization(name)
    project = sandbox.add_project(name, "Web")
    integration = Integration(account_id=account, account_name=name, domain_name=sandbox.instance_url(name))
    svc.store.integrations.save(integration)
    tokens = sandbox.issue_token(name)
    sandbox.expire_access_token(tokens["access_token"])
    svc.store.integrations.save_identity(account, Identity(kind="oauth", access_token=tokens["access_token"],
                                          refresh_token=tokens["refresh_token"], expires_at=time.time() - 60))
    assert sandbox.state.rotate_refresh_tokens, "the sandbox must rotate refresh tokens for this test"

    def live_refresh_tokens() -> set[str]:
        with sandbox.state.lock:
            return {rt for rt, org in sandbox.state.refresh_tokens.items() if org == name.lower()}

    for round_ in range(3):
        before = svc.store.integrations.load_identity(account)
        assert before is not None
        barrier = threading.Barrier(REFRESHERS)
        with ThreadPoolExecutor(REFRESHERS) as pool:
            outcomes = list(pool.map(_outcome, [svc] * REFRESHERS, [integration] * REFRESHERS,
                                     [project] * REFRESHERS, [barrier] * REFRESHERS))
        assert outcomes == [project] * REFRESHERS, f"round {round_}: {outcomes}"

        stored = svc.store.integrations.load_identity(account)
        assert stored is not None
        identity = stored[0]
        assert identity.status == "valid", identity.problem
        assert identity.access_token != before[0].access_token
        assert identity.refresh_token != before[0].refresh_token
        assert live_refresh_tokens() == {identity.refresh_token}, "the stored refresh token is not the live one"

        # The stored set works: as is, and once more after its access token expired.
        assert svc.ado(integration).get_project(project)["id"] == project
        sandbox.expire_access_token(identity.access_token)
        assert svc.store.integrations.save_identity(account, replace(identity, expires_at=time.time() - 60), stored[1])

    grants = Counter(c["status"] for c in sandbox.calls if c["path"].endswith("/oauth2/token"))
    assert grants[200] >= 3


def _outcome(svc: Services, integration: Integration, project: str, barrier: threading.Barrier) -> str:
    """One worker: its own client and credential object, all calling at once after an expiry."""
    client = svc.ado(integration)
    barrier.wait()
    try:
        return str(client.get_project(project)["id"])
    except Exception as error:  # report every worker's failure, not just the first
        return f"{type(error).__name__}: {error}"
