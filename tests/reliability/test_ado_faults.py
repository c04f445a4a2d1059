"""Azure DevOps failing ~30 % of calls: outbound syncs and subscription checks still complete once.

Runs on its own devhost and Azurite so that only this test's host drains the queues (the session
bundle would otherwise compete for the messages with the default retry settings) and the poison
queues hold only this test's messages.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import Bundle, wait_for
from reliability_support import private_bundle, queue_count, queue_host_json

from shared.adapters import storage
from shared.core.models import Integration

ORGS = 50
GROUPS_PER_ORG = 4  # 200 outbound syncs, 50 subscription checks
FAULT_PATHS = ("/_apis/wit/workitems/", "/_apis/hooks/subscriptions/")
# Three fault kinds per path, each drawn independently: 1 - (1 - 0.112) ** 3 ≈ 30 % of those calls fail.
FAULT_RATE = 0.112
# The host.json retry policy (visibilityTimeout 10 s, maxDequeueCount 5) would make this test last
# minutes and, at 30 % failures of non-retried PATCHes, poison ~0.3 ** 5 of the messages by design.
# A 1 s visibility timeout keeps it fast; 10 dequeues keep poisoning out of reach (0.3 ** 10).
HOST_JSON = queue_host_json(visibilityTimeout="00:00:01", maxDequeueCount=10)


class FaultOrg:
    """A sandbox organization installed through the API, with linked groups."""

    def __init__(self, bundle: Bundle, sandbox: Any, name: str) -> None:
        self.name = name
        self.account = sandbox.add_organization(name)
        self.project = sandbox.add_project(name, "Web")
        self.tracker_org = f"t-{name}"
        self.keys: dict[str, int] = {}
        status, view = bundle.api("PUT", f"manage/integrations/{self.account}", {
            "account_name": name,
            "organization_id": self.tracker_org,
            "domain_name": sandbox.instance_url(name),
            "identity": {"kind": "pat", "access_token": sandbox.add_pat(name)},
            "config": {"sync_status_forward": {self.project: {"on_resolve": "Resolved", "on_unresolve": "Active"}},
                       "sync_status_reverse": True},
        })
        assert status == 200, view
        for index in range(GROUPS_PER_ORG):
            group = f"g{index}"
            assert bundle.api("PUT", f"manage/organizations/{self.tracker_org}/groups/{group}",
                              {"project_id": "web", "title": f"Boom {index}", "status": "unresolved",
                               "assignee": None})[0] == 200
            status, issue = bundle.api(
                "POST", f"manage/integrations/{self.account}/organizations/{self.tracker_org}/issues",
                {"group_id": group, "project": self.project, "work_item_type": "Bug", "title": f"Boom {index}"})
            assert status in (200, 201), issue
            self.keys[group] = int(issue["key"])  # type: ignore[index]


def waiting(queue: str) -> bool:
    """Whether a message of `queue` is visible (ready to run)."""
    return bool(list(storage.queue(queue).peek_messages(max_messages=1)))


@pytest.mark.slow
def test_outbound_syncs_and_checks_survive_ado_faults(sandbox_ado: Any, uid: str) -> None:
    sandbox = sandbox_ado
    with private_bundle(host_json=HOST_JSON) as (bundle, _, svc):
        with ThreadPoolExecutor(8) as pool:
            orgs = list(pool.map(lambda i: FaultOrg(bundle, sandbox, f"flt{uid}{i:02d}"), range(ORGS)))
        for org in orgs:  # due for a check, as six hours later
            svc.store.integrations.update(org.account, lambda i: Integration(**{**i.__dict__, "last_checked": 1.0}))
        sandbox.wait_idle(30)
        mine = {f"/{org.name}/" for org in orgs}
        started = time.time()
        for path in FAULT_PATHS:
            sandbox.inject_fault("429", rate=FAULT_RATE, path_contains=path, retry_after=1)
            sandbox.inject_fault("503", rate=FAULT_RATE, path_contains=path)
            # A connection cut without an answer: what a client sees when ADO times out.
            sandbox.inject_fault("drop", rate=FAULT_RATE, path_contains=path)
        try:
            targets = [(org, group) for org in orgs for group in org.keys]
            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(lambda t: bundle.api(
                    "PATCH", f"manage/organizations/{t[0].tracker_org}/groups/{t[1]}", {"status": "resolved"})[0],
                    targets))
            assert answers == [200] * len(targets)
            for org in orgs:
                svc.send("subscription-check", {"integration_id": org.account, "organization_id": org.tracker_org})

            def state(org: FaultOrg, group: str) -> str:
                return str(sandbox.work_item(org.name, org.keys[group])["fields"]["System.State"])

            wait_for(lambda: all(state(o, g) == "Resolved" for o, g in targets), timeout=120,
                     what="every work item to be resolved")
            wait_for(lambda: all((svc.store.integrations.get(o.account).last_checked or 0) >= started  # type: ignore[union-attr]
                                 for o in orgs), timeout=120, what="every subscription check")
            # Nothing left to run now. A message may still wait, invisible, on purpose: a push that met
            # another push's lease is sent again for when that lease ends, and then finds nothing to do.
            wait_for(lambda: not waiting("sync-outbound") and not waiting("subscription-check"),
                     timeout=180, what="the queues to drain")
        finally:
            sandbox.clear_faults()
        sandbox.wait_idle(30)

        assert queue_count("sync-outbound-poison") == 0
        assert queue_count("subscription-check-poison") == 0
        calls = [c for c in sandbox.calls if any(c["path"].startswith(prefix) for prefix in mine)]
        patches = [c for c in calls if c["method"] == "PATCH"]
        checks = [c for c in calls if c["method"] == "GET" and "/_apis/hooks/subscriptions/" in c["path"]
                  and c["query"].get("api-version")]
        # The faults really happened, on both kinds of call.
        assert sum(1 for c in patches if c.get("fault")) >= 20, Counter(c.get("fault") for c in patches)
        assert sum(1 for c in checks if c.get("fault")) >= 5, Counter(c.get("fault") for c in checks)
        # None applied twice: exactly one successful PATCH per work item.
        applied = Counter(c["path"] for c in patches if c["status"] == 200)
        for org in orgs:
            for group, key in org.keys.items():
                assert applied[f"/{org.name}/_apis/wit/workitems/{key}"] == 1, (org.name, group)
        for org, group in targets:
            status, body = bundle.api("GET", f"manage/organizations/{org.tracker_org}/groups/{group}")
            assert status == 200
            kinds = Counter(a["kind"] for a in body["activity"])  # type: ignore[index]
            assert kinds["outbound_status"] == 1 and kinds["set_resolved"] == 1, (org.name, group, kinds)
            assert not {k for k in kinds if k.endswith("_failed")}, kinds
            assert body["status"] == "resolved"  # type: ignore[index]
        for org in orgs:
            integration = svc.store.integrations.get(org.account)
            assert integration is not None and integration.last_checked and integration.last_checked >= started
            assert integration.subscription_status == "enabled" and integration.problem is None, integration
