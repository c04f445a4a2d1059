"""Benchmark outbound sync (tracker → ADO): ADO calls, storage round trips and latency per message.

Starts its own Azurite and HTTPS sandbox ADO, links groups to sandbox work items, makes tracker-side
changes and runs the `sync-outbound` handler on each queued message. Scenarios: status (mapped,
unmapped), assignee cold (e-mail answer not cached; first and last graph page), warm, deassign,
and a duplicate (already pushed) message. Run: `.venv/bin/python bench/outbound.py [--rounds 20]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devhost import azurite
from devhost.sandbox_ado import SandboxAdo
from shared import compose, config
from shared.adapters import storage
from shared.compose import Services
from shared.core.models import Group, Identity, Integration, Link, OrgLink, User
from shared.flows import outbound as outbound_sync
from shared.flows import tracker

USERS = 250
PAGE = 100


class StorageCounter:
    """Counts HTTP requests to the Azurite ports (the storage round trips)."""

    def __init__(self, ports: set[int]) -> None:
        self.count = 0
        self.lock = threading.Lock()
        original = requests.Session.send
        counter = self

        def send(session: requests.Session, request: requests.PreparedRequest, **kwargs: Any) -> Any:
            if urlsplit(request.url or "").port in ports:
                with counter.lock:
                    counter.count += 1
            return original(session, request, **kwargs)

        requests.Session.send = send  # type: ignore[method-assign]


class Bench:
    def __init__(self, svc: Services, sandbox: SandboxAdo, storage_counter: StorageCounter, org: str) -> None:
        self.svc = svc
        store = svc.store
        self.sandbox = sandbox
        self.storage = storage_counter
        self.org = org
        self.account_id = sandbox.add_organization(org)
        self.project_id = sandbox.add_project(org, "Bench")
        for i in range(USERS):
            sandbox.add_user(org, f"User {i}", f"user{i}@example.com")
        token = sandbox.issue_token(org, expires_in=24 * 3600)
        store.integrations.save(Integration(account_id=self.account_id, account_name=org,
                                            domain_name=sandbox.instance_url(org)))
        store.integrations.save_identity(self.account_id, Identity(kind="oauth", access_token=token["access_token"],
                                                                   refresh_token=token["refresh_token"],
                                                                   expires_at=token["expires_at"]))
        self.org_id = f"tracker-{org}"
        store.integrations.save_org_link(OrgLink(account_id=self.account_id, org_id=self.org_id, config={
            "sync_status_forward": {self.project_id: {"on_resolve": "Resolved", "on_unresolve": "Active"}},
            "sync_forward_assignment": True}))
        store.users.put(User(org_id=self.org_id, user_id="first", emails=["USER0@example.com"]))
        store.users.put(User(org_id=self.org_id, user_id="last", emails=[f"user{USERS - 1}@example.com"]))
        self.groups = 0

    def new_group(self, *, mapped: bool = True) -> str:
        self.groups += 1
        group_id = f"g{self.groups}"
        self.svc.store.groups.put(Group(org_id=self.org_id, group_id=group_id, project_id="p", title="Bench"))
        item = self.sandbox.create_work_item(self.org, "Bench", title="Bench", state="Active")
        self.svc.store.groups.add_link(Link(org_id=self.org_id, group_id=group_id, account_id=self.account_id,
                                            key=str(item["id"]), project_id=self.project_id if mapped else "unmapped"))
        return group_id

    def forget_users(self) -> None:
        """Drop cached e-mail → ADO user answers, so the next assignment is cold."""
        for email in ("user0@example.com", f"user{USERS - 1}@example.com"):
            self.svc.store.cache.put(self.account_id, f"graph_user|{email}", None, ttl=-1)

    def measure(self, group_id: str, changes: dict[str, Any], *, replay: bool = False) -> tuple[int, int, float]:
        messages = tracker.change_from_tracker(self.svc, self.org_id, group_id, changes) or []
        if replay:
            for message in messages:
                outbound_sync.sync_work_item(self.svc, message)
        self.sandbox.reset_calls()
        before = self.storage.count
        started = time.perf_counter()
        for message in messages:
            outbound_sync.sync_work_item(self.svc, message)
        elapsed = time.perf_counter() - started
        ado = len([c for c in self.sandbox.calls if c["path"].startswith(f"/{self.org}/")])
        return ado, self.storage.count - before, elapsed


def run(rounds: int) -> list[tuple[str, list[tuple[int, int, float]]]]:
    process = azurite.start()
    sandbox = SandboxAdo(graph_page_size=PAGE)
    sandbox.start()
    os.environ.update({"AzureWebJobsStorage": process.connection_string, **sandbox.environment(),
                       "ADO_CLIENT_ID": "bench-client", "ADO_CLIENT_SECRET": "bench-secret"})
    config.reset()
    storage.reset()
    counter = StorageCounter(set(process.ports.values()))
    try:
        bench = Bench(compose.build(), sandbox, counter, "bench")
        results: dict[str, list[tuple[int, int, float]]] = {}

        def add(name: str, sample: Callable[[], tuple[int, int, float]]) -> None:
            results.setdefault(name, []).append(sample())

        for _ in range(rounds):
            group = bench.new_group()
            add("status: resolve (mapped)", lambda g=group: bench.measure(g, {"status": "resolved"}))
            add("status: unresolve (mapped)", lambda g=group: bench.measure(g, {"status": "unresolved"}))
            unmapped = bench.new_group(mapped=False)
            add("status: no mapping (skipped)", lambda g=unmapped: bench.measure(g, {"status": "resolved"}))
            bench.forget_users()
            add("assignee: cold, match on page 1", lambda g=group: bench.measure(g, {"assignee": "first"}))
            add("assignee: deassign", lambda g=group: bench.measure(g, {"assignee": None}))
            add("assignee: warm (cached e-mail)", lambda g=group: bench.measure(g, {"assignee": "first"}))
            add(f"assignee: cold, match on page {USERS // PAGE + 1}",
                lambda g=group: bench.measure(g, {"assignee": "last"}))
            add("duplicate (already pushed) message",
                lambda g=group: bench.measure(g, {"status": "resolved"}, replay=True))
        return list(results.items())
    finally:
        sandbox.stop()
        process.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    results = run(args.rounds)
    print(f"outbound sync, {args.rounds} rounds, {USERS} ADO users in pages of {PAGE}")
    print(f"{'scenario':40} {'ADO calls':>9} {'storage':>8} {'p50 ms':>8} {'max ms':>8}")
    for name, samples in results:
        ado = sorted({s[0] for s in samples})
        trips = statistics.median(s[1] for s in samples)
        times = [s[2] * 1000 for s in samples]
        calls = "/".join(str(a) for a in ado)
        print(f"{name:40} {calls:>9} {trips:>8.0f} {statistics.median(times):>8.1f} {max(times):>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
