"""Benchmark tracker events: what they add to a webhook, and how fast the relay delivers them.

1. Storage round trips per Azure DevOps webhook delivery that changes a group, with events (the
   event row rides in the group's transaction, then one `tracker-events` notice) and with events
   switched off (the same change without event rows or notice). Table and queue requests are
   counted apart.
2. The relay on its own: outboxes of several groups relayed to a local receiver (signature
   verified), sequentially and 8 at a time: events delivered per second and storage round trips per
   event; and the same with no endpoint (feed only).
3. End to end through the devhost: webhook deliveries over HTTP until the receiver has verified
   one event per delivery: events per second, including queue polling.

Starts its own Azurite (in memory). Run: `.venv/bin/python bench/events.py [--deliveries 200]`.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devhost import azurite
from devhost.receiver import Receiver
from shared import compose, config
from shared.adapters import storage
from shared.adapters.tracker_webhook import new_secret
from shared.compose import Services
from shared.core import events
from shared.core.models import Group, GroupChange, GroupState, Integration, Link, OrgLink
from shared.core.secrets import hash_secret
from shared.flows import events as flow_events
from shared.flows import inbound, relay

HOOK_SECRET = "bench-secret-" + "0" * 51
PROJECT = "bench-project"
FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "ado-webhooks"


class Counter:
    """Counts outgoing HTTP requests to the storage emulator, per service (table, queue)."""

    def __init__(self, ports: dict[str, int]) -> None:
        self.by_port = {port: name for name, port in ports.items()}
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()
        original = requests.Session.send
        counter = self

        def send(session: requests.Session, request: requests.PreparedRequest, **kwargs: Any) -> Any:
            name = counter.by_port.get(urlsplit(request.url or "").port or 0)
            if name is not None:
                with counter.lock:
                    counter.counts[name] = counter.counts.get(name, 0) + 1
            return original(session, request, **kwargs)

        requests.Session.send = send  # type: ignore[method-assign]

    def take(self) -> dict[str, int]:
        with self.lock:
            counts, self.counts = self.counts, {}
        return counts


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def seed(svc: Services, account: str, org: str, items: int) -> None:
    svc.store.integrations.save(Integration(account_id=account, account_name="bench", domain_name="https://bench/",
                                            secret_hash=hash_secret(HOOK_SECRET)))
    svc.store.integrations.save_org_link(OrgLink(account_id=account, org_id=org, config={"sync_status_reverse": True}))
    for n in range(items):
        svc.store.groups.put(Group(org_id=org, group_id=f"g{n}", project_id="p", title=f"group {n}"))
        svc.store.groups.add_link(Link(org_id=org, group_id=f"g{n}", account_id=account, key=str(1000 + n),
                                       project_id=PROJECT, work_item_type="Bug"))
        svc.store.outbox.drop(relay.Outbox("Groups", f"{org}|g{n}"),
                              svc.store.outbox.pending(relay.Outbox("Groups", f"{org}|g{n}")))
    svc.store.cache.put(account, f"states|{PROJECT}|Bug", ["Closed", "Resolved"], ttl=3600)


def deliveries(account: str, items: int, count: int, start_rev: int) -> list[bytes]:
    """State changes that alternate resolved/active per work item, each one a group change."""
    template = json.loads((FIXTURE / "workitem-updated-state-active-to-resolved.json").read_text())
    bodies = []
    for n in range(count):
        rev = start_rev + n // items
        payload = json.loads(json.dumps(template))
        payload["id"] = f"bench-{start_rev}-{n}"
        payload["resourceContainers"]["collection"]["id"] = account
        payload["resourceContainers"]["project"]["id"] = PROJECT
        payload["resource"]["workItemId"] = 1000 + n % items
        payload["resource"]["rev"] = rev
        resolved = rev % 2 == 0
        payload["resource"]["fields"]["System.State"] = {
            "oldValue": "Active" if resolved else "Resolved", "newValue": "Resolved" if resolved else "Active"}
        bodies.append(json.dumps(payload).encode())
    return bodies


def without_events(svc: Services, org_id: str, group_id: str, decide: Callable[[GroupState | None], GroupChange],
                   *, create: bool = False, known: GroupState | None = None) -> GroupState | None:
    """`change_group` as it was before events: the same change, no event rows, no notice."""

    def plain(state: GroupState | None) -> GroupChange:
        change = decide(state)
        change.events = []
        return change

    return svc.store.groups.change(org_id, group_id, plain, create=create, known=known)


def webhook_round_trips(svc: Services, counter: Counter, account: str, items: int, count: int) -> None:
    headers = {"shared-secret": HOOK_SECRET, "content-type": "application/json"}
    rows = []
    for body in deliveries(account, items, items, 2):  # warm: caches, and the once-a-minute last_delivery write
        inbound.handle(svc, body, headers)
    step = 2 * (count // items + 1)
    for label, rev in (("without events", 4), ("with events", 4 + step)):
        bodies = deliveries(account, items, count, rev)
        original = inbound.events.change_group
        if label == "without events":
            inbound.events.change_group = without_events  # type: ignore[assignment]
        try:
            counter.take()
            for body in bodies:
                inbound.handle(svc, body, headers)
            counts = counter.take()
        finally:
            inbound.events.change_group = original  # type: ignore[assignment]
        rows.append((label, counts.get("table", 0) / count, counts.get("queue", 0) / count))
    print(f"\n1. Azure DevOps webhook deliveries that change a group ({count}, in-process, sequential)")
    print(f"{'':>16} {'table/delivery':>15} {'queue/delivery':>15}")
    for label, table, queue in rows:
        print(f"{label:>16} {table:>15.2f} {queue:>15.2f}")
    print(f"{'added':>16} {rows[1][1] - rows[0][1]:>+15.2f} {rows[1][2] - rows[0][2]:>+15.2f}")


def fill(svc: Services, org: str, groups: int, per_group: int) -> list[dict[str, str]]:
    messages = []
    for n in range(groups):
        group_id = f"r{n}"
        svc.store.groups.put(Group(org_id=org, group_id=group_id, project_id="p", title="t"))
        made = [events.status_changed(org, group_id, "unresolved", "resolved", source="azure_devops", rev=k)
                for k in range(per_group)]
        svc.store.groups.change(org, group_id, lambda state, made=made: GroupChange(events=made))
        messages.append({"organization_id": org, "group_id": group_id})
    return messages


def relay_throughput(svc: Services, counter: Counter, receiver: Receiver, groups: int, per_group: int) -> None:
    print(f"\n2. The relay: {groups} groups x {per_group} events each, to a local receiver (signatures verified)")
    print(f"{'mode':>22} {'events/s':>9} {'storage/event':>14}")
    for label, workers, endpoint in (("webhook, sequential", 1, True), ("webhook, 8 at a time", 8, True),
                                     ("feed only, sequential", 1, False)):
        org = f"bench-relay-{label.split(',')[0].replace(' ', '')}-{workers}"
        if endpoint:
            svc.store.feed.put_config(org, receiver.url, receiver_secret, keep_secret=False)
        messages = fill(svc, org, groups, per_group)
        before = len(receiver.events)
        counter.take()
        began = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda message: relay.relay(svc, message), messages))
        elapsed = time.perf_counter() - began
        counts = counter.take()
        total = groups * per_group
        if endpoint:
            assert len(receiver.events) - before == total, "every event delivered once"
        print(f"{label:>22} {total / elapsed:>9.1f} {sum(counts.values()) / total:>14.2f}")


def end_to_end(storage_ports: dict[str, int], connection: str, receiver: Receiver, count: int) -> None:
    from devhost.host import Host

    port = free_port()
    host = Host(port=port, poll_interval_cap=0.2, settings={
        "AzureWebJobsStorage": connection, "MANAGE_API_KEY": "bench", "WEBHOOK_URL": "http://127.0.0.1/",
        "TRACKER_WEBHOOK_URL": receiver.url, "TRACKER_WEBHOOK_SECRET": receiver_secret})
    host.start()
    try:
        config.reset()
        svc = compose.build()
        account, org, items = "bench-e2e", "bench-e2e-org", 50
        seed(svc, account, org, items)
        bodies = deliveries(account, items, count, 2)
        session = requests.Session()
        session.trust_env = False
        before = len(receiver.events)
        began = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda body: session.post(f"{host.url}/api/vsts/issue-updated", data=body, timeout=60,
                                                    headers={"shared-secret": HOOK_SECRET}).raise_for_status(),
                          bodies))
        posted = time.perf_counter() - began
        receiver.wait_for(before + count, timeout=300)
        elapsed = time.perf_counter() - began
        print(f"\n3. End to end through the devhost: {count} webhook deliveries (8 at a time) over {items} groups")
        print(f"   webhooks answered in {posted:.1f} s; the receiver verified {count} events after {elapsed:.1f} s:"
              f" {count / elapsed:.1f} events/s")
    finally:
        host.stop()


receiver_secret = new_secret()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=200, help="webhook deliveries per measurement")
    parser.add_argument("--groups", type=int, default=20, help="groups relayed in part 2")
    parser.add_argument("--per-group", type=int, default=10, help="events per group in part 2")
    args = parser.parse_args()

    emulator = azurite.start()
    import os

    os.environ["AzureWebJobsStorage"] = emulator.connection_string
    config.reset()
    storage.reset()
    counter = Counter({"table": emulator.ports["table"], "queue": emulator.ports["queue"]})
    try:
        with Receiver(receiver_secret) as receiver:
            svc = compose.build()
            seed(svc, "bench-account", "bench-org", 50)
            webhook_round_trips(svc, counter, "bench-account", 50, args.deliveries)
            storage.queue(flow_events.QUEUE).clear_messages()
            relay_throughput(svc, counter, receiver, args.groups, args.per_group)
            end_to_end(emulator.ports, emulator.connection_string, receiver, args.deliveries)
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
